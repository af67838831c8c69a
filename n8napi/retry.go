package n8napi

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Defaults of RetryPolicy.
const (
	DefaultAPIMaxAttempts   = 4
	DefaultAPIBaseDelay     = 200 * time.Millisecond
	DefaultAPIMaxDelay      = 5 * time.Second
	DefaultAPIMaxRetryAfter = time.Minute
)

// RetryPolicy is the API client's own retry policy, apart from the
// webhook call's retry budget: reconcile, polling and lookups retry
// n8n's transient API failures with it. A 429 is retried for every
// method (n8n did not run the request) after its Retry-After, or after
// X-RateLimit-Reset when it has none, and the wait holds every call of
// the client, since the limit is the key's. A 502, 503 or 504, an HTML
// 404 (a starting n8n) and a lost connection are retried for reads
// only; a write is retried only when the connection was refused (never
// sent); a 409 that asks to try again in a moment (n8n 2.x while it
// unpublishes a workflow) is retried for every method. Zero fields take
// the defaults.
type RetryPolicy struct {
	// MaxAttempts counts the first try (default 4; 1 turns retries off).
	MaxAttempts int
	// BaseDelay and MaxDelay bound the jittered exponential backoff
	// (defaults 200 ms and 5 s).
	BaseDelay, MaxDelay time.Duration
	// MaxRetryAfter is the longest server-asked wait honoured (default 1
	// min); a 429 asking for more fails at once with its RetryAfter.
	MaxRetryAfter time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultAPIMaxAttempts
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = DefaultAPIBaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = DefaultAPIMaxDelay
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = DefaultAPIMaxRetryAfter
	}
	return p
}

// WithRetry sets the API client's retry policy.
func WithRetry(p RetryPolicy) Option {
	return func(c *Client) error {
		if p.MaxAttempts < 0 || p.BaseDelay < 0 || p.MaxDelay < 0 || p.MaxRetryAfter < 0 {
			return errors.New("retry policy: negative value")
		}
		c.retry = p.withDefaults()
		return nil
	}
}

// RateLimit is what an answer's X-RateLimit-* headers said (n8n sends
// them with per-key API rate limits, off by default, and on its MCP
// server).
type RateLimit struct {
	Limit, Remaining int
	// Reset is when the window ends; zero when not sent.
	Reset time.Time
}

// parseRateLimit reads X-RateLimit-Limit, -Remaining and -Reset (epoch
// seconds, or seconds from now when small); nil without them.
func parseRateLimit(h http.Header, now time.Time) *RateLimit {
	lim, rem, reset := h.Get("X-RateLimit-Limit"), h.Get("X-RateLimit-Remaining"), h.Get("X-RateLimit-Reset")
	if lim == "" && rem == "" && reset == "" {
		return nil
	}
	rl := &RateLimit{Limit: -1, Remaining: -1}
	if n, err := strconv.Atoi(strings.TrimSpace(lim)); err == nil {
		rl.Limit = n
	}
	if n, err := strconv.Atoi(strings.TrimSpace(rem)); err == nil {
		rl.Remaining = n
	}
	if f, err := strconv.ParseFloat(strings.TrimSpace(reset), 64); err == nil && f >= 0 {
		if f > 1e8 { // epoch seconds (a delta is far smaller)
			rl.Reset = time.Unix(0, int64(f*1e9))
		} else {
			rl.Reset = now.Add(time.Duration(f * float64(time.Second)))
		}
	}
	return rl
}

// pause holds a client's calls until a rate limit's window ends.
type pause struct {
	mu    sync.Mutex
	until time.Time
}

func (p *pause) extend(t time.Time) {
	p.mu.Lock()
	if t.After(p.until) {
		p.until = t
	}
	p.mu.Unlock()
}

func (p *pause) wait(ctx context.Context) error {
	p.mu.Lock()
	d := time.Until(p.until)
	p.mu.Unlock()
	if d <= 0 {
		return nil
	}
	return invocation.Sleep(ctx, d)
}

// retryWait tells whether a failed try is retried and after how long.
func (c *Client) retryWait(method string, resp *Response, err error, try int) (time.Duration, bool) {
	p := c.retry
	if try >= p.MaxAttempts {
		return 0, false
	}
	backoff := min(p.MaxDelay, p.BaseDelay<<(try-1))
	backoff = rand.N(backoff) + 1
	read := method == http.MethodGet || method == http.MethodHead
	var ae *APIError
	if errors.As(err, &ae) {
		switch {
		case ae.StatusCode == http.StatusTooManyRequests:
			if ae.RetryAfter > p.MaxRetryAfter {
				return 0, false
			}
			return max(backoff, ae.RetryAfter), true
		case ae.StatusCode == http.StatusConflict && ae.Class() == invocation.Transient:
			// "Workflow is still being unpublished. Please try again in a
			// few moments": n8n did nothing; every method may try again.
			return max(backoff, 500*time.Millisecond), true
		case ae.Class() == invocation.Transient:
			return backoff, read
		}
		return 0, false
	}
	var te *invocation.TransportError
	if errors.As(err, &te) {
		var op *net.OpError
		refused := errors.As(err, &op) && op.Op == "dial"
		return backoff, read || refused
	}
	return 0, false
}

// noteLimits records an answer's rate limit and, on a 429 or an
// exhausted window, holds the client's calls until the window ends.
func (c *Client) noteLimits(resp *http.Response, ae *APIError) {
	now := time.Now()
	rl := parseRateLimit(resp.Header, now)
	if ae != nil && resp.StatusCode == http.StatusTooManyRequests {
		ra, ok := invocation.ParseRetryAfter(resp.Header.Get("Retry-After"), now)
		if !ok && rl != nil && !rl.Reset.IsZero() {
			ra, ok = max(0, rl.Reset.Sub(now)), true
		}
		if !ok {
			ra = c.retry.BaseDelay
		}
		ae.RetryAfter, ae.RateLimit = ra, rl
		if ra <= c.retry.MaxRetryAfter {
			c.paused.extend(now.Add(ra))
		}
		return
	}
	if rl != nil && rl.Remaining == 0 && rl.Reset.After(now) && rl.Reset.Sub(now) <= c.retry.MaxRetryAfter {
		c.paused.extend(rl.Reset)
	}
}
