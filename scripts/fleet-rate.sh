#!/usr/bin/env bash
# scripts/fleet-rate.sh: the fleet-wide rate limit measured (not in make
# test: a timed measurement): three invoker processes on one Redis limit of
# 20 req/s against a local stub, over 30 s, and a 429 burst that one
# process sees. Prints a Markdown report for BENCHMARKS.md.
#
#   scripts/fleet-rate.sh [rps] [seconds]
set -euo pipefail
export GOTOOLCHAIN=go1.27.3 # the approved Go (fixes stdlib vulnerabilities of 1.26.8); fetched by the go command
cd "$(dirname "$0")/.."
scripts/cluster db >&2
set -a && . .cluster/env && set +a
cd contrib/redis
go build -o /tmp/fleetrate.$$ ./internal/fleetrate
trap 'rm -f /tmp/fleetrate.$$' EXIT
/tmp/fleetrate.$$ -redis "$N8N_INVOKER_REDIS_URL" -rps "${1:-20}" -seconds "${2:-30}"
