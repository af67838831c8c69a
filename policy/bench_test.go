package policy

import (
	"context"
	"testing"
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

// BenchmarkGuard is the whole per-attempt guard: breaker, budget and rate
// limiter (a rate high enough never to wait).
func BenchmarkGuard(b *testing.B) {
	br, _ := NewBreakers(BreakerConfig{})
	bu, _ := NewBudget(BudgetConfig{})
	lim, _ := NewRateLimiter(1e9, 1e6)
	g := &Guard{Breakers: br, Budget: bu, Limiter: lim}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			done, err := g.Allow(ctx, "wf", nil)
			if err != nil {
				b.Fatal(err)
			}
			done(nil)
		}
	})
}
