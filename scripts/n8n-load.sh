#!/usr/bin/env bash
# scripts/n8n-load.sh: ExecuteBatch against the real n8n at fixed
# concurrency 1, 8, 32 and adaptive, in one run (not part of CI).
# Usage: scripts/n8n-load.sh [items per level, default 150]
set -euo pipefail
export GOTOOLCHAIN=go1.27.3 # the approved Go (fixes stdlib vulnerabilities of 1.26.8); fetched by the go command
cd "$(dirname "$0")/.."
scripts/n8n start
go run ./internal/tools/n8nload -env .n8n/env -items "${1:-150}"
