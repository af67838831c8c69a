package policy

import (
	"context"
	"errors"

	"github.com/n8n-invoker/n8n-invoker/config"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Guard combines the per-attempt policies: the rate limiter, the
// circuit breakers and the retry budget. Any of them may be nil. It is
// the HTTP invoker's Gate.
type Guard struct {
	Limiter  *RateLimiter
	Breakers *Breakers
	Budget   *Budget
}

// Allow is called before each attempt of an invocation of workflow; prev
// is the previous attempt's error (nil before the first). It waits for
// the rate limiter, asks the breaker, and takes a retry's cost from the
// budget. It returns done, to be called once with the attempt's error, or
// an error that ends the invocation: the context's, a
// *CircuitOpenError, or ErrRetryBudgetExhausted.
func (g *Guard) Allow(ctx context.Context, workflow string, prev error) (done func(error), err error) {
	cost := 0
	if prev != nil && g.Budget != nil {
		var te *invocation.TransportError
		timedOut := errors.As(prev, &te) && te.TimedOut
		var ok bool
		if cost, ok = g.Budget.Acquire(timedOut); !ok {
			return nil, invocation.ErrRetryBudgetExhausted
		}
	}
	refund := func() {
		if cost > 0 {
			g.Budget.Success(cost)
		}
	}
	if g.Limiter != nil {
		if err := g.Limiter.Wait(ctx); err != nil {
			refund()
			return nil, err
		}
	}
	var breakerDone func(Verdict)
	if g.Breakers != nil {
		if breakerDone, err = g.Breakers.Get(workflow).Allow(); err != nil {
			refund()
			return nil, err
		}
	}
	return func(err error) {
		if breakerDone != nil {
			breakerDone(VerdictOf(err))
		}
		if g.Limiter != nil {
			var he *invocation.HTTPError
			switch {
			case errors.As(err, &he) && he.StatusCode == 429:
				g.Limiter.Throttled(he.RetryAfter)
			case err == nil:
				g.Limiter.Succeeded()
			}
		}
		if err == nil && g.Budget != nil {
			g.Budget.Success(cost)
		}
	}, nil
}

// GuardFromConfig builds the guard the configuration's invokers.http
// section asks for; onStateChange, if not nil, observes the breakers.
func GuardFromConfig(h *config.HTTP, onStateChange func(endpoint string, from, to State)) (*Guard, error) {
	g := &Guard{}
	if h.Retry.Budget.Enabled {
		b, err := NewBudget(BudgetConfig{Capacity: h.Retry.Budget.Capacity, RetryCost: h.Retry.Budget.RetryCost, TimeoutCost: h.Retry.Budget.TimeoutCost})
		if err != nil {
			return nil, err
		}
		g.Budget = b
	}
	if cb := h.CircuitBreaker; cb.Enabled {
		b, err := NewBreakers(BreakerConfig{
			ConsecutiveFailures: cb.ConsecutiveFailures, FailureRate: cb.FailureRate, Window: cb.Window.D(),
			MinCalls: cb.MinCalls, OpenTimeout: cb.OpenTimeout.D(), HalfOpenProbes: cb.HalfOpenProbes,
			OnStateChange: onStateChange,
		})
		if err != nil {
			return nil, err
		}
		g.Breakers = b
	}
	if rl := h.RateLimit; rl.Enabled {
		l, err := NewRateLimiter(rl.RequestsPerSecond, rl.Burst)
		if err != nil {
			return nil, err
		}
		g.Limiter = l
	}
	return g, nil
}
