// Command n8n-invoker runs n8n workflows from the shell.
//
//	n8n-invoker run <workflow> [-p key=value ...] [--data @file.json] [--config path]
//
// It prints the result as JSON on stdout. Exit codes:
//
//	0  success
//	1  the workflow failed, or n8n refused or answered badly (HTTP error, invalid response)
//	2  usage or configuration error, unknown workflow
//	3  n8n unreachable or unavailable (connection failures, 502/503/504, timeouts)
//	130 interrupted
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
