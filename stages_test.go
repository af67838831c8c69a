package invoker_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/hooks"
	"github.com/n8n-invoker/n8n-invoker/httpinvoker"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
	"github.com/n8n-invoker/n8n-invoker/pack"
	"github.com/n8n-invoker/n8n-invoker/pipeline"
	"github.com/n8n-invoker/n8n-invoker/policy"
)

// scripted answers attempts in order: a status (0 = 200) per attempt,
// the last one repeated. It records every attempt it saw.
type scripted struct {
	mu       sync.Mutex
	statuses []int
	seen     []invocation.Attempt
}

func (s *scripted) next(a *invocation.Attempt) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, *a)
	st := s.statuses[min(len(s.seen)-1, len(s.statuses)-1)]
	if st == 0 {
		st = 200
	}
	return st
}

func (s *scripted) attempts() []invocation.Attempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

// custom is a transport of the user's own: it answers with the HTTP
// transport's error type (a transport of n8n speaks HTTP), without any
// class of its own.
func (s *scripted) custom() invocation.Transport {
	return invocation.TransportFunc(func(ctx context.Context, a *invocation.Attempt) (*invocation.Result, error) {
		st := s.next(a)
		if st != 200 {
			return nil, &invocation.HTTPError{Workflow: a.Request.Workflow, StatusCode: st, Attempts: a.Number}
		}
		return &invocation.Result{Workflow: a.Request.Workflow, StatusCode: 200, Output: []byte("{}"), Completed: true}, nil
	})
}

// roundTripper scripts the webhook transport from below, in memory.
func (s *scripted) roundTripper() http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		_, _ = io.Copy(io.Discard, r.Body)
		st := s.next(&invocation.Attempt{Request: &invocation.Request{
			IdempotencyKey: r.Header.Get(httpinvoker.HeaderIdempotencyKey), RequestID: r.Header.Get(httpinvoker.HeaderRequestID)}})
		body := "{}"
		return &http.Response{StatusCode: st, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: r}, nil
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestEveryTransportGetsEveryStage: a custom transport given with
// WithTransport is retried, broken, budgeted and rate-limited exactly
// like the webhook transport, with the default settings.
func TestEveryTransportGetsEveryStage(t *testing.T) {
	t.Parallel()
	type check func(t *testing.T, m *invoker.Manager, s *scripted)
	tests := []struct {
		name     string
		yaml     string // added under invokers.http
		statuses []int
		check    check
	}{
		{"retried with the same key", "", []int{503, 503, 200}, func(t *testing.T, m *invoker.Manager, s *scripted) {
			res, err := m.Execute(t.Context(), &invocation.Request{Workflow: "w", IdempotencyKey: "k-1"})
			if err != nil || res.Attempts != 3 {
				t.Fatalf("res %+v err %v", res, err)
			}
			for _, a := range s.attempts() {
				if a.Request.IdempotencyKey != "k-1" {
					t.Errorf("attempt with key %q", a.Request.IdempotencyKey)
				}
			}
		}},
		{"permanent not retried", "", []int{400}, func(t *testing.T, m *invoker.Manager, s *scripted) {
			_, err := m.ExecuteWorkflow(t.Context(), "w", nil)
			if !errors.Is(err, invocation.ErrPermanent) || invocation.AttemptsOf(err) != 1 || len(s.attempts()) != 1 {
				t.Fatalf("err %v after %d attempts", err, len(s.attempts()))
			}
		}},
		{"exhausted after the default retries", "", []int{503}, func(t *testing.T, m *invoker.Manager, s *scripted) {
			_, err := m.ExecuteWorkflow(t.Context(), "w", nil)
			var ex *invocation.Error
			if !errors.As(err, &ex) || ex.Code != invocation.CodeUnavailable || ex.Attempts != 1+config.DefaultMaxRetries || len(s.attempts()) != 1+config.DefaultMaxRetries {
				t.Fatalf("err %v after %d attempts", err, len(s.attempts()))
			}
		}},
		{"the breaker opens and pauses the calls behind it", "", append(slices.Repeat([]int{503}, config.DefaultConsecutiveFails), 200), func(t *testing.T, m *invoker.Manager, s *scripted) {
			// Calls of 1+max_retries attempts until the 15th consecutive
			// failure opens the breaker; the last call waits (sending
			// nothing) for the half-open probe, which succeeds and closes it.
			start := time.Now()
			var last error
			for range config.DefaultConsecutiveFails/(1+config.DefaultMaxRetries) + 1 {
				_, last = m.ExecuteWorkflow(t.Context(), "w", nil)
			}
			if last != nil || len(s.attempts()) != config.DefaultConsecutiveFails+1 || time.Since(start) < config.DefaultOpenTimeout {
				t.Fatalf("last call: %v after %d attempts and %s", last, len(s.attempts()), time.Since(start))
			}
			if st := m.BreakerStates(); len(st) != 1 || st[0].State != policy.Closed {
				t.Errorf("breakers %+v", st)
			}
		}},
		{"the retry budget ends a retry storm", "retry: {budget: {capacity: 10, retry_cost: 5}}\n    circuit_breaker: {enabled: false}", []int{503}, func(t *testing.T, m *invoker.Manager, s *scripted) {
			_, _ = m.ExecuteWorkflow(t.Context(), "w", nil) // 2 retries spend the budget
			_, err := m.ExecuteWorkflow(t.Context(), "w", nil)
			if !errors.Is(err, invocation.ErrRetryBudgetExhausted) || len(s.attempts()) != 4 {
				t.Fatalf("err %v after %d attempts", err, len(s.attempts()))
			}
		}},
		{"rate-limited", "rate_limit: {enabled: true, requests_per_second: 2, burst: 1}", []int{200}, func(t *testing.T, m *invoker.Manager, s *scripted) {
			start := time.Now()
			for range 5 {
				if _, err := m.ExecuteWorkflow(t.Context(), "w", nil); err != nil {
					t.Fatal(err)
				}
			}
			if d := time.Since(start); d != 2*time.Second {
				t.Errorf("5 calls at 2/s took %s, want 2s", d)
			}
		}},
	}
	for _, tt := range tests {
		for _, kind := range []string{"custom", "webhook"} {
			t.Run(tt.name+"/"+kind, func(t *testing.T) {
				t.Parallel()
				synctest.Test(t, func(t *testing.T) {
					yaml := "n8n: {base_url: 'http://n8n.test'}\nworkflows: {w: {path: w}}\n"
					if tt.yaml != "" {
						yaml += "invokers:\n  http:\n    " + tt.yaml + "\n"
					}
					cfg, err := config.Parse([]byte(yaml), "t.yaml")
					if err != nil {
						t.Fatal(err)
					}
					s := &scripted{statuses: tt.statuses}
					opt := invoker.WithTransport(s.custom())
					if kind == "webhook" {
						opt = invoker.WithHTTPOptions(httpinvoker.WithRoundTripper(func(http.RoundTripper) http.RoundTripper { return s.roundTripper() }))
					}
					m, err := invoker.New(cfg, opt)
					if err != nil {
						t.Fatal(err)
					}
					defer func() { _ = m.Close(context.Background()) }()
					tt.check(t, m, s)
				})
			})
		}
	}
}

// TestOpenBreakerWithFallbackDegradesAtOnce: with a fallback, a call
// that meets an open breaker goes to the fallback at once (graceful
// degradation) instead of pausing.
func TestOpenBreakerWithFallbackDegradesAtOnce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		cfg, err := config.Parse([]byte("n8n: {base_url: 'http://n8n.test'}\nworkflows: {w: {path: w}}\n"), "t.yaml")
		if err != nil {
			t.Fatal(err)
		}
		s := &scripted{statuses: []int{503}}
		m, err := invoker.New(cfg, invoker.WithTransport(s.custom()),
			invoker.WithFallback(func(_ context.Context, req *invocation.Request, err error) (*invocation.Result, error) {
				return &invocation.Result{Workflow: req.Workflow, Output: []byte(`"cached"`)}, nil
			}))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = m.Close(context.Background()) }()
		for range 4 {
			_, _ = m.ExecuteWorkflow(t.Context(), "w", nil)
		}
		sent := len(s.attempts())
		start := time.Now()
		res, err := m.ExecuteWorkflow(t.Context(), "w", nil)
		if err != nil || !res.Degraded || len(s.attempts()) != sent || time.Since(start) != 0 {
			t.Fatalf("res %+v err %v, %d sent after %d, waited %s", res, err, len(s.attempts()), sent, time.Since(start))
		}
	})
}

// recorder is a user's interceptor: it records the calls and attempts
// it sees.
type recorder struct {
	pipeline.InterceptorBase
	mu    sync.Mutex
	trace []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.trace = append(r.trace, s)
	r.mu.Unlock()
}

func (r *recorder) InterceptCall(ctx context.Context, c *pipeline.Call, next pipeline.CallHandler) (*invocation.Result, error) {
	r.add("call " + c.Target.Path)
	res, err := next(ctx, c)
	r.add("call done")
	return res, err
}

func (r *recorder) InterceptAttempt(ctx context.Context, a *invocation.Attempt, next invocation.AttemptHandler) (*invocation.Result, error) {
	r.add("attempt")
	return next(ctx, a)
}

// TestStageOrder asserts the documented order of the stages with all of
// them on, and that a user's interceptor sits in both its slots: once
// per call (after resolution), once per attempt.
func TestStageOrder(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		cfg, err := config.Parse([]byte(`
n8n: {base_url: 'http://n8n.test'}
workflows: {w: {path: w-path}}
invokers:
  http:
    rate_limit: {enabled: true, requests_per_second: 100}
    bulkhead: {max_in_flight: 4}
dlq: {enabled: true}
store: {path: `+filepath.Join(t.TempDir(), "dlq.db")+`}
tracing: {enabled: true}
`), "t.yaml")
		if err != nil {
			t.Fatal(err)
		}
		s := &scripted{statuses: []int{503, 200}}
		rec := &recorder{}
		m, err := invoker.New(cfg, invoker.WithTransport(s.custom()), invoker.WithInterceptor(rec),
			invoker.WithFallback(func(context.Context, *invocation.Request, error) (*invocation.Result, error) { return nil, nil }))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = m.Close(context.Background()) }()
		want := []string{"resolve", "dedupe", "journal", "fallback", "hooks", "call-span", "bulkhead", "await",
			"interceptor(*invoker_test.recorder).call", "retry",
			"rate-limit", "breaker", "attempt-span", "interceptor(*invoker_test.recorder).attempt", "sign", "fence", "transport"}
		if got := m.Stages(); !slices.Equal(got, want) {
			t.Errorf("stages\n got %v\nwant %v", got, want)
		}
		if _, err := m.ExecuteWorkflow(t.Context(), "w", nil); err != nil {
			t.Fatal(err)
		}
		if want := []string{"call w-path", "attempt", "attempt", "call done"}; !slices.Equal(rec.trace, want) {
			t.Errorf("interceptor saw %v, want %v", rec.trace, want)
		}
	})
}

// BenchmarkManagerOverhead is the manager's own stages per call (hooks,
// call span and metrics, await, ids) over the pipeline and a transport
// that answers at once, with the default configuration.
func BenchmarkManagerOverhead(b *testing.B) {
	cfg, err := config.Parse([]byte("n8n: {base_url: 'http://n8n.test'}\nworkflows: {w: {path: w}}\n"), "b.yaml")
	if err != nil {
		b.Fatal(err)
	}
	ok := &invocation.Result{StatusCode: 200, Output: []byte("{}"), Completed: true}
	m, err := invoker.New(cfg, invoker.WithTransport(invocation.TransportFunc(func(context.Context, *invocation.Attempt) (*invocation.Result, error) {
		r := *ok
		return &r, nil
	})))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = m.Close(context.Background()) }()
	params := map[string]any{"email": "a@b.c"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.ExecuteWorkflow(context.Background(), "w", params); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFailBeforeSending: what cannot succeed fails with a typed error
// before any request: an unknown name (one error, the aliases listed, the
// right hint), Wait without an API key.
func TestFailBeforeSending(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse([]byte("n8n: {base_url: 'http://n8n.test'}\nworkflows: {w: {path: w}, v: {path: v}}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := &scripted{statuses: []int{200}}
	m, err := invoker.New(cfg, invoker.WithTransport(s.custom()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Close(context.Background()) }()
	_, err = m.ExecuteWorkflow(t.Context(), "nope", nil)
	if invocation.CodeOf(err) != invocation.CodeUnknownWorkflow || !strings.Contains(err.Error(), "configured: v, w)") || !strings.Contains(err.Error(), "set n8n.api_key") || !errors.Is(err, invocation.ErrPermanent) {
		t.Errorf("unknown name: %v", err)
	}
	_, err = m.ExecuteWorkflow(t.Context(), "w", nil, invoker.Wait())
	if invocation.CodeOf(err) != invocation.CodeBadRequest || !errors.Is(err, invocation.ErrPermanent) {
		t.Errorf("Wait without an API key: %v", err)
	}
	if n := len(s.attempts()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

// TestErrPermanentMatchesEveryPermanentError: errors.Is(err,
// ErrPermanent) holds for every error whose class is permanent.
func TestErrPermanentMatchesEveryPermanentError(t *testing.T) {
	t.Parallel()
	for _, err := range []error{
		&invocation.HTTPError{StatusCode: 400, ErrClass: invocation.Permanent},
		&invocation.ResponseError{Reason: "malformed JSON"},
		&invocation.Error{Code: invocation.AttemptCode(invocation.Permanent, invocation.NotSent), Err: errors.New("x")},
		hooks.Vetoed(hooks.StagePreExecution, "x", errors.New("veto")),
		pipeline.UnknownWorkflow("x", nil, "", nil),
		&n8napi.ExecutionFailedError{Status: "error"},
		&n8napi.APIError{StatusCode: 403},
		pack.ItemFailed("w", "k", "boom", "1"),
	} {
		if invocation.ClassOf(err) != invocation.Permanent || !errors.Is(err, invocation.ErrPermanent) {
			t.Errorf("%T (%v): class %s, Is(ErrPermanent) %v", err, err, invocation.ClassOf(err), errors.Is(err, invocation.ErrPermanent))
		}
	}
}
