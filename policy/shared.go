package policy

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// SharedLimiter is a rate limit toward n8n that several processes share
// (a fleet's): a per-attempt stage that paces every attempt, and Close.
type SharedLimiter interface {
	Attempt(ctx context.Context, a *invocation.Attempt, next invocation.AttemptHandler) (*invocation.Result, error)
	Close() error
}

// SharedLimitOptions is what the configuration's rate_limit section gives
// a shared limiter's backend.
type SharedLimitOptions struct {
	// URL is the backend's address (for Redis: redis://host:port/db); a
	// secret, since it may carry a password.
	URL secret.Secret
	// Key names the shared limit: processes with the same key share it.
	Key string
	// RequestsPerSecond is the fleet's rate; Burst how many may go at
	// once above it (0: its own default).
	RequestsPerSecond float64
	Burst             int
	// FallbackPerProcess is each process's rate while the backend cannot
	// be reached.
	FallbackPerProcess float64
	// Logger receives the backend's warnings.
	Logger *slog.Logger
	// MaxPause caps the fleet's pause after a 429 (the configuration's
	// invokers.http.retry.max_retry_after; 0 means DefaultMaxRetryAfter).
	MaxPause time.Duration
}

// SharedLimitOpener opens a shared limiter.
type SharedLimitOpener func(ctx context.Context, o SharedLimitOptions) (SharedLimiter, error)

var (
	sharedMu sync.RWMutex
	shared   = map[string]SharedLimitOpener{}
)

// RegisterSharedLimit makes a shared limiter's backend available by name
// to the configuration's rate_limit.backend (a module such as
// contrib/redis calls it from an init function). It fails for a name
// already taken.
func RegisterSharedLimit(name string, open SharedLimitOpener) error {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if _, ok := shared[name]; ok || name == "" || open == nil {
		return fmt.Errorf("policy: shared limit backend %q is already registered or invalid", name)
	}
	shared[name] = open
	return nil
}

// SharedLimits returns the registered backend names, sorted.
func SharedLimits() []string {
	sharedMu.RLock()
	defer sharedMu.RUnlock()
	return slices.Sorted(maps.Keys(shared))
}

// OpenSharedLimit opens the shared limiter registered as name.
func OpenSharedLimit(ctx context.Context, name string, o SharedLimitOptions) (SharedLimiter, error) {
	sharedMu.RLock()
	open, ok := shared[name]
	sharedMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("policy: unknown shared limit backend %q (available: %v; import its module, e.g. contrib/redis)", name, SharedLimits())
	}
	return open(ctx, o)
}
