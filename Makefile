# The approved Go toolchain (fixes stdlib vulnerabilities of 1.26.8); the go command fetches it.
export GOTOOLCHAIN := go1.27.3

# n8n-invoker: `make demo` runs a workflow on a local real n8n;
# `make test` runs every test against it. Both install what they need.

.PHONY: demo test build n8n-start n8n-stop clean

build:
	go build -o bin/n8n-invoker ./cmd/n8n-invoker

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
