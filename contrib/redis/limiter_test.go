package redis

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/n8n-invoker/n8n-invoker/policy"
)

// URLForTest returns the URL of the Redis scripts/cluster starts (make
// test exports N8N_INVOKER_REDIS_URL); without it the test skips, unless
// the run requires it. (Defined in a test file: the external tests use
// it too.)
func URLForTest(t testing.TB) string {
	t.Helper()
	url := os.Getenv("N8N_INVOKER_REDIS_URL")
	if url == "" {
		if os.Getenv("N8N_INVOKER_REQUIRE_N8N") == "1" {
			t.Fatal("N8N_INVOKER_REDIS_URL is not set: run scripts/cluster db and source .cluster/env (make test does)")
		}
		t.Skip("N8N_INVOKER_REDIS_URL is not set: run scripts/cluster db and source .cluster/env")
	}
	return url
}

// client returns a client of the test Redis, closed when t ends.
func client(t testing.TB) goredis.UniversalClient {
	t.Helper()
	o, err := goredis.ParseURL(URLForTest(t))
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func key(t *testing.T) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "test:" + t.Name() + ":" + hex.EncodeToString(b)
}

// Three processes' limiters on one key share one rate: 30 reservations
// at 10/s, spread over them, are given slots 100 ms apart (the last one
// ~2.9 s out), as one limiter would give them; three limits of their own
// would end at ~0.9 s.
func TestSharedRate(t *testing.T) {
	t.Parallel()
	k := key(t)
	var lims []*Limiter
	for range 3 {
		l, err := NewLimiter(Options{Client: client(t), Key: k, RequestsPerSecond: 10, Burst: 1, FallbackPerProcess: 1})
		if err != nil {
			t.Fatal(err)
		}
		lims = append(lims, l)
	}
	var mu sync.Mutex
	var waits []time.Duration
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			w, paused, err := lims[i%3].reserve(t.Context())
			if err != nil || paused {
				t.Errorf("reserve: %v, paused %v", err, paused)
			}
			mu.Lock()
			waits = append(waits, w)
			mu.Unlock()
		})
	}
	wg.Wait()
	longest := time.Duration(0)
	for _, w := range waits {
		longest = max(longest, w)
	}
	if longest < 2700*time.Millisecond || longest > 3100*time.Millisecond {
		t.Errorf("the last of 30 reservations at 10/s waits %s, want ~2.9s (one shared rate)", longest)
	}
}

// A 429 with Retry-After one process saw pauses every process: another
// process's limiter takes no slot until the pause has passed.
func TestThrottlePausesTheFleet(t *testing.T) {
	t.Parallel()
	k := key(t)
	a, _ := NewLimiter(Options{Client: client(t), Key: k, RequestsPerSecond: 100, FallbackPerProcess: 1})
	b, _ := NewLimiter(Options{Client: client(t), Key: k, RequestsPerSecond: 100, FallbackPerProcess: 1})
	a.Throttled(t.Context(), 2*time.Second)
	w, paused, err := b.reserve(t.Context())
	if err != nil || !paused || w < 1500*time.Millisecond || w > 2*time.Second {
		t.Fatalf("after a 2s Retry-After elsewhere: wait %s, paused %v, %v", w, paused, err)
	}
	// A shorter Retry-After does not cut a longer pause.
	a.Throttled(t.Context(), 10*time.Millisecond)
	if w, _, _ := b.reserve(t.Context()); w < 1500*time.Millisecond {
		t.Errorf("a shorter Retry-After shortened the pause to %s", w)
	}
	start := time.Now()
	if err := b.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Errorf("Wait returned after %s, inside the fleet's pause", d)
	}
}

// TestThrottlePauseCapped: a Retry-After of a day pauses the fleet for
// at most MaxPause (default policy.DefaultMaxRetryAfter), and the pause
// key lives no longer than that (plus its second of slack).
func TestThrottlePauseCapped(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		maxPause time.Duration
		want     time.Duration
	}{
		{"default", 0, policy.DefaultMaxRetryAfter},
		{"configured", 2 * time.Second, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := key(t)
			c := client(t)
			a, err := NewLimiter(Options{Client: c, Key: k, RequestsPerSecond: 100, FallbackPerProcess: 1, MaxPause: tt.maxPause})
			if err != nil {
				t.Fatal(err)
			}
			a.Throttled(t.Context(), 24*time.Hour)
			w, paused, err := a.reserve(t.Context())
			if err != nil || !paused || w > tt.want || w < tt.want-time.Second {
				t.Fatalf("after a one-day Retry-After: wait %s, paused %v, %v; want at most %s", w, paused, err, tt.want)
			}
			ttl, err := c.PTTL(t.Context(), k+":pause").Result()
			if err != nil || ttl <= 0 || ttl > tt.want+time.Second {
				t.Errorf("the pause key lives %s (%v), want at most %s", ttl, err, tt.want+time.Second)
			}
		})
	}
	if _, err := NewLimiter(Options{Client: client(t), RequestsPerSecond: 1, FallbackPerProcess: 1, MaxPause: -time.Second}); err == nil {
		t.Error("a negative MaxPause was accepted")
	}
}

// Redis down: the limiter falls back to the per-process rate at once,
// with a warning; never to no limit, never to a stall.
func TestRedisDownFallsBack(t *testing.T) {
	t.Parallel()
	down := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer down.Close()
	var logged bytes.Buffer
	var logMu sync.Mutex
	l, err := NewLimiter(Options{Client: down, RequestsPerSecond: 100, FallbackPerProcess: 5, Burst: 1,
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logged, mu: &logMu}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	for range 7 { // the fallback's burst is 5 at 5/s: the 6th and 7th wait
		if err := l.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	d := time.Since(start)
	if d < 300*time.Millisecond || d > 3*time.Second {
		t.Errorf("7 waits on the 5/s fallback took %s", d)
	}
	if !l.Degraded() {
		t.Error("not degraded with Redis down")
	}
	logMu.Lock()
	defer logMu.Unlock()
	if n := strings.Count(logged.String(), "Redis cannot be reached"); n != 1 {
		t.Errorf("%d warnings for 7 calls, want 1:\n%s", n, logged.String())
	}
}

func TestOptionsValidated(t *testing.T) {
	t.Parallel()
	c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no client", Options{RequestsPerSecond: 1, FallbackPerProcess: 1}, "no client"},
		{"no rate", Options{Client: c, FallbackPerProcess: 1}, "requests_per_second"},
		{"no fallback", Options{Client: c, RequestsPerSecond: 1}, "never no limit"},
		{"negative burst", Options{Client: c, RequestsPerSecond: 1, FallbackPerProcess: 1, Burst: -1}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewLimiter(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewLimiter = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A call that reserved its slot before another process's 429 does not go
// in the pause: slots reserved before it are not used in it.
func TestReservedSlotsWaitOutAPause(t *testing.T) {
	t.Parallel()
	k := key(t)
	a, _ := NewLimiter(Options{Client: client(t), Key: k, RequestsPerSecond: 10, Burst: 1, FallbackPerProcess: 1})
	b, _ := NewLimiter(Options{Client: client(t), Key: k, RequestsPerSecond: 10, Burst: 1, FallbackPerProcess: 1})
	start := time.Now()
	var mu sync.Mutex
	var went []time.Duration
	var wg sync.WaitGroup
	for range 10 { // slots at 0, 100, ..., 900 ms
		wg.Go(func() {
			if err := a.Wait(t.Context()); err != nil {
				t.Error(err)
			}
			mu.Lock()
			went = append(went, time.Since(start))
			mu.Unlock()
		})
	}
	time.Sleep(250 * time.Millisecond)
	b.Throttled(t.Context(), time.Second) // pause until ~1.25 s
	paused := time.Since(start)
	wg.Wait()
	for _, w := range went {
		if w > paused+50*time.Millisecond && w < paused+900*time.Millisecond {
			t.Errorf("a call went at %s, inside the pause from %s to %s", w, paused, paused+time.Second)
		}
	}
}
