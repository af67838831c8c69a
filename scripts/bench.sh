#!/usr/bin/env bash
# scripts/bench.sh: the benchmark run (not part of CI). Writes BENCHMARKS.md.
#
#   scripts/bench.sh          everything
#   scripts/bench.sh n8n      only the real-n8n part
#   scripts/bench.sh stub     only the local-stub part (ours vs raw net/http vs peers)
#   scripts/bench.sh store    only the stores: journaled invocations/s, SQLite against PostgreSQL
#   scripts/bench.sh outbox   only durable submission: enqueue/s, delivery/s with 1-3 worker processes
#
# A single part writes a BENCHMARKS.md of that part alone: paste it into
# the full file.
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
if [ "$what" = all ] || [ "$what" = store ]; then
  scripts/cluster db >&2
  set -a && . .cluster/env && set +a
  go test -run '^$' -bench '^BenchmarkJournal$' -benchtime 2s -count 3 ./dlq >bench/out/store-sqlite.txt
  (cd contrib/postgres && go test -run '^$' -bench '^BenchmarkJournal$' -benchtime 2s -count 3 .) >bench/out/store-postgres.txt
  {
    echo "## Stores: journaled invocations per second, SQLite against PostgreSQL"
    echo
    echo "\`BenchmarkJournal\` (\`dlqtest.Bench\`, the same code on both stores): Begin (write-ahead, leased) then"
    echo "Complete (fenced success record), each a durable commit, by 1 caller and by 8 at once. PostgreSQL is"
    echo "the cluster's (\`scripts/cluster db\`, default durability: fsync and synchronous commit on) on the same"
    echo "2 cores as the benchmark, over TCP on 127.0.0.1. Median of 3 runs."
    echo
    echo "| store | callers | invocations/s | ratio to SQLite sync=full |"
    echo "|---|---|---|---|"
    cat bench/out/store-sqlite.txt bench/out/store-postgres.txt | awk '
      /^BenchmarkJournal/ {
        name=$1; sub(/-[0-9]+$/, "", name)
        store = (name ~ /sync=full/) ? "1 SQLite, sync=full" : (name ~ /sync=normal/) ? "2 SQLite, sync=normal" : "3 PostgreSQL"
        c=name; sub(/.*callers=/, "", c); printf "%s|%s\t%s\n", store, c, $(NF-1)
      }' | sort -t"$(printf '\t')" -k1,1 -k2,2n | awk -F'\t' '
      { k=$1; n[k]++; v[k, n[k]]=$2; if (!(k in seen)) { seen[k]=1; order[++m]=k } }
      END {
        for (i=1; i<=m; i++) { k=order[i]; med[k]=v[k, int((n[k]+1)/2)] }
        for (i=1; i<=m; i++) { k=order[i]; split(k, p, "|"); base=med["1 SQLite, sync=full|" p[2]]
          printf "| %s | %s | %.0f | %.2fx |\n", substr(p[1], 3), p[2], med[k], med[k]/base }
      }'
    echo
  } >>"$tmp"
fi
if [ "$what" = all ] || [ "$what" = outbox ]; then
  scripts/cluster db >&2
  set -a && . .cluster/env && set +a
  (cd contrib/postgres && go build -o /tmp/outboxbench.$$ ./internal/outboxbench)
  {
    echo "## Durable submission: enqueue and delivery per second, 1 to 3 worker processes"
    echo
    /tmp/outboxbench.$$ -n "${N8N_INVOKER_OUTBOX_BENCH_ITEMS:-2000}"
  } | tee bench/out/outbox.txt >>"$tmp"
  rm -f /tmp/outboxbench.$$
fi
mv "$tmp" "$out"
echo "wrote $out" >&2
