#!/usr/bin/env bash
# scripts/test.sh: the project's whole test run, as `make test` and CI run it.
# Installs and starts a real n8n (cached), then runs go vet, staticcheck and
# the unit and integration tests with -race. Integration tests may not skip.
set -euo pipefail
cd "$(dirname "$0")/.."
export N8N_INVOKER_REQUIRE_N8N=1

t0=$(date +%s)
scripts/n8n start
t1=$(date +%s)
echo "== n8n ready in $((t1 - t0)) s"

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi
echo "== go vet"
go vet ./...
echo "== staticcheck"
go tool staticcheck ./...
echo "== go test -race"
go test -race -count=1 -timeout 20m ./...
echo "== all tests passed in $(( $(date +%s) - t0 )) s"
