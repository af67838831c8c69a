#!/usr/bin/env bash
# scripts/chaos.sh: the large chaos run (not part of CI): the fault-proxy
# batch at N items (default 10,000; ~20-30 min on a 2-core machine, n8n runs
# ~10 executions/s), then the breaker and SIGKILL scenarios.
# Usage: scripts/chaos.sh [items]
set -euo pipefail
export GOTOOLCHAIN=go1.27.3 # the approved Go (fixes stdlib vulnerabilities of 1.26.8); fetched by the go command
cd "$(dirname "$0")/.."
scripts/n8n start
export N8N_INVOKER_REQUIRE_N8N=1 N8N_INVOKER_CHAOS_ITEMS="${1:-10000}"
go test -count=1 -timeout 3h -run 'TestChaos' -v . 2>&1 | grep -vE '^=== (RUN|PAUSE|CONT)'
