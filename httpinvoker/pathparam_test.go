package httpinvoker

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// TestDotSegmentsRefused: "." and ".." as path parameter values are
// refused with an error of code bad-request (permanent) and nothing is
// sent: a proxy that normalises dot segments would turn them into
// another webhook's path. Values that merely contain dots still go.
func TestDotSegmentsRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value  string
		refuse bool
	}{
		{".", true},
		{"..", true},
		{"...", false},
		{"a.b", false},
		{".hidden", false},
		{"1..2", false},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			t.Parallel()
			var seen atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen.Add(1)
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{}`))
			}))
			defer srv.Close()
			tr, err := New(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			a := attempt("orders", &invocation.Target{Path: "orders/:orderId/items", WebhookID: "wh-1"})
			a.Request.PathParams = map[string]string{"orderId": tt.value}
			_, err = tr.Attempt(t.Context(), a)
			if !tt.refuse {
				if err != nil || seen.Load() != 1 {
					t.Fatalf("value %q: err %v, %d requests; want it sent", tt.value, err, seen.Load())
				}
				return
			}
			if invocation.CodeOf(err) != invocation.CodeBadRequest || !strings.Contains(err.Error(), "dot segment") || !errors.Is(err, invocation.ErrPermanent) || invocation.OutcomeOf(err) != invocation.NotSent {
				t.Fatalf("value %q: err %v, want a permanent bad-request, not sent, with its reason", tt.value, err)
			}
			if n := seen.Load(); n != 0 {
				t.Errorf("value %q: %d requests sent, want none", tt.value, n)
			}
		})
	}
}
