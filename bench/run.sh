#!/usr/bin/env bash
# bench/run.sh: the local-stub benchmarks, printed as markdown (called by
# scripts/bench.sh). Raw output goes to bench/out/ for benchstat.
set -euo pipefail
export GOTOOLCHAIN=go1.27.3
cd "$(dirname "$0")"
mkdir -p out
count=${BENCH_COUNT:-3}
go test -run '^$' -bench 'Invoke' -benchtime "${BENCH_INVOKE:-20000x}" -count "$count" . >out/invoke.txt
go test -run '^$' -bench 'Batch' -benchtime 1x -count "$count" . >out/batch.txt
(cd .. && go test -run '^$' -bench 'Breaker|AttemptStages' -count "$count" ./policy && go test -run '^$' -bench 'ResolverWarm' -count "$count" ./pipeline) >out/micro.txt
(cd .. && go test -run '^$' -bench 'Stages' -benchmem -count "$count" ./pipeline && go test -run '^$' -bench 'ManagerOverhead' -benchmem -count "$count" .) >out/stages.txt
for n in 10000 1000000; do
  N_STREAM_ITEMS=$n go test -count=1 -run '^TestStreamRSS$' -v . | grep '^STREAM'
done >out/stream.txt
echo "## Local stub: n8n-invoker against raw net/http and peers"
echo
echo "A webhook stub in its own process answers every POST with a small JSON object; CPU is the client"
echo "process's user+system time per call (getrusage), allocations are the client's. 64 calls in flight;"
echo "every contender gets the same tuned transport. \`ours\` runs the whole stack (resolution, retry"
echo "policy, breaker, retry budget, classification, response validation, metrics through the no-op"
echo "global meter); \`ours-traced\` adds the OpenTelemetry SDK with always-on sampling and SDK metrics."
echo
cat out/invoke.txt out/batch.txt | go run ./table
echo "### Policies alone (median ns per call, allocations)"
echo
echo '```'
grep -E '^Benchmark' out/micro.txt | sort | awk '{k=$1; n[k]++; v[k]=v[k] " " $3} END {for (k in n) print k, v[k]}' | sort
echo '```'
echo
echo "### Cost of each stage (median of $count runs, one goroutine, a transport that answers at once)"
echo
echo "Each line of \`BenchmarkStages\` adds one stage to the line before; the difference is that stage's cost per"
echo "call. \`manager\` is a Manager with the default configuration (budget and breaker on; hooks, call span,"
echo "metrics and await stages; request ids) over the same transport."
echo
echo "| pipeline | ns/call | allocs/call | this stage's ns | this stage's allocs |"
echo "|---|---|---|---|---|"
grep -E '^Benchmark(Stages|ManagerOverhead)' out/stages.txt | awk '
  { name=$1; sub(/-[0-9]+$/, "", name); sub(/^BenchmarkStages\//, "", name); sub(/^BenchmarkManagerOverhead/, "manager (default config)", name)
    ns[name]=ns[name] " " $3; al[name]=$7; if (!(name in seen)) { order[++n]=name; seen[name]=1 } }
  function median(s,   a, k, i, j, t) { k=split(s, a, " "); for (i=1;i<=k;i++) for (j=i+1;j<=k;j++) if (a[j]<a[i]) { t=a[i]; a[i]=a[j]; a[j]=t }; return a[int((k+1)/2)] }
  END { prev=0; pa=0; for (i=1;i<=n;i++) { m=median(ns[order[i]]); if (order[i] ~ /^manager/) { printf "| %s | %.0f | %d | %+.0f over line 3 | %+d over line 3 |\n", order[i], m, al[order[i]], m-m3, al[order[i]]-a3 }
      else { printf "| %s | %.0f | %d | %s | %s |\n", order[i], m, al[order[i]], (i==1?"-":sprintf("%+.0f", m-prev)), (i==1?"-":sprintf("%+d", al[order[i]]-pa)); if (order[i] ~ /^3-/) { m3=m; a3=al[order[i]] } prev=m; pa=al[order[i]] } } }'
echo
echo "### Streaming memory (ExecuteStream, concurrency 256, peak RSS of a process running only it)"
echo
echo "| items | peak RSS |"
echo "|---|---|"
awk '{split($2,a,"="); split($4,b,"="); printf "| %s | %.1f MiB |\n", a[2], b[2]/1024}' out/stream.txt
r1=$(awk 'NR==1{split($4,b,"="); print b[2]}' out/stream.txt); r2=$(awk 'NR==2{split($4,b,"="); print b[2]}' out/stream.txt)
echo
awk -v a="$r1" -v b="$r2" 'BEGIN {printf "1,000,000 items use %.2fx the peak memory of 10,000.\n\n", b/a}'
