package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/n8n-invoker/n8n-invoker/httpinvoker"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/policy"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// answer is one scripted response, or a transport error, or a hang until
// the attempt's context ends.
type answer struct {
	status int
	body   string
	header map[string]string
	err    error
	hang   bool
	// notSent: the error happened before the request was written (the
	// body is not read), as a refused connection.
	notSent bool
}

// script is an in-memory RoundTripper that plays answers in order and
// records the requests it saw.
type script struct {
	mu       sync.Mutex
	answers  []answer
	requests []*http.Request
	bodies   []string
	at       []time.Time
}

func (s *script) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	i := len(s.requests)
	s.requests = append(s.requests, r)
	a := s.answers[min(i, len(s.answers)-1)]
	var b []byte
	if r.Body != nil && !a.notSent {
		b, _ = io.ReadAll(r.Body)
		r.Body.Close()
	}
	s.bodies = append(s.bodies, string(b))
	s.at = append(s.at, time.Now())
	s.mu.Unlock()
	if a.hang {
		<-r.Context().Done()
		return nil, r.Context().Err()
	}
	if a.err != nil {
		return nil, a.err
	}
	h := http.Header{}
	for k, v := range a.header {
		h.Set(k, v)
	}
	if h.Get("Content-Type") == "" && a.body != "" {
		h.Set("Content-Type", "application/json; charset=utf-8")
	}
	return &http.Response{StatusCode: a.status, Header: h, Body: io.NopCloser(strings.NewReader(a.body)),
		ContentLength: int64(len(a.body)), Request: r}, nil
}

func (s *script) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

var testEndpoints = StaticResolver{
	"wf":     {Path: "hook", Method: "POST", ResponseMode: invocation.ResponseModeLastNode},
	"get":    {Path: "hook-get", Method: "GET", ResponseMode: invocation.ResponseModeLastNode},
	"header": {Path: "h", Auth: invocation.Auth{Type: invocation.AuthHeader, Name: "X-Token", Value: secret.New("tok-secret")}},
	"basic":  {Path: "b", Auth: invocation.Auth{Type: invocation.AuthBasic, Username: "u", Password: secret.New("pw-secret")}},
	"async":  {Path: "a", ResponseMode: invocation.ResponseModeOnReceived},
	// respond answers through a Respond to Webhook node.
	"respond": {Path: "r", ResponseMode: invocation.ResponseModeResponseNode},
}

// webhook is a pipeline over the webhook transport, as the tests of the
// retry loop and the transport use it.
type webhook struct {
	*Pipeline
	t *httpinvoker.Transport
}

func (w *webhook) Close() { w.t.Close() }

type setup struct {
	stages   Stages
	retry    policy.Retry
	http     []httpinvoker.Option
	resolver Resolver
}

// Option configures a test pipeline over the webhook transport.
type Option func(*setup) error

func WithResolver(r Resolver) Option { return func(s *setup) error { s.resolver = r; return nil } }

func WithRetries(maxRetries int, backoffFactor float64) Option {
	return func(s *setup) error {
		if maxRetries < 0 {
			return fmt.Errorf("negative retries")
		}
		s.retry.MaxRetries = maxRetries
		s.retry.BaseDelay = time.Duration(backoffFactor * float64(time.Second))
		return nil
	}
}

func WithMaxDelay(d time.Duration) Option {
	return func(s *setup) error { s.retry.MaxDelay = d; return nil }
}

func WithMaxRetryAfter(d time.Duration) Option {
	return func(s *setup) error { s.retry.MaxRetryAfter = d; return nil }
}

func WithJitter(f func(time.Duration) time.Duration) Option {
	return func(s *setup) error { s.retry.Jitter = f; return nil }
}

func WithClassifier(c policy.Classifier) Option {
	return func(s *setup) error {
		if s.stages.Retry == nil {
			s.stages.Retry = &Retry{}
		}
		s.stages.Retry.Classifiers = append(s.stages.Retry.Classifiers, c)
		return nil
	}
}

// WithGate adds a per-attempt stage (an interceptor's attempt slot).
func WithGate(ic Interceptor) Option {
	return func(s *setup) error { s.stages.Interceptors = append(s.stages.Interceptors, ic); return nil }
}

func WithTimeout(d time.Duration) Option {
	return func(s *setup) error { s.http = append(s.http, httpinvoker.WithTimeout(d)); return nil }
}

func WithMaxResponseBytes(n int64) Option {
	return func(s *setup) error { s.http = append(s.http, httpinvoker.WithMaxResponseBytes(n)); return nil }
}

func WithPool(c, m int) Option {
	return func(s *setup) error { s.http = append(s.http, httpinvoker.WithPool(c, m)); return nil }
}

func WithRoundTripper(w func(http.RoundTripper) http.RoundTripper) Option {
	return func(s *setup) error { s.http = append(s.http, httpinvoker.WithRoundTripper(w)); return nil }
}

func newWebhook(baseURL string, opts ...Option) (*webhook, error) {
	s := &setup{retry: policy.DefaultRetry()}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	if s.resolver == nil {
		return nil, errors.New("no resolver")
	}
	t, err := httpinvoker.New(baseURL, s.http...)
	if err != nil {
		return nil, err
	}
	if s.stages.Retry == nil {
		s.stages.Retry = &Retry{}
	}
	s.stages.Retry.Policy = &s.retry
	s.stages.Resolve, s.stages.Transport, s.stages.Sign = s.resolver, t, httpinvoker.Signer{}
	p, err := New(s.stages)
	if err != nil {
		t.Close()
		return nil, err
	}
	return &webhook{Pipeline: p, t: t}, nil
}

// WithRetryAmbiguous re-sends ambiguous attempts without reconciling:
// the timing tests of the retry loop use it. The same answers with the
// default (no re-send without a reconciler; with one, a reconcile first)
// are TestAmbiguousAttempts and TestAnswerAfterARun, which use
// newScriptedDefault; the root's chaos and real-n8n tests run the
// defaults end to end.
func WithRetryAmbiguous() Option {
	return func(s *setup) error {
		if s.stages.Retry == nil {
			s.stages.Retry = &Retry{}
		}
		s.stages.Retry.RetryAmbiguous = true
		return nil
	}
}

// WithReconciler sets the retry loop's reconciler.
func WithReconciler(r Reconciler) Option {
	return func(s *setup) error {
		if s.stages.Retry == nil {
			s.stages.Retry = &Retry{}
		}
		s.stages.Retry.Reconciler = r
		return nil
	}
}

func newScripted(t *testing.T, s *script, opts ...Option) *webhook {
	t.Helper()
	return newScriptedDefault(t, s, append([]Option{WithRetryAmbiguous()}, opts...)...)
}

// newScriptedDefault is newScripted with the default handling of
// ambiguous attempts.
func newScriptedDefault(t *testing.T, s *script, opts ...Option) *webhook {
	t.Helper()
	base := []Option{
		WithResolver(testEndpoints),
		WithRoundTripper(func(http.RoundTripper) http.RoundTripper { return s }),
		WithJitter(func(d time.Duration) time.Duration { return d }), // no randomness: the cap itself
	}
	inv, err := newWebhook("http://n8n.test/base/", append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func req(wf string) *invocation.Request {
	return &invocation.Request{Workflow: wf, Params: map[string]any{"a": 1}, RequestID: "rid-1", IdempotencyKey: "key-1"}
}

func TestRetryTiming(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		answers  []answer
		opts     []Option
		attempts int
		waits    []time.Duration // between attempts
		errType  string
	}{
		{
			name:     "exponential backoff until exhausted",
			answers:  []answer{{status: 503}},
			opts:     []Option{WithRetries(3, 1)},
			attempts: 4, waits: []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second},
			errType: "exhausted",
		},
		{
			name:     "backoff capped at max delay",
			answers:  []answer{{status: 502}},
			opts:     []Option{WithRetries(3, 10), WithMaxDelay(15 * time.Second)},
			attempts: 4, waits: []time.Duration{10 * time.Second, 15 * time.Second, 15 * time.Second},
			errType: "exhausted",
		},
		{
			name:     "success after transient failures",
			answers:  []answer{{status: 504}, {err: errors.New("connection reset by peer")}, {status: 200, body: `{"ok":true}`}},
			opts:     []Option{WithRetries(3, 0.5)},
			attempts: 3, waits: []time.Duration{500 * time.Millisecond, time.Second},
		},
		{
			name:     "retry-after seconds is honoured over a shorter backoff",
			answers:  []answer{{status: 429, header: map[string]string{"Retry-After": "7"}}, {status: 200, body: "{}"}},
			opts:     []Option{WithRetries(3, 0.5)},
			attempts: 2, waits: []time.Duration{7 * time.Second},
		},
		{
			name: "retry-after date",
			answers: []answer{{status: 503, header: map[string]string{
				// synctest's clock starts at 2000-01-01 00:00:00 UTC.
				"Retry-After": "Sat, 01 Jan 2000 00:00:12 GMT"}}, {status: 200, body: "{}"}},
			opts:     []Option{WithRetries(1, 0)},
			attempts: 2, waits: []time.Duration{12 * time.Second},
		},
		{
			name:     "retry-after beyond the clamp fails fast",
			answers:  []answer{{status: 429, header: map[string]string{"Retry-After": "3600"}}},
			opts:     []Option{WithRetries(3, 1), WithMaxRetryAfter(time.Minute)},
			attempts: 1, errType: "retryafter",
		},
		{
			name:     "unknown answers are retried once under retry_ambiguous",
			answers:  []answer{{status: 500, body: `{"message":"something else"}`}},
			opts:     []Option{WithRetries(5, 1)},
			attempts: 2, waits: []time.Duration{time.Second}, errType: "exhausted",
		},
		{
			name:     "workflow error is not re-sent",
			answers:  []answer{{status: 500, body: `{"message":"Error in workflow"}`}},
			opts:     []Option{WithRetries(5, 1)},
			attempts: 1, errType: "http",
		},
		{
			name:     "attempt timeout is unknown: one retry",
			answers:  []answer{{hang: true}},
			opts:     []Option{WithRetries(5, 1), WithTimeout(10 * time.Second)},
			attempts: 2, waits: []time.Duration{11 * time.Second}, errType: "exhausted",
		},
		{
			name:     "no retries configured",
			answers:  []answer{{status: 503}},
			opts:     []Option{WithRetries(0, 1)},
			attempts: 1, errType: "http",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				s := &script{answers: tt.answers}
				inv := newScripted(t, s, tt.opts...)
				res, err := inv.Invoke(t.Context(), req("wf"))
				if s.count() != tt.attempts {
					t.Fatalf("%d attempts, want %d (err %v)", s.count(), tt.attempts, err)
				}
				for i, want := range tt.waits {
					if got := s.at[i+1].Sub(s.at[i]); got != want {
						t.Errorf("wait before attempt %d = %s, want %s", i+2, got, want)
					}
				}
				var (
					ex *invocation.Error
					he *invocation.HTTPError
				)
				switch tt.errType {
				case "":
					if err != nil || res.Attempts != tt.attempts {
						t.Fatalf("res %+v err %v", res, err)
					}
				case "exhausted":
					if !errors.As(err, &ex) || ex.Attempts != tt.attempts || invocation.AttemptsOf(err) != tt.attempts || !strings.Contains(err.Error(), "gave up") {
						t.Fatalf("err = %v, want exhausted after %d", err, tt.attempts)
					}
				case "retryafter":
					if !errors.As(err, &ex) || ex.RetryAfter != time.Hour || invocation.ClassOf(err) != invocation.Transient || !errors.As(err, &he) {
						t.Fatalf("err = %v, want a RetryAfter of 1h", err)
					}
				case "http":
					if !errors.As(err, &he) || !errors.As(err, &ex) || ex.Attempts != 1 || he.Attempts != 1 || ex.Code != he.ErrorCode() || strings.Contains(err.Error(), "gave up") {
						t.Fatalf("err = %v, want the HTTPError of one attempt, its code", err)
					}
				}
			})
		})
	}
}

func TestCancellationIsNotAFailure(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := &script{answers: []answer{{status: 503}}}
		g := &recordingGate{}
		inv := newScripted(t, s, WithRetries(3, 10), WithGate(g))
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := inv.Invoke(ctx, req("wf"))
		if !errors.Is(err, context.DeadlineExceeded) || !invocation.IsCanceled(err) {
			t.Fatalf("err = %v, want the context's error", err)
		}
		if s.count() != 1 || g.failures != 1 {
			t.Errorf("%d attempts, %d failures reported; want 1 and 1 (the 503, not the cancel)", s.count(), g.failures)
		}
	})
}

type recordingGate struct {
	InterceptorBase
	mu                  sync.Mutex
	allowed, failures   int
	successes, retrying int
	refuse              error
}

func (g *recordingGate) InterceptAttempt(ctx context.Context, a *invocation.Attempt, next invocation.AttemptHandler) (*invocation.Result, error) {
	g.mu.Lock()
	if g.refuse != nil {
		g.mu.Unlock()
		return nil, g.refuse
	}
	g.allowed++
	if a.Number > 1 {
		g.retrying++
	}
	g.mu.Unlock()
	res, err := next(ctx, a)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err == nil {
		g.successes++
	} else {
		g.failures++
	}
	return res, err
}

func TestGate(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := &script{answers: []answer{{status: 503}, {status: 200, body: "{}"}}}
		g := &recordingGate{}
		inv := newScripted(t, s, WithRetries(3, 1), WithGate(g))
		if _, err := inv.Invoke(t.Context(), req("wf")); err != nil {
			t.Fatal(err)
		}
		if g.allowed != 2 || g.retrying != 1 || g.failures != 1 || g.successes != 1 {
			t.Errorf("gate saw %+v", g)
		}
		refused := errors.New("breaker open")
		g.refuse = refused
		if _, err := inv.Invoke(t.Context(), req("wf")); !errors.Is(err, refused) || s.count() != 2 {
			t.Errorf("refused gate: err %v, %d requests", err, s.count())
		}
	})
}

func TestRequestHeadersStableAcrossRetries(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := &script{answers: []answer{{status: 503}, {status: 502}, {status: 200, body: "{}"}}}
		inv := newScripted(t, s, WithRetries(3, 0))
		if _, err := inv.Invoke(t.Context(), req("wf")); err != nil {
			t.Fatal(err)
		}
		for i, r := range s.requests {
			if r.Method != "POST" || r.URL.String() != "http://n8n.test/base/webhook/hook" {
				t.Errorf("attempt %d: %s %s", i, r.Method, r.URL)
			}
			if r.Header.Get(httpinvoker.HeaderRequestID) != "rid-1" || r.Header.Get(httpinvoker.HeaderIdempotencyKey) != "key-1" ||
				r.Header.Get("Content-Type") != "application/json" {
				t.Errorf("attempt %d headers: %v", i, r.Header)
			}
			if s.bodies[i] != `{"a":1}` {
				t.Errorf("attempt %d body %q", i, s.bodies[i])
			}
		}
	})
}

func TestAuthHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		workflow string
		check    func(*http.Request) bool
	}{
		{"header", func(r *http.Request) bool {
			return r.Header.Get("X-Token") == "tok-secret" && r.Header.Get("Authorization") == ""
		}},
		{"basic", func(r *http.Request) bool { u, p, ok := r.BasicAuth(); return ok && u == "u" && p == "pw-secret" }},
		{"wf", func(r *http.Request) bool {
			return r.Header.Get("Authorization") == "" && r.Header.Get("X-Token") == ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.workflow, func(t *testing.T) {
			t.Parallel()
			s := &script{answers: []answer{{status: 403, body: "Authorization data is wrong!", header: map[string]string{"Content-Type": ""}}}}
			inv := newScripted(t, s)
			_, err := inv.Invoke(t.Context(), req(tt.workflow))
			if !tt.check(s.requests[0]) {
				t.Errorf("auth headers: %v", s.requests[0].Header)
			}
			var he *invocation.HTTPError
			if !errors.As(err, &he) || he.StatusCode != 403 || he.Message != "Authorization data is wrong!" || he.Class() != invocation.Permanent {
				t.Errorf("err = %v", err)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error leaks a secret: %v", err)
			}
		})
	}
}

func TestGetSendsQuery(t *testing.T) {
	t.Parallel()
	s := &script{answers: []answer{{status: 200, body: "{}"}}}
	inv := newScripted(t, s)
	r := req("get")
	r.Params = map[string]any{"s": "a b", "n": 2, "o": map[string]any{"k": true}}
	if _, err := inv.Invoke(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	q := s.requests[0].URL.Query()
	if s.requests[0].Method != "GET" || q.Get("s") != "a b" || q.Get("n") != "2" || q.Get("o") != `{"k":true}` || s.bodies[0] != "" {
		t.Errorf("GET request %s body %q", s.requests[0].URL, s.bodies[0])
	}
}

func TestResponseDecoding(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		workflow string
		a        answer
		limit    int64
		output   string
		execID   string
		complete bool
		errMsg   string
	}{
		{name: "json", a: answer{status: 200, body: `{"x":1}`}, output: `{"x":1}`, complete: true},
		{name: "execution id in body", a: answer{status: 200, body: `{"executionId":"42","y":2}`}, output: `{"executionId":"42","y":2}`, execID: "42", complete: true},
		{name: "numeric execution id", a: answer{status: 200, body: `{"executionId":43}`}, output: `{"executionId":43}`, execID: "43", complete: true},
		{name: "execution id header", a: answer{status: 202, body: `{}`, header: map[string]string{"X-N8N-Execution-Id": "77"}}, output: `{}`, execID: "77", complete: true},
		{name: "text", a: answer{status: 200, body: "hello \"n8n\"", header: map[string]string{"Content-Type": "text/html; charset=utf-8"}}, output: `"hello \"n8n\""`, complete: true},
		{name: "empty", a: answer{status: 200, header: map[string]string{"Content-Type": "application/json"}}, output: `null`, complete: true},
		{name: "on received", workflow: "async", a: answer{status: 200, body: `{"message":"Workflow was started"}`}, output: `{"message":"Workflow was started"}`},
		{name: "malformed json", a: answer{status: 200, body: `{"x":`}, errMsg: "malformed JSON"},
		{name: "too large", a: answer{status: 200, body: `{"x":"0123456789"}`}, limit: 10, errMsg: "exceeds the limit"},
		{name: "binary", a: answer{status: 200, body: "\x00\x01", header: map[string]string{"Content-Type": "application/octet-stream"}}, errMsg: "unsupported content type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := &script{answers: []answer{tt.a}}
			opts := []Option{WithRetries(3, 0)}
			if tt.limit > 0 {
				opts = append(opts, WithMaxResponseBytes(tt.limit))
			}
			inv := newScripted(t, s, opts...)
			wf := tt.workflow
			if wf == "" {
				wf = "wf"
			}
			res, err := inv.Invoke(t.Context(), req(wf))
			if tt.errMsg != "" {
				var re *invocation.ResponseError
				if !errors.As(err, &re) || !strings.Contains(err.Error(), tt.errMsg) || invocation.ClassOf(err) != invocation.Permanent {
					t.Fatalf("err = %v, want ResponseError %q", err, tt.errMsg)
				}
				if s.count() != 1 {
					t.Errorf("a 2xx with a bad body was re-sent %d times", s.count()-1)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(res.Output) != tt.output || res.ExecutionID != tt.execID || res.Completed != tt.complete || res.StatusCode != tt.a.status {
				t.Errorf("result = %+v (output %s)", res, res.Output)
			}
		})
	}
}

func TestCustomClassifierFirst(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := &script{answers: []answer{{status: 500, body: `{"message":"Error in workflow"}`}, {status: 200, body: "{}"}}}
		retryWorkflowErrors := policy.ClassifierFunc(func(err error) (invocation.Class, bool) {
			var he *invocation.HTTPError
			if errors.As(err, &he) && he.StatusCode == 500 {
				return invocation.Transient, true
			}
			return 0, false
		})
		inv := newScripted(t, s, WithClassifier(retryWorkflowErrors))
		if _, err := inv.Invoke(t.Context(), req("wf")); err != nil || s.count() != 2 {
			t.Fatalf("err %v after %d attempts", err, s.count())
		}
	})
}

func TestRedirectNotFollowedNorCredentialsForwarded(t *testing.T) {
	t.Parallel()
	var elsewhere int
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere++ }))
	defer other.Close()
	n8n := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/steal?token=abc", http.StatusTemporaryRedirect)
	}))
	defer n8n.Close()
	inv, err := newWebhook(n8n.URL, WithResolver(testEndpoints))
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	_, err = inv.Invoke(t.Context(), req("header"))
	var he *invocation.HTTPError
	if !errors.As(err, &he) || he.StatusCode != 307 || he.Class() != invocation.Permanent || elsewhere != 0 {
		t.Fatalf("err = %v; other host hit %d times", err, elsewhere)
	}
	if strings.Contains(err.Error(), "token=abc") || !strings.Contains(err.Error(), "not followed") {
		t.Errorf("message: %v", err)
	}
}

func TestConnectionRefusedIsTransient(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	inv, err := newWebhook(url, WithResolver(testEndpoints), WithRetries(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	_, err = inv.Invoke(t.Context(), req("wf"))
	var te *invocation.TransportError
	if !errors.As(err, &te) || te.Class() != invocation.Transient || te.Attempts != 1 {
		t.Fatalf("err = %v (%T)", err, err)
	}
}

func TestRealTransportAgainstStub(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"got":%s,"rid":%q}`, b, r.Header.Get(httpinvoker.HeaderRequestID))
	}))
	defer srv.Close()
	inv, err := newWebhook(srv.URL, WithResolver(testEndpoints), WithPool(2, 8))
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	res, err := inv.Invoke(t.Context(), req("wf"))
	if err != nil || string(res.Output) != `{"got":{"a":1},"rid":"rid-1"}` {
		t.Fatalf("res %+v err %v", res, err)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	bad := []struct {
		url  string
		opts []Option
	}{
		{"n8n.example.com", []Option{WithResolver(testEndpoints)}},
		{"ftp://x", []Option{WithResolver(testEndpoints)}},
		{"http://x", nil},
		{"http://x", []Option{WithResolver(testEndpoints), WithRetries(-1, 1)}},
		{"http://x", []Option{WithResolver(testEndpoints), WithTimeout(0)}},
		{"http://x", []Option{WithResolver(testEndpoints), WithPool(0, 1)}},
		{"http://x", []Option{WithResolver(testEndpoints), WithMaxResponseBytes(-1)}},
	}
	for _, b := range bad {
		if _, err := newWebhook(b.url, b.opts...); err == nil {
			t.Errorf("New(%q) accepted", b.url)
		}
	}
}

func TestStartingN8NIsTransient(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		notRegistered := answer{status: 404, body: `{"code":404,"message":"The requested webhook \"POST hook\" is not registered."}`}
		s := &script{answers: []answer{
			{err: errors.New("connection refused"), notSent: true},
			{status: 404, body: "<!DOCTYPE html><html>editor</html>", header: map[string]string{"Content-Type": "text/html; charset=utf-8"}},
			notRegistered,
			{status: 200, body: "{}"},
			notRegistered,
		}}
		inv := newScripted(t, s, WithRetries(5, 0.1))
		if _, err := inv.Invoke(t.Context(), req("wf")); err != nil || s.count() != 4 {
			t.Fatalf("a restarting n8n: err %v after %d attempts", err, s.count())
		}
		// Long after n8n was last unavailable, "not registered" is
		// permanent again.
		time.Sleep(2 * policy.DefaultStartupGrace)
		_, err := inv.Invoke(t.Context(), req("wf"))
		if !errors.Is(err, invocation.ErrNotRegistered) || invocation.ClassOf(err) != invocation.Permanent || s.count() != 5 {
			t.Errorf("not registered on a healthy n8n: %v after %d attempts", err, s.count()-4)
		}
	})
}

func TestUnknownWorkflow(t *testing.T) {
	t.Parallel()
	s := &script{answers: []answer{{status: 200}}}
	inv := newScripted(t, s)
	_, err := inv.Invoke(t.Context(), req("nope"))
	if !errors.Is(err, invocation.ErrUnknownWorkflow) || invocation.ClassOf(err) != invocation.Permanent || s.count() != 0 {
		t.Errorf("err = %v", err)
	}
}

func TestHeaderSizeLimit(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Huge", strings.Repeat("a", 2<<20))
		fmt.Fprint(w, "{}")
	}))
	defer srv.Close()
	inv, err := newWebhook(srv.URL, WithResolver(testEndpoints), WithRetries(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	_, err = inv.Invoke(t.Context(), req("wf"))
	var te *invocation.TransportError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "header") {
		t.Fatalf("a 2 MiB header was accepted: %v", err)
	}
}

// TestAmbiguousAttempts: with the default settings an attempt that was
// sent and lost its answer is never re-sent blindly: without a
// reconciler it ends in *AmbiguousError; with one, what n8n ran decides.
// An attempt n8n answered without running it (503) is retried as before.
func TestAmbiguousAttempts(t *testing.T) {
	t.Parallel()
	ok := answer{status: 200, body: `{"ok":true}`}
	ran := &invocation.Result{StatusCode: 200, Output: []byte(`{"from":"n8n's execution"}`), Completed: true}
	failed := errors.New("execution 7 failed: boom")
	verdicts := func(vs ...Verdict) (Reconciler, *int) {
		n := 0
		return ReconcilerFunc(func(context.Context, *Call, time.Time) Reconciled {
			v := vs[min(n, len(vs)-1)]
			n++
			switch v {
			case Ran:
				r := *ran
				return Reconciled{Verdict: Ran, Result: &r}
			case RanAndFailed:
				return Reconciled{Verdict: RanAndFailed, Err: failed}
			case Unresolved:
				return Reconciled{Verdict: Unresolved, Reason: "execution 9 still running"}
			}
			return Reconciled{Verdict: v}
		}), &n
	}
	tests := []struct {
		name      string
		answers   []answer
		verdicts  []Verdict // nil: no reconciler
		requests  int
		reconcile int
		check     func(res *invocation.Result, err error) bool
	}{
		{"502 without reconciler", []answer{{status: 502}, ok}, nil, 1, 0, func(_ *invocation.Result, err error) bool {
			var ae *invocation.Error
			return errors.As(err, &ae) && ae.Code == invocation.CodeAmbiguous && ae.Attempts == 1 && invocation.AttemptsOf(err) == 1 && invocation.OutcomeOf(err) == invocation.Ambiguous
		}},
		{"reset after sending, without reconciler", []answer{{err: errors.New("connection reset by peer")}, ok}, nil, 1, 0, func(_ *invocation.Result, err error) bool {
			return errors.Is(err, ErrAmbiguous)
		}},
		{"503 is not run: retried", []answer{{status: 503}, ok}, nil, 2, 0, func(res *invocation.Result, err error) bool {
			return err == nil && res.Attempts == 2
		}},
		{"refused connection is not sent: retried", []answer{{err: errors.New("connection refused"), notSent: true}, ok}, nil, 2, 0, func(_ *invocation.Result, err error) bool {
			return err == nil
		}},
		{"it ran: its result, not sent again", []answer{{status: 504}, ok}, []Verdict{Ran}, 1, 1, func(res *invocation.Result, err error) bool {
			return err == nil && string(res.Output) == `{"from":"n8n's execution"}` && res.Attempts == 1
		}},
		{"it ran and failed", []answer{{status: 502}, ok}, []Verdict{RanAndFailed}, 1, 1, func(_ *invocation.Result, err error) bool {
			return errors.Is(err, failed)
		}},
		{"not run: sent again", []answer{{status: 502}, ok}, []Verdict{NotRun}, 2, 1, func(res *invocation.Result, err error) bool {
			return err == nil && res.Attempts == 2
		}},
		{"crashed: sent again once", []answer{{status: 502}, {status: 502}, ok}, []Verdict{Crashed, Crashed}, 2, 2, func(_ *invocation.Result, err error) bool {
			return errors.Is(err, ErrUnresolved)
		}},
		{"unresolved: typed, not sent again", []answer{{status: 502}, ok}, []Verdict{Unresolved}, 1, 1, func(_ *invocation.Result, err error) bool {
			return invocation.CodeOf(err) == invocation.CodeUnresolved && strings.Contains(err.Error(), "still running") && invocation.ClassOf(err) == invocation.Unknown
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				s := &script{answers: tt.answers}
				var opts []Option
				var calls *int
				if tt.verdicts != nil {
					var rc Reconciler
					rc, calls = verdicts(tt.verdicts...)
					opts = append(opts, WithReconciler(rc))
				}
				inv := newScriptedDefault(t, s, opts...)
				res, err := inv.Invoke(t.Context(), req("wf"))
				if !tt.check(res, err) {
					t.Errorf("res %+v err %v", res, err)
				}
				if s.count() != tt.requests {
					t.Errorf("%d requests, want %d", s.count(), tt.requests)
				}
				if calls != nil && *calls != tt.reconcile {
					t.Errorf("%d reconciliations, want %d", *calls, tt.reconcile)
				}
			})
		})
	}
}

// TestAnswerAfterARun: an answer that may come after the workflow ran is
// never re-sent blindly, whatever the retries allow. A Respond node's 500
// is the workflow's answer (sent once, code workflow-answered, its status
// and body); a lastNode 500 that n8n did not explain is reconciled with a
// reconciler, and without one ends ambiguous after one send.
func TestAnswerAfterARun(t *testing.T) {
	t.Parallel()
	ok := answer{status: 200, body: `{"ok":true}`}
	five := answer{status: 500, body: `{"error":"refused by the workflow"}`, header: map[string]string{"Content-Type": "application/json"}}
	ran := &invocation.Result{StatusCode: 200, Output: []byte(`{"from":"n8n's execution"}`), Completed: true}
	tests := []struct {
		name      string
		wf        string
		answers   []answer
		verdict   *Verdict // nil: no reconciler
		requests  int
		reconcile int
		check     func(res *invocation.Result, err error) bool
	}{
		{"respond node 500, no reconciler: sent once", "respond", []answer{five, ok}, nil, 1, 0, func(_ *invocation.Result, err error) bool {
			var he *invocation.HTTPError
			return invocation.CodeOf(err) == invocation.CodeWorkflowAnswered && errors.As(err, &he) && he.StatusCode == 500 &&
				string(he.Body) == `{"error":"refused by the workflow"}` && errors.Is(err, invocation.ErrPermanent) && invocation.AttemptsOf(err) == 1
		}},
		{"respond node 500, with a reconciler: sent once, not reconciled", "respond", []answer{five, ok}, ptr(NotRun), 1, 0, func(_ *invocation.Result, err error) bool {
			return invocation.CodeOf(err) == invocation.CodeWorkflowAnswered
		}},
		{"respond node 501: sent once", "respond", []answer{{status: 501}, ok}, nil, 1, 0, func(_ *invocation.Result, err error) bool {
			return invocation.CodeOf(err) == invocation.CodeWorkflowAnswered
		}},
		{"lastNode 500 without a reconciler: ambiguous after one send", "wf", []answer{five, ok}, nil, 1, 0, func(_ *invocation.Result, err error) bool {
			var he *invocation.HTTPError
			return invocation.CodeOf(err) == invocation.CodeAmbiguous && errors.As(err, &he) && he.StatusCode == 500 && invocation.AttemptsOf(err) == 1
		}},
		{"lastNode 520 without a reconciler: ambiguous after one send", "wf", []answer{{status: 520}, ok}, nil, 1, 0, func(_ *invocation.Result, err error) bool {
			return invocation.CodeOf(err) == invocation.CodeAmbiguous
		}},
		{"lastNode 500, it ran: reconciled, not sent again", "wf", []answer{five, ok}, ptr(Ran), 1, 1, func(res *invocation.Result, err error) bool {
			return err == nil && string(res.Output) == `{"from":"n8n's execution"}`
		}},
		{"lastNode 500, not run: reconciled, then sent again", "wf", []answer{five, ok}, ptr(NotRun), 2, 1, func(res *invocation.Result, err error) bool {
			return err == nil && res.Attempts == 2
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				s := &script{answers: tt.answers}
				opts := []Option{WithRetries(6, 0.1)}
				calls := 0
				if tt.verdict != nil {
					opts = append(opts, WithReconciler(ReconcilerFunc(func(context.Context, *Call, time.Time) Reconciled {
						calls++
						if *tt.verdict == Ran {
							r := *ran
							return Reconciled{Verdict: Ran, Result: &r}
						}
						return Reconciled{Verdict: *tt.verdict}
					})))
				}
				inv := newScriptedDefault(t, s, opts...)
				res, err := inv.Invoke(t.Context(), req(tt.wf))
				if !tt.check(res, err) {
					t.Errorf("res %+v err %v (code %s)", res, err, invocation.CodeOf(err))
				}
				if s.count() != tt.requests {
					t.Errorf("%d requests, want %d", s.count(), tt.requests)
				}
				if calls != tt.reconcile {
					t.Errorf("%d reconciliations, want %d", calls, tt.reconcile)
				}
			})
		})
	}
}

func ptr[T any](v T) *T { return &v }
