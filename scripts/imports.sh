#!/bin/sh
# prints the project-internal import graph, one package per line
# Usage: scripts/imports.sh (from the repository root). The README's architecture section shows its output.
m=github.com/n8n-invoker/n8n-invoker
go list -f '{{.ImportPath}}{{range .Imports}} {{.}}{{end}}' ./... ./cmd/n8n-invoker/... ./contrib/postgres/... ./contrib/redis/... | while read pkg deps; do
  own=""
  for d in $deps; do case $d in $m|$m/*) own="$own ${d#$m/}";; esac; done
  p=${pkg#$m}; p=${p#/}; [ -z "$p" ] && p="(root) invoker"
  own=$(echo "$own" | sed "s#$m#(root) invoker#g")
  echo "$p ->$own"
done
