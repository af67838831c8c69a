#!/usr/bin/env bash
# scripts/chaos.sh: the large chaos run (not part of CI), with the default
# settings (queue on, API key set): the fault-proxy batch at N items over
# several seeds, each followed by a replay of its dead letters, then the
# breaker and SIGKILL scenarios. n8n runs ~10 executions/s here.
# Usage: scripts/chaos.sh [items] [seeds] [concurrency] [compare-items]
#   e.g. scripts/chaos.sh 2000 "1 2 3" 16 500
# With compare-items > 0 it then runs that many items through the same
# faults at fixed concurrencies 4, 8, 16, 32 and adaptive ("auto") to
# compare their throughput.
set -euo pipefail
export GOTOOLCHAIN=go1.27.3 # the approved Go (fixes stdlib vulnerabilities of 1.26.8); fetched by the go command
cd "$(dirname "$0")/.."
scripts/n8n start
export N8N_INVOKER_REQUIRE_N8N=1 N8N_INVOKER_CHAOS_ITEMS="${1:-2000}" N8N_INVOKER_CHAOS_CONCURRENCY="${3:-16}"
for seed in ${2:-1 2 3}; do
  echo "== seed $seed"
  N8N_INVOKER_CHAOS_SEED=$seed go test -count=1 -timeout 3h -run 'TestChaosFaultsAccounting' -v . 2>&1 | grep -vE '^=== (RUN|PAUSE|CONT)'
done
if [ "${4:-0}" -gt 0 ]; then
  for c in 4 8 16 32 auto; do
    echo "== throughput, concurrency $c"
    N8N_INVOKER_CHAOS_ITEMS="$4" N8N_INVOKER_CHAOS_CONCURRENCY=$c N8N_INVOKER_CHAOS_SEED=7 \
      go test -count=1 -timeout 1h -run 'TestChaosFaultsAccounting' -v . 2>&1 | grep -E 'chaos: concurrency|^(--- |ok|FAIL)'
  done
fi
go test -count=1 -timeout 1h -run 'TestChaosBreaker|TestChaosKill' -v . 2>&1 | grep -vE '^=== (RUN|PAUSE|CONT)'

