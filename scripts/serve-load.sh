#!/usr/bin/env bash
# scripts/serve-load.sh [rate] [seconds]: n8n-invoker serve under a fixed
# submission rate (default 200/s for 60 s) against a stub n8n that answers
# at once, on the SQLite store; prints a BENCHMARKS.md table row: submitted,
# acknowledged, refused, lost, not succeeded, submit latency p50/p99/max,
# the time to drain after the last submission, serve's CPU per invocation.
set -euo pipefail
export GOTOOLCHAIN=go1.27.3
cd "$(dirname "$0")/.."
rate=${1:-200} secs=${2:-60}
go build -o bin/n8n-invoker ./cmd/n8n-invoker
echo "| offered | submitted | acknowledged | refused | lost | not succeeded | submit p50 | submit p99 | submit max | drain after | serve CPU per invocation |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
(cd cmd/n8n-invoker && go run ./internal/serveload -bin ../../bin/n8n-invoker -rate "$rate" -duration "${secs}s")
