# The approved Go toolchain (fixes stdlib vulnerabilities of 1.26.8); the go command fetches it.
export GOTOOLCHAIN := go1.27.3

# n8n-invoker: `make demo` runs a workflow on a local real n8n;
# `make test` runs every test against it. Both install what they need.

.PHONY: demo test build docs n8n-start n8n-stop clean

# The version stamped into the CLI (`n8n-invoker --version`): the git tag,
# else the CHANGELOG's latest version with the commit (scripts/version.sh).
VERSION ?= $(shell scripts/version.sh)
# Where `make build` writes the CLI.
BIN ?= bin/n8n-invoker

build:
	go build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/n8n-invoker

# Regenerates the generated references in docs/ (the configuration
# reference, the import graph); a test fails when they are stale.
docs:
	go run ./internal/tools/docgen

demo: build
	scripts/n8n start
	set -a && . .n8n/env && set +a && \
	  bin/n8n-invoker run user-onboarding -p email=user@example.com -p plan=premium --config examples/config.yaml --log-level info

test:
	scripts/test.sh

n8n-start:
	scripts/n8n start

n8n-stop:
	scripts/n8n stop

clean:
	rm -rf bin
