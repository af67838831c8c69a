package redis_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/contrib/redis"
	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Two managers (two processes of a fleet) share one limit through the
// pipeline's rate-limit stage: a 429 with Retry-After: 2 that the first
// one gets pauses the second one's call, which has seen no 429 itself.
func TestThrottleSlowsAnotherManager(t *testing.T) {
	t.Parallel()
	url := redis.URLForTest(t)
	var throttled atomic.Bool
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.URL.Path == "/webhook/first" && throttled.CompareAndSwap(false, true) {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ok":true}`)
	}))
	defer srv.Close()
	key := fmt.Sprintf("test:%s:%d", t.Name(), time.Now().UnixNano())
	manager := func() *invoker.Manager {
		o, err := goredis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		rdb := goredis.NewClient(o)
		t.Cleanup(func() { _ = rdb.Close() })
		lim, err := redis.NewLimiter(redis.Options{Client: rdb, Key: key, RequestsPerSecond: 50, FallbackPerProcess: 10})
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse([]byte(fmt.Sprintf("n8n: {base_url: %q}\nworkflows: {first: {path: first}, second: {path: second}}\n", srv.URL)), "t.yaml")
		if err != nil {
			t.Fatal(err)
		}
		m, err := invoker.New(cfg, invoker.WithRateLimiter(lim))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close(context.Background()) })
		return m
	}
	a, b := manager(), manager()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := a.Execute(ctx, &invocation.Request{Workflow: "first"}) // 429, waits 2 s, succeeds
		done <- err
	}()
	for !throttled.Load() {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the 429 reaches a's limiter
	start := time.Now()
	if _, err := b.Execute(ctx, &invocation.Request{Workflow: "second"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Errorf("the other manager's call went after %s, inside the fleet's 2s pause", d)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 3 {
		t.Errorf("%d requests, want 3 (429, its retry, the other call)", calls.Load())
	}
}

// The configuration's rate_limit section opens the limiter: calls take
// their slots in Redis, and with Redis unreachable they go on at the
// per-process fallback.
func TestRateLimitSection(t *testing.T) {
	t.Parallel()
	url := redis.URLForTest(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ok":true}`)
	}))
	t.Cleanup(srv.Close) // the subtests run after this function returns
	for _, tc := range []struct{ name, url string }{{"redis", url}, {"redis down", "redis://127.0.0.1:1/0"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key := fmt.Sprintf("test:%s:%d", t.Name(), time.Now().UnixNano())
			cfg, err := config.Parse([]byte(fmt.Sprintf(`n8n: {base_url: %q}
workflows: {w: {path: w}}
rate_limit: {backend: redis, url: %q, key: %q, requests_per_second: 100, fallback_per_process: 50}
`, srv.URL, tc.url, key)), "t.yaml")
			if err != nil {
				t.Fatal(err)
			}
			m, err := invoker.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			for range 5 {
				if _, err := m.Execute(ctx, &invocation.Request{Workflow: "w"}); err != nil {
					t.Fatal(err)
				}
			}
			if tc.name != "redis" {
				return
			}
			o, _ := goredis.ParseURL(url)
			rdb := goredis.NewClient(o)
			defer rdb.Close()
			if n, err := rdb.Exists(ctx, key+":tat").Result(); err != nil || n != 1 {
				t.Errorf("the calls took no slot in Redis (%d, %v)", n, err)
			}
		})
	}
}
