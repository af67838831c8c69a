package policy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// RateLimiter keeps calls under a rate (golang.org/x/time/rate) and backs
// off when the server says 429: it pauses every caller until the
// Retry-After has passed (at most its max pause) and halves its rate,
// which successes then raise back step by step. Safe for concurrent use.
type RateLimiter struct {
	lim      *rate.Limiter
	base     rate.Limit
	maxPause time.Duration

	mu          sync.Mutex
	pausedUntil time.Time
}

// RateLimiterOption configures a RateLimiter.
type RateLimiterOption func(*RateLimiter) error

// WithMaxPause caps the pause after a 429 (default DefaultMaxRetryAfter):
// a Retry-After of a day (a WAF's) pauses every caller for d, not for a
// day. Give it the retry policy's MaxRetryAfter, past which the call
// itself fails fast anyway.
func WithMaxPause(d time.Duration) RateLimiterOption {
	return func(r *RateLimiter) error {
		if d < 0 {
			return fmt.Errorf("policy: rate limiter max pause must not be negative, got %s", d)
		}
		if d > 0 {
			r.maxPause = d
		}
		return nil
	}
}

// NewRateLimiter allows rps calls per second with bursts of burst (0
// means max(1, rps)).
func NewRateLimiter(rps float64, burst int, opts ...RateLimiterOption) (*RateLimiter, error) {
	if !(rps > 0) || math.IsInf(rps, 0) || burst < 0 {
		return nil, fmt.Errorf("policy: rate limit needs rps > 0 and burst >= 0, got %v and %d", rps, burst)
	}
	if burst == 0 {
		burst = max(1, int(rps))
	}
	r := &RateLimiter{lim: rate.NewLimiter(rate.Limit(rps), burst), base: rate.Limit(rps), maxPause: DefaultMaxRetryAfter}
	for _, o := range opts {
		if err := o(r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Wait blocks until a call may start, or returns ctx's error.
func (r *RateLimiter) Wait(ctx context.Context) error {
	r.mu.Lock()
	pause := time.Until(r.pausedUntil)
	r.mu.Unlock()
	if err := invocation.Sleep(ctx, pause); err != nil {
		return err
	}
	res := r.lim.Reserve()
	if !res.OK() {
		return fmt.Errorf("policy: rate limiter cannot grant a call")
	}
	if err := invocation.Sleep(ctx, res.Delay()); err != nil {
		res.Cancel()
		return err
	}
	return nil
}

// Throttled records a 429: callers pause for retryAfter (when positive;
// at most the max pause) and the rate halves, down to a sixteenth of the
// configured rate.
func (r *RateLimiter) Throttled(retryAfter time.Duration) {
	retryAfter = min(retryAfter, r.maxPause)
	r.mu.Lock()
	defer r.mu.Unlock()
	if until := time.Now().Add(retryAfter); retryAfter > 0 && until.After(r.pausedUntil) {
		r.pausedUntil = until
	}
	r.lim.SetLimit(max(r.lim.Limit()/2, r.base/16))
}

// Succeeded raises a lowered rate by a twentieth of the configured rate.
func (r *RateLimiter) Succeeded() {
	if cur := r.lim.Limit(); cur < r.base {
		r.lim.SetLimit(min(r.base, cur+r.base/20))
	}
}

// Limit returns the current rate in calls per second.
func (r *RateLimiter) Limit() float64 { return float64(r.lim.Limit()) }

// Attempt is the rate-limit stage of the pipeline: it waits for a slot,
// pauses and halves the rate on a 429, and raises it on success.
func (r *RateLimiter) Attempt(ctx context.Context, a *invocation.Attempt, next invocation.AttemptHandler) (*invocation.Result, error) {
	if err := r.Wait(ctx); err != nil {
		return nil, err
	}
	res, err := next(ctx, a)
	var he *invocation.HTTPError
	switch {
	case err == nil:
		r.Succeeded()
	case errors.As(err, &he) && he.StatusCode == 429:
		r.Throttled(he.RetryAfter)
	}
	return res, err
}
