package policy

import (
	"context"
	"testing"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// BenchmarkBreaker is the breaker's cost per call, alone.
func BenchmarkBreaker(b *testing.B) {
	br, _ := NewBreaker("wf", BreakerConfig{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			done, err := br.Allow()
			if err != nil {
				b.Fatal(err)
			}
			done(Success)
		}
	})
}

// BenchmarkAttemptStages is the per-attempt stages of policy: the rate
// limiter (a rate high enough never to wait) and the breaker.
func BenchmarkAttemptStages(b *testing.B) {
	br, _ := NewBreakers(BreakerConfig{})
	lim, _ := NewRateLimiter(1e9, 1e6)
	ctx := context.Background()
	ok := &invocation.Result{}
	transport := func(context.Context, *invocation.Attempt) (*invocation.Result, error) { return ok, nil }
	viaBreaker := func(ctx context.Context, a *invocation.Attempt) (*invocation.Result, error) {
		return br.Attempt(ctx, a, transport)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		a := &invocation.Attempt{Request: &invocation.Request{Workflow: "wf"}, Number: 1}
		for pb.Next() {
			if _, err := lim.Attempt(ctx, a, viaBreaker); err != nil {
				b.Fatal(err)
			}
		}
	})
}
