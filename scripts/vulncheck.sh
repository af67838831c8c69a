#!/usr/bin/env bash
# scripts/vulncheck.sh: govulncheck against a local vulnerability database.
# The database's usual host is not reachable from these machines, so the
# database is built from the golang.org/x/vulndb module (pinned below;
# refresh it deliberately) and cached under the cache dir.
set -euo pipefail
export GOTOOLCHAIN=go1.27.3 # the approved Go (fixes stdlib vulnerabilities of 1.26.8); fetched by the go command
cd "$(dirname "$0")/.."
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
# Root (CI) caches under /var/cache: n8n cannot serve its OpenAPI spec from
# a path with a dot directory (Express refuses dotfiles), ~/.cache included.
if [ "$(id -u)" = 0 ]; then default_cache=/var/cache/n8n-invoker; else default_cache=$HOME/.cache/n8n-invoker; fi
cache=${N8N_INVOKER_CACHE:-$default_cache}
db=$cache/vulndb-$VULNDB_VERSION
if [ ! -f "$db/index/db.json" ] && [ ! -f "$db/index/db.json.gz" ]; then
  echo "scripts/vulncheck.sh: building the vulnerability database $VULNDB_VERSION (about a minute, once)" >&2
  src=$(GOWORK=off go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  work=$(mktemp -d)
  cp -r "$src/." "$work/" && chmod -R u+w "$work"
  rm -rf "$db.tmp" && mkdir -p "$db.tmp"
  (cd "$work" && GOFLAGS=-mod=mod go run ./cmd/indexdb -vulns data/osv -out "$db.tmp")
  rm -rf "$db" && mv "$db.tmp" "$db" && rm -rf "$work"
fi
go tool govulncheck -db "file://$db" ./... ./cmd/n8n-invoker/... ./contrib/postgres/... ./contrib/redis/...
