package server

import (
	"net/http"
	"testing"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// TestStatusOfEveryCode: every code has its HTTP status and API error
// code, and the client reads the service's refusal back as the same code.
func TestStatusOfEveryCode(t *testing.T) {
	t.Parallel()
	for _, c := range invocation.Codes() {
		s, ok := codeStatus[c]
		if !ok {
			t.Errorf("%s has no HTTP status", c)
			continue
		}
		if c != invocation.CodeOK && s < 400 {
			t.Errorf("%s answers %d", c, s)
		}
		if c == invocation.CodeOK {
			continue
		}
		if got := invocation.CodeOf(refusal(s, apiCode(c), "x")); got != c {
			t.Errorf("%s: the client reads %d %s back as %s", c, s, apiCode(c), got)
		}
	}
	for _, tt := range []struct {
		c    invocation.Code
		want int
	}{
		{invocation.CodeKeyConflict, http.StatusConflict},
		{invocation.CodeUnknownWorkflow, http.StatusNotFound},
		{invocation.CodeBadRequest, http.StatusBadRequest},
		{invocation.CodeRateLimited, http.StatusTooManyRequests},
	} {
		if StatusOf(tt.c) != tt.want {
			t.Errorf("%s: %d, want %d", tt.c, StatusOf(tt.c), tt.want)
		}
	}
}
