package pipeline

import (
	"context"
	"testing"

	"github.com/n8n-invoker/n8n-invoker/httpinvoker"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/policy"
)

// BenchmarkStages is the cost of the pipeline's stages per call, over a
// transport that answers at once: each case adds one stage to the one
// before, so the difference between two lines is that stage's cost.
// BENCHMARKS.md has the table.
func BenchmarkStages(b *testing.B) {
	ok := &invocation.Result{StatusCode: 200, Output: []byte("{}"), Completed: true}
	transport := invocation.TransportFunc(func(context.Context, *invocation.Attempt) (*invocation.Result, error) {
		r := *ok
		return &r, nil
	})
	breakers, _ := policy.NewBreakers(policy.BreakerConfig{})
	limiter, _ := policy.NewRateLimiter(1e9, 1e6)
	budget, _ := policy.NewBudget(policy.BudgetConfig{})
	steps := []struct {
		name string
		add  func(s *Stages)
	}{
		{"1-resolve+retry+transport", func(*Stages) {}},
		{"2-+budget", func(s *Stages) { s.Retry.Budget = budget }},
		{"3-+breaker", func(s *Stages) { s.Breakers = breakers }},
		{"4-+rate-limit", func(s *Stages) { s.RateLimit = limiter }},
		{"5-+bulkhead", func(s *Stages) { s.Bulkhead = policy.NewBulkhead(1<<20, 0) }},
		{"6-+sign", func(s *Stages) { s.Sign = httpinvoker.Signer{} }},
		{"7-+interceptor", func(s *Stages) { s.Interceptors = []Interceptor{InterceptorBase{}} }},
	}
	s := Stages{Resolve: StaticResolver{"wf": {Workflow: "wf", Path: "hook"}}, Retry: &Retry{}, Transport: transport}
	req := &invocation.Request{Workflow: "wf", Params: map[string]any{"email": "a@b.c"}, RequestID: "r", IdempotencyKey: "k"}
	for _, st := range steps {
		st.add(&s)
		cp := s
		r := *s.Retry
		cp.Retry = &r
		p, err := New(cp)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(st.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				if _, err := p.Invoke(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
