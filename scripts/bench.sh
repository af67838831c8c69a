#!/usr/bin/env bash
# scripts/bench.sh: the benchmark run (not part of CI). Writes BENCHMARKS.md.
#
#   scripts/bench.sh          everything
#   scripts/bench.sh n8n      only the real-n8n part
#   scripts/bench.sh stub     only the local-stub part (ours vs raw net/http vs peers)
#
# Every comparison is a ratio measured in the same run. Raw `go test -bench`
# output is kept in bench/out/ for benchstat.
set -euo pipefail
export GOTOOLCHAIN=go1.27.3 # the approved Go (fixes stdlib vulnerabilities of 1.26.8); fetched by the go command
cd "$(dirname "$0")/.."
what=${1:-all}
mkdir -p bench/out
out=BENCHMARKS.md
tmp=$(mktemp)
{
  echo "# Benchmarks"
  echo
  echo "Written by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $(go version | cut -d' ' -f3), n8n 2.41.1)."
  echo "Each table comes from one run of the script; ratios compare runs made in that same run."
  echo
} >"$tmp"

if [ "$what" = all ] || [ "$what" = stub ]; then
  if [ -x bench/run.sh ]; then bench/run.sh >>"$tmp"; fi
fi

if [ "$what" = all ] || [ "$what" = n8n ]; then
  scripts/n8n start >&2
  {
    echo "## Real n8n: ExecuteBatch at fixed and adaptive concurrency"
    echo
    echo "The echo workflow (Webhook → Code, lastNode), 150 items per level."
    echo
    go run ./internal/tools/n8nload -env .n8n/env -items 150
    echo
    echo "## Real n8n: item packing"
    echo
    echo "The template packed workflow (\`templates/packed-items.json\`): one item per call at adaptive"
    echo "concurrency (its best here) against packs of 200 and 1,000 items, 2 packs in flight."
    echo "Every item's result is checked against its own key by position; 0 items lost or mis-mapped."
    echo
    go run ./internal/tools/n8nload -env .n8n/env -pack -items 300 -pack-items 20000
    echo
  } | tee bench/out/n8n.txt >>"$tmp"
fi
mv "$tmp" "$out"
echo "wrote $out" >&2
