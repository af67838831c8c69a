#!/usr/bin/env bash
# The simulation's sweep (issue 25, point 11): SEEDS seeds (default
# 10,000) x OPS operations (default 200) of TestSimulation, without -race,
# in chunks; prints seeds/s and every violating seed with the command that
# replays it. A seed replays the faults and the clock, not the
# goroutines' interleaving: replay a failing seed with REPEAT runs to get
# its replay rate.
#   SEEDS=10000 OPS=200 FIRST=1 CHUNK=500 scripts/sim.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}"
SEEDS="${SEEDS:-10000}" OPS="${OPS:-200}" FIRST="${FIRST:-1}" CHUNK="${CHUNK:-500}"
out="$(mktemp)"; trap 'rm -f "$out"' EXIT
go test -c -o "$out.test" . >/dev/null
trap 'rm -f "$out" "$out.test"' EXIT
start=$(date +%s.%N)
bad=0
for ((s = FIRST; s < FIRST + SEEDS; s += CHUNK)); do
  n=$(( FIRST + SEEDS - s < CHUNK ? FIRST + SEEDS - s : CHUNK ))
  N8N_INVOKER_SIM_FIRST=$s N8N_INVOKER_SIM_SEEDS=$n N8N_INVOKER_SIM_OPS=$OPS \
    "$out.test" -test.run '^TestSimulation$' -test.count=1 >"$out" 2>&1 || true
  grep -E '^\s+seed [0-9]+ \(api|^\s+replay: ' "$out" || true
  k=$(grep -cE -- '--- FAIL: TestSimulation/seed=' "$out" || true)
  bad=$((bad + k))
done
end=$(date +%s.%N)
awk -v n="$SEEDS" -v ops="$OPS" -v a="$start" -v b="$end" -v bad="$bad" 'BEGIN {
  printf "simulation: %d seeds x %d operations in %.1fs: %.1f seeds/s; %d seeds violated an invariant\n", n, ops, b - a, n / (b - a), bad }'
[ "$bad" -eq 0 ]
