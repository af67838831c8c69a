package policy

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

func TestBudget(t *testing.T) {
	t.Parallel()
	b, err := NewBudget(BudgetConfig{Capacity: 20, RetryCost: 5, TimeoutCost: 10})
	if err != nil {
		t.Fatal(err)
	}
	c1, ok1 := b.Acquire(false)
	c2, ok2 := b.Acquire(true)
	_, ok3 := b.Acquire(true) // 5 left, a timeout retry costs 10
	c4, ok4 := b.Acquire(false)
	_, ok5 := b.Acquire(false)
	if !ok1 || !ok2 || ok3 || !ok4 || ok5 || c1 != 5 || c2 != 10 || c4 != 5 || b.Available() != 0 {
		t.Fatalf("acquire: %v %v %v %v %v, left %d", ok1, ok2, ok3, ok4, ok5, b.Available())
	}
	b.Success(c2)
	b.Success(0) // a first-try success refunds 1
	if b.Available() != 11 {
		t.Errorf("available %d, want 11", b.Available())
	}
	for range 100 {
		b.Success(5)
	}
	if b.Available() != 20 {
		t.Errorf("budget above capacity: %d", b.Available())
	}
}

func TestRateLimiterPacesAndBacksOffOn429(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r, err := NewRateLimiter(10, 1)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for range 11 {
			if err := r.Wait(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("11 calls at 10/s with burst 1 took %s, want 1s", d)
		}
		r.Throttled(5 * time.Second)
		if r.Limit() != 5 {
			t.Errorf("limit after 429 = %v, want 5", r.Limit())
		}
		start = time.Now()
		_ = r.Wait(t.Context())
		if d := time.Since(start); d < 5*time.Second {
			t.Errorf("waited %s after a 429 with Retry-After 5s", d)
		}
		for range 20 {
			r.Succeeded()
		}
		if r.Limit() != 10 {
			t.Errorf("limit did not recover: %v", r.Limit())
		}
		ctx, cancel := context.WithCancel(t.Context())
		r.Throttled(time.Hour)
		cancel()
		if err := r.Wait(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("canceled wait: %v", err)
		}
	})
}

// TestRateLimiterPauseCapped: the pause after a 429 lasts the
// Retry-After up to the limiter's max pause (max_retry_after; default
// DefaultMaxRetryAfter), never a WAF's day.
func TestRateLimiterPauseCapped(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		opts       []RateLimiterOption
		retryAfter time.Duration
		want       time.Duration
	}{
		{"default cap", nil, 24 * time.Hour, DefaultMaxRetryAfter},
		{"configured cap", []RateLimiterOption{WithMaxPause(10 * time.Second)}, 24 * time.Hour, 10 * time.Second},
		{"under the cap", []RateLimiterOption{WithMaxPause(10 * time.Second)}, 3 * time.Second, 3 * time.Second},
		{"HTTP-date far ahead", []RateLimiterOption{WithMaxPause(time.Minute)}, 365 * 24 * time.Hour, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				r, err := NewRateLimiter(1000, 1000, tt.opts...)
				if err != nil {
					t.Fatal(err)
				}
				r.Throttled(tt.retryAfter)
				start := time.Now()
				if err := r.Wait(t.Context()); err != nil {
					t.Fatal(err)
				}
				if d := time.Since(start); d != tt.want {
					t.Errorf("paused %s after Retry-After %s, want %s", d, tt.retryAfter, tt.want)
				}
			})
		})
	}
	if _, err := NewRateLimiter(1, 1, WithMaxPause(-time.Second)); err == nil {
		t.Error("a negative max pause was accepted")
	}
}

func TestBulkhead(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := NewBulkhead(2, time.Second)
		r1, _ := b.Acquire(t.Context(), "wf")
		r2, _ := b.Acquire(t.Context(), "wf")
		other, err := b.Acquire(t.Context(), "other")
		if err != nil || b.InFlight("wf") != 2 {
			t.Fatalf("other key blocked: %v", err)
		}
		other()
		start := time.Now()
		_, err = b.Acquire(t.Context(), "wf")
		if invocation.CodeOf(err) != invocation.CodeBulkheadFull || !errors.Is(err, invocation.ErrBulkheadFull) || time.Since(start) != time.Second {
			t.Fatalf("full bulkhead: %v after %s", err, time.Since(start))
		}
		go func() { time.Sleep(100 * time.Millisecond); r1() }()
		r3, err := b.Acquire(t.Context(), "wf")
		if err != nil {
			t.Fatal(err)
		}
		r2()
		r3()
		if b.InFlight("wf") != 0 {
			t.Errorf("in flight %d", b.InFlight("wf"))
		}
	})
}

func TestAttemptStages(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		// MaxPause < 0: refuse at once (a call with a fallback); the
		// default pauses, see TestOpenBreakerPausesCalls.
		br, _ := NewBreakers(BreakerConfig{ConsecutiveFailures: 2, OpenTimeout: time.Minute, MaxPause: -1})
		lim, _ := NewRateLimiter(100, 100)
		fail := &invocation.HTTPError{StatusCode: 503, ErrClass: invocation.Transient}
		throttle := &invocation.HTTPError{StatusCode: 429, ErrClass: invocation.Transient, RetryAfter: 2 * time.Second, HasRetryAfter: true}
		sent := 0
		answer := func(err error) invocation.AttemptHandler {
			return func(context.Context, *invocation.Attempt) (*invocation.Result, error) {
				sent++
				if err != nil {
					return nil, err
				}
				return &invocation.Result{}, nil
			}
		}
		a := &invocation.Attempt{Request: &invocation.Request{Workflow: "wf"}, Number: 1}
		for range 2 {
			if _, err := br.Attempt(t.Context(), a, answer(fail)); err != fail {
				t.Fatalf("breaker stage changed the error: %v", err)
			}
		}
		_, err := br.Attempt(t.Context(), a, answer(nil))
		if !errors.Is(err, invocation.ErrCircuitOpen) || invocation.OutcomeOf(err) != invocation.NotSent || sent != 2 {
			t.Fatalf("breaker should be open and refuse without sending: %v, %d sent", err, sent)
		}
		if _, err := lim.Attempt(t.Context(), a, answer(throttle)); err != throttle || lim.Limit() != 50 {
			t.Errorf("limiter did not back off on 429: %v", lim.Limit())
		}
		time.Sleep(3 * time.Second)
		if _, err := lim.Attempt(t.Context(), a, answer(nil)); err != nil || lim.Limit() <= 50 {
			t.Errorf("limiter did not recover on success: %v %v", err, lim.Limit())
		}
	})
}

// TestOpenBreakerPausesCalls: with the default settings, a call that
// meets an open breaker is not failed: it waits (not sent) for the
// half-open probe, and goes through once the probe closed the breaker;
// a call whose deadline ends before the breaker opens again gets the
// circuit-open error without sending anything; a 429 does not count.
func TestOpenBreakerPausesCalls(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		br, _ := NewBreakers(BreakerConfig{ConsecutiveFailures: 2, OpenTimeout: 30 * time.Second})
		fail := &invocation.HTTPError{StatusCode: 503, ErrClass: invocation.Transient}
		var sent atomic.Int32
		answer := func(err error) invocation.AttemptHandler {
			return func(context.Context, *invocation.Attempt) (*invocation.Result, error) {
				sent.Add(1)
				if err != nil {
					return nil, err
				}
				return &invocation.Result{}, nil
			}
		}
		a := &invocation.Attempt{Request: &invocation.Request{Workflow: "wf"}, Number: 1}
		throttle := &invocation.HTTPError{StatusCode: 429, ErrClass: invocation.Transient, RetryAfter: time.Second, HasRetryAfter: true}
		for range 5 {
			_, _ = br.Attempt(t.Context(), a, answer(throttle))
		}
		if st := br.Get("wf").State(); st != Closed {
			t.Fatalf("429s opened the breaker: %s", st)
		}
		for range 2 {
			_, _ = br.Attempt(t.Context(), a, answer(fail))
		}
		sent.Store(0)
		short, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if _, err := br.Attempt(short, a, answer(nil)); !errors.Is(err, invocation.ErrCircuitOpen) || sent.Load() != 0 {
			t.Fatalf("a deadline before the probe: %v, %d sent", err, sent.Load())
		}
		start := time.Now()
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				if _, err := br.Attempt(t.Context(), a, answer(nil)); err != nil {
					t.Errorf("paused call: %v", err)
				}
			})
		}
		wg.Wait()
		if d := time.Since(start); d != 30*time.Second || sent.Load() != 3 || br.Get("wf").State() != Closed {
			t.Errorf("paused %s, %d sent, state %s; want 30s, 3, closed", d, sent.Load(), br.Get("wf").State())
		}
	})
}

func TestBudgetRefund(t *testing.T) {
	t.Parallel()
	bu, _ := NewBudget(BudgetConfig{Capacity: 10, RetryCost: 5})
	cost, ok := bu.Acquire(false)
	if !ok || cost != 5 || bu.Available() != 5 {
		t.Fatalf("a retry costs 5: %d %v, %d left", cost, ok, bu.Available())
	}
	bu.Success(cost) // its success gives the 5 back
	if bu.Available() != 10 {
		t.Errorf("budget after successful retry %d", bu.Available())
	}
	_, _ = bu.Acquire(false)
	_, _ = bu.Acquire(false)
	if _, ok := bu.Acquire(false); ok {
		t.Errorf("empty budget granted a retry")
	}
}

func TestRetryCapAndWait(t *testing.T) {
	t.Parallel()
	r := Retry{BaseDelay: time.Second, Multiplier: 3, MaxDelay: 20 * time.Second, MaxRetryAfter: time.Minute,
		Jitter: func(c time.Duration) time.Duration { return c / 2 }}
	caps := []time.Duration{time.Second, 3 * time.Second, 9 * time.Second, 20 * time.Second, 20 * time.Second}
	for i, want := range caps {
		if got := r.Cap(i + 1); got != want {
			t.Errorf("Cap(%d) = %s, want %s", i+1, got, want)
		}
	}
	if w, ok := r.Wait(2, 0, false); !ok || w != 1500*time.Millisecond {
		t.Errorf("jittered wait %s", w)
	}
	if w, ok := r.Wait(1, 10*time.Second, true); !ok || w != 10*time.Second {
		t.Errorf("Retry-After wait %s, want never below 10s", w)
	}
	if w, ok := r.Wait(1, 2*time.Minute, true); ok || w != 2*time.Minute {
		t.Errorf("Retry-After beyond the clamp: %s %v", w, ok)
	}
	if (Retry{MaxRetries: -1}).Validate() == nil || (Retry{Multiplier: 0.5}).Validate() == nil {
		t.Error("invalid policy accepted")
	}
}
