#!/usr/bin/env bash
# scripts/test.sh: the project's whole test run, as `make test` and CI run it.
# Installs and starts what the tests need (a real n8n, cached; PostgreSQL and
# Redis through scripts/cluster; Chromium), then runs gofmt, go vet, staticcheck,
# govulncheck (local database), the unit and integration tests of every
# module with -race (integration tests may not skip), a short fuzz pass over
# every target, then the 1.x line (n8n 1.123.81 on Node.js 22: the webhook
# transport, run by id, await, reconcile, retry of executions and the
# contract tests), and last the fleet tests against queue-mode n8n. One
# n8n at a time on these 2 cores: each starts after the last one stops.
set -euo pipefail
export GOTOOLCHAIN=go1.27.3 # the approved Go (fixes stdlib vulnerabilities of 1.26.8); fetched by the go command
cd "$(dirname "$0")/.."
export N8N_INVOKER_REQUIRE_N8N=1

# The workspace's modules (go.work): the library, the CLI, the PostgreSQL
# store. bench/ is vetted; its benchmarks run from scripts/bench.sh.
modules=(. ./cmd/n8n-invoker ./contrib/postgres ./contrib/redis)
each() { local m; for m in "${modules[@]}"; do (cd "$m" && "$@") || return; done; }

t0=$(date +%s)
scripts/cluster stop >/dev/null 2>&1 || true # a queue-mode n8n left running: one n8n at a time
scripts/n8n start
scripts/cluster db
# Headless Chromium for the console's browser test (Debian's package).
if ! command -v chromium >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "chromium is missing: apt-get install chromium (or run as root)"; exit 1; }
  echo "== installing chromium from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
set -a && . .cluster/env && set +a
t1=$(date +%s)
echo "== n8n, PostgreSQL and Redis ready in $((t1 - t0)) s"

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi
echo "== go vet"
each go vet ./...
(cd bench && go vet ./...)
echo "== staticcheck"
go tool staticcheck ./... ./cmd/n8n-invoker/... ./contrib/postgres/... ./contrib/redis/...
echo "== govulncheck (local database)"
scripts/vulncheck.sh
echo "== MCP against n8n's default MCP rate limit (100 per 5 min), then n8n restarted with it off"
go test -race -count=1 -run '^TestRealN8NMCPDefaultRateLimit$' -v . 2>&1 | grep -vE '^=== (RUN|PAUSE|CONT)'
export N8N_INVOKER_MCP_RATE_LIMIT=0 # for every later start of n8n, the tests' own included
scripts/n8n restart
echo "== go test -race"
each go test -race -count=1 -timeout 20m -skip '^TestFleet|^TestRealN8NMCPDefaultRateLimit$' ./...
echo "== short fuzz pass (${N8N_INVOKER_FUZZTIME:-10s} per target)"
for target in config:FuzzParse config:FuzzExpand policy:FuzzParseRetryAfter httpinvoker:FuzzDecode httpinvoker:FuzzMessageOf n8napi:FuzzExecution; do
  pkg=${target%%:*} name=${target##*:}
  go test -run='^$' -fuzz="^$name\$" -fuzztime="${N8N_INVOKER_FUZZTIME:-10s}" "./$pkg" 2>&1 |
    awk -v t="$target" '/execs:/ {last=$0} /^(ok|FAIL|---)|_test\.go:|Failing input|go test -run/ {print} END {print "   " t ": " last}'
  if [ "${PIPESTATUS[0]}" != 0 ]; then
    # the input that failed, so that a CI log is enough to reproduce it
    for f in $(git ls-files --others --exclude-standard "$pkg/testdata/fuzz/$name" 2>/dev/null); do echo "== $f"; cat "$f"; done
    exit 1
  fi
done
scripts/n8n stop
echo "== n8n 1.123.81 (the 1.x line, Node.js 22), after 2.41.1 stops"
t15=$(date +%s)
N8N_VERSION=1.123.81 scripts/n8n start
echo "== n8n 1.123.81 ready in $(( $(date +%s) - t15 )) s"
line1='^(TestRealN8NRunByID|TestRealN8NRunByIDErrors|TestRealN8NWaitForSlowWorkflow|TestRealN8NWaitSurfacesError|TestRealN8NWaitKeepsTheAnswer|TestRealN8NCorrelationUnderConcurrency|TestRealN8NContractOfAPIClient|TestRealN8NLastNodeReturnsOutput|TestRealN8NGetWithQuery|TestRealN8NFailingWorkflowIsNotResent|TestRealN8NUnknownWebhookIsPermanentAndQuick|TestRealN8NAuth|TestRealN8NOnReceivedIsNotCompleted|TestRealN8NPathParams|TestRealN8NReplayReconciles|TestRealN8NRespond500RunsOnce|TestChaosFaultsAccounting)$'
N8N_INVOKER_ENV=$PWD/.n8n-1x/env go test -race -count=1 -timeout 20m -run "$line1" -v . 2>&1 | grep -vE '^=== (RUN|PAUSE|CONT)'
N8N_VERSION=1.123.81 scripts/n8n stop
echo "== fleet: queue-mode n8n (main + 2 workers) on PostgreSQL and Redis, after the single n8n stops"
t2=$(date +%s)
scripts/cluster start
set -a && . .cluster/env && set +a
echo "== queue-mode n8n ready in $(( $(date +%s) - t2 )) s"
# The store's fleet tests, then the outbox's worker fleet: one package at a
# time (-p 1), since each kills an n8n worker.
(cd contrib/postgres && go test -race -count=1 -p 1 -timeout 30m -run '^TestFleet' -v ./... 2>&1 | grep -vE '^=== (RUN|PAUSE|CONT)|no test files')
echo "== all tests passed in $(( $(date +%s) - t0 )) s"
