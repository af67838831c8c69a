#!/bin/sh
# prints the project-internal import graph, one package per line
# Usage: scripts/imports.sh (from the repository root). docs/architecture.md
# shows the same output, written by `make docs` (internal/docgen).
cd "$(dirname "$0")/.." && exec go run ./internal/tools/docgen -imports
