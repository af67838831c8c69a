#!/usr/bin/env bash
# scripts/fleet.sh: the large fleet run (not in make test): three invoker
# processes share one PostgreSQL store in front of queue-mode n8n (main
# plus 2 workers) through the fault proxy; one invoker process and one n8n
# worker are SIGKILLed a third of the way through and restarted; then
# three concurrent replays; every key's executions are counted in n8n.
#
#   scripts/fleet.sh [items]          (default 3000)
#   scripts/fleet.sh outbox [items]   the outbox's worker fleet: three worker processes,
#                                     one SIGKILLed, one n8n worker SIGKILLed (default 3000;
#                                     make test runs it at 150)
#
# It starts the cluster (scripts/cluster start) and stops the single n8n
# first: one n8n at a time on 2 cores.
set -euo pipefail
export GOTOOLCHAIN=go1.27.3 # the approved Go (fixes stdlib vulnerabilities of 1.26.8); fetched by the go command
cd "$(dirname "$0")/.."
export N8N_INVOKER_REQUIRE_N8N=1
scripts/n8n stop >/dev/null 2>&1 || true
scripts/cluster start
set -a && . .cluster/env && set +a
cd contrib/postgres
if [ "${1:-}" = outbox ]; then
  N8N_INVOKER_OUTBOX_ITEMS=${2:-3000} go test -count=1 -timeout 2h -run '^TestFleetOutboxWorkers$' -v ./outbox 2>&1 |
    grep -vE '^=== (RUN|PAUSE|CONT)'
  exit "${PIPESTATUS[0]}"
fi
N8N_INVOKER_FLEET_ITEMS=${1:-3000} go test -count=1 -timeout 3h -run '^TestFleetThreeProcesses$' -v . 2>&1 |
  grep -vE '^=== (RUN|PAUSE|CONT)'
