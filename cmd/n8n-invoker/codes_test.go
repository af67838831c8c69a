package main

import (
	"context"
	"testing"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// TestExitCodeOfEveryCode: every code has its exit status; what the
// caller must change exits 2, n8n out of reach 3, an interrupt 130.
func TestExitCodeOfEveryCode(t *testing.T) {
	t.Parallel()
	usage := map[invocation.Code]bool{invocation.CodeUnknownWorkflow: true, invocation.CodeBadRequest: true, invocation.CodeKeyConflict: true}
	for _, c := range invocation.Codes() {
		got, ok := exitCodes[c]
		if !ok {
			t.Errorf("%s has no exit code", c)
			continue
		}
		var want int
		switch {
		case c == invocation.CodeOK:
			want = exitOK
		case c == invocation.CodeCanceled || c == invocation.CodeCanceledInFlight:
			want = exitInterrupted
		case usage[c]:
			want = exitUsage
		case c.Degraded() || c == invocation.CodeNotSent || c == invocation.CodeUnavailable || c == invocation.CodeRateLimited || c == invocation.CodeLost:
			want = exitUnreachable
		default:
			want = exitFailed
		}
		if got != want {
			t.Errorf("%s exits %d, want %d", c, got, want)
		}
		if c != invocation.CodeOK && c != invocation.CodeCanceled && c != invocation.CodeCanceledInFlight {
			if e := exitCode(context.Background(), &invocation.Error{Code: c}); e != want {
				t.Errorf("exitCode of %s = %d", c, e)
			}
			if o := errorJSON(&invocation.Error{Code: c, ExecutionID: "9", Node: "Code"}); o.Code != c.String() || o.ExecutionID != "9" || o.Node != "Code" {
				t.Errorf("failure JSON of %s: %+v", c, o)
			}
		}
	}
}
