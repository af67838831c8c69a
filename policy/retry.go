package policy

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Defaults of Retry.
const (
	DefaultMaxRetries    = 6
	DefaultBaseDelay     = 2 * time.Second
	DefaultMultiplier    = 2.0
	DefaultMaxDelay      = 60 * time.Second
	DefaultMaxRetryAfter = 60 * time.Second
)

// Retry is a retry policy: before retry n (n >= 1) it waits a random
// duration in [0, min(MaxDelay, BaseDelay*Multiplier^(n-1))) (full
// jitter), or the server's Retry-After when that is longer.
type Retry struct {
	// MaxRetries is the number of retries after the first attempt.
	MaxRetries int
	// BaseDelay is the backoff cap before the first retry. The seed's
	// backoff_factor, in seconds.
	BaseDelay time.Duration
	// Multiplier grows the cap per retry; 0 means DefaultMultiplier.
	Multiplier float64
	// MaxDelay caps the backoff; 0 means DefaultMaxDelay.
	MaxDelay time.Duration
	// MaxElapsed bounds the whole invocation: a retry whose wait would end
	// past it is not made. 0 means no bound.
	MaxElapsed time.Duration
	// MaxRetryAfter is the longest Retry-After honoured; a longer one ends
	// the invocation at once (the error's RetryAfter holds the wait). 0 means DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// Jitter maps the cap to the actual wait; nil means full jitter
	// (uniform in [0, cap)). Tests set it for determinism.
	Jitter func(cap time.Duration) time.Duration
}

// DefaultRetry returns the default policy: 6 retries, caps of 2 s, 4 s,
// 8 s, ..., at most 60 s: with 30 % of attempts failing at random, 7
// failures in a row happen to 0.02 % of calls.
func DefaultRetry() Retry {
	return Retry{MaxRetries: DefaultMaxRetries, BaseDelay: DefaultBaseDelay, Multiplier: DefaultMultiplier,
		MaxDelay: DefaultMaxDelay, MaxRetryAfter: DefaultMaxRetryAfter}
}

// Validate checks the policy.
func (r Retry) Validate() error {
	switch {
	case r.MaxRetries < 0:
		return fmt.Errorf("max retries must not be negative, got %d", r.MaxRetries)
	case r.BaseDelay < 0, r.MaxDelay < 0, r.MaxElapsed < 0, r.MaxRetryAfter < 0:
		return errors.New("retry delays must not be negative")
	case r.Multiplier != 0 && (r.Multiplier < 1 || math.IsNaN(r.Multiplier) || r.Multiplier > 100):
		return fmt.Errorf("multiplier must be between 1 and 100, got %v", r.Multiplier)
	}
	return nil
}

// Cap returns the un-jittered backoff cap before retry n (n >= 1).
func (r Retry) Cap(n int) time.Duration {
	maxDelay := r.MaxDelay
	if maxDelay == 0 {
		maxDelay = DefaultMaxDelay
	}
	mult := r.Multiplier
	if mult == 0 {
		mult = DefaultMultiplier
	}
	if r.BaseDelay <= 0 || n < 1 {
		return 0
	}
	d := float64(r.BaseDelay) * math.Pow(mult, float64(n-1))
	if d >= float64(maxDelay) {
		return maxDelay
	}
	return time.Duration(d)
}

// Wait returns how long to wait before retry n. retryAfter is the
// server's Retry-After when hasRetryAfter: the wait is never below it.
// ok is false when the server asks for more than MaxRetryAfter.
func (r Retry) Wait(n int, retryAfter time.Duration, hasRetryAfter bool) (wait time.Duration, ok bool) {
	c := r.Cap(n)
	if r.Jitter != nil {
		wait = r.Jitter(c)
	} else if c > 0 {
		wait = rand.N(c)
	}
	if hasRetryAfter {
		maxRA := r.MaxRetryAfter
		if maxRA == 0 {
			maxRA = DefaultMaxRetryAfter
		}
		if retryAfter > maxRA {
			return retryAfter, false
		}
		wait = max(wait, retryAfter)
	}
	return wait, true
}

// ParseRetryAfter reads a Retry-After value in either form: delay seconds
// ("120") or an HTTP date, relative to now (invocation.ParseRetryAfter,
// which the API client shares).
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	return invocation.ParseRetryAfter(v, now)
}
