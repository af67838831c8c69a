#!/bin/sh
# scripts/version.sh: the version `make build` stamps into the CLI
# (-ldflags -X main.version=...). A tagged commit gives its tag
# (`git describe --tags --dirty`, e.g. v0.4.0 or v0.4.0-3-gabc1234-dirty);
# else the CHANGELOG's latest version heading with the commit, e.g.
# 0.4.0-dev+80a9cb7 (or 0.4.0-dev without git).
cd "$(dirname "$0")/.." || exit 1
if v=$(git describe --tags --dirty 2>/dev/null) && [ -n "$v" ]; then
  echo "$v"
  exit 0
fi
# The first heading "## 0.2.0 (...)" or "## Unreleased (0.4.0): ...".
base=$(sed -n 's/^## \(Unreleased (\)\{0,1\}v\{0,1\}\([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\).*/\2/p' CHANGELOG.md | head -n 1)
[ -n "$base" ] || base=0.0.0
if rev=$(git describe --always --dirty 2>/dev/null) && [ -n "$rev" ]; then
  echo "$base-dev+$rev"
else
  echo "$base-dev"
fi
