#!/usr/bin/env bash
# scripts/test.sh: the project's whole test run, as `make test` and CI run it.
# Installs and starts what the tests need (a real n8n, cached; PostgreSQL and
# Redis through scripts/cluster), then runs gofmt, go vet, staticcheck,
# govulncheck (local database), the unit and integration tests of every
# module with -race (integration tests may not skip), a short fuzz pass over
# every target, and last the fleet tests against queue-mode n8n (started after
# the single n8n stops: one n8n at a time on these 2 cores).
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
echo "== go test -race"
each go test -race -count=1 -timeout 20m -skip '^TestFleet' ./...
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
echo "== fleet: queue-mode n8n (main + 2 workers) on PostgreSQL and Redis, after the single n8n stops"
scripts/n8n stop
t2=$(date +%s)
scripts/cluster start
set -a && . .cluster/env && set +a
echo "== queue-mode n8n ready in $(( $(date +%s) - t2 )) s"
# The store's fleet tests, then the outbox's worker fleet: one package at a
# time (-p 1), since each kills an n8n worker.
(cd contrib/postgres && go test -race -count=1 -p 1 -timeout 30m -run '^TestFleet' -v ./... 2>&1 | grep -vE '^=== (RUN|PAUSE|CONT)|no test files')
echo "== all tests passed in $(( $(date +%s) - t0 )) s"
