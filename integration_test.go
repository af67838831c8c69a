package invoker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/hooks"
	"github.com/n8n-invoker/n8n-invoker/httpinvoker"
	"github.com/n8n-invoker/n8n-invoker/internal/n8ntest"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// countingRT counts attempts and the peak of attempts in flight.
type countingRT struct {
	next             http.RoundTripper
	total, now, peak atomic.Int64
}

func (c *countingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	c.total.Add(1)
	n := c.now.Add(1)
	defer c.now.Add(-1)
	for p := c.peak.Load(); n > p && !c.peak.CompareAndSwap(p, n); p = c.peak.Load() {
	}
	return c.next.RoundTrip(r)
}

func realManager(t *testing.T, mutate func(*config.Config)) (*invoker.Manager, *countingRT) {
	t.Helper()
	n8n := n8ntest.Require(t)
	cfg := n8n.Config(t)
	if mutate != nil {
		mutate(cfg)
	}
	rt := &countingRT{}
	m, err := invoker.New(cfg, invoker.WithHTTPOptions(httpinvoker.WithRoundTripper(func(next http.RoundTripper) http.RoundTripper {
		rt.next = next
		return rt
	})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m, rt
}

type echoOut struct {
	Received       map[string]any    `json:"received"`
	Query          map[string]string `json:"query"`
	RequestID      string            `json:"requestId"`
	IdempotencyKey string            `json:"idempotencyKey"`
	ExecutionID    string            `json:"executionId"`
}

func TestRealN8NLastNodeReturnsOutput(t *testing.T) {
	t.Parallel()
	m, rt := realManager(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := m.Execute(ctx, &invocation.Request{Workflow: n8ntest.Echo, Params: map[string]any{"email": "a@example.com", "n": 7}, IdempotencyKey: "key-1"})
	if err != nil {
		t.Fatal(err)
	}
	var out echoOut
	if err := res.Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out.Received["email"] != "a@example.com" || out.Received["n"] != float64(7) {
		t.Errorf("n8n received %v", out.Received)
	}
	if out.RequestID == "" || out.RequestID != res.RequestID || out.IdempotencyKey != "key-1" {
		t.Errorf("headers seen by n8n: request id %q (result %q), idempotency key %q", out.RequestID, res.RequestID, out.IdempotencyKey)
	}
	if res.ExecutionID == "" || res.ExecutionID != out.ExecutionID || res.StatusCode != 200 || !res.Completed || res.Attempts != 1 {
		t.Errorf("result = %+v", res)
	}
	if rt.total.Load() != 1 {
		t.Errorf("%d attempts sent, want 1", rt.total.Load())
	}
}

func TestRealN8NResponseNodeWithExecutionHeader(t *testing.T) {
	t.Parallel()
	m, _ := realManager(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := m.ExecuteWorkflow(ctx, n8ntest.Onboarding, map[string]any{"email": "user@example.com", "plan": "premium"})
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Welcome, Plan, ExecutionID string }
	if err := res.Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out.Welcome != "Welcome aboard, user@example.com!" || out.Plan != "premium" {
		t.Errorf("output = %s", res.Output)
	}
	if res.ExecutionID == "" || res.ContentType != "application/json" {
		t.Errorf("result = %+v", res)
	}
}

func TestRealN8NGetWithQuery(t *testing.T) {
	t.Parallel()
	m, _ := realManager(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := m.ExecuteWorkflow(ctx, n8ntest.EchoGet, map[string]any{"user": "u 1&x", "n": 3})
	if err != nil {
		t.Fatal(err)
	}
	var out echoOut
	if err := res.Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out.Query["user"] != "u 1&x" || out.Query["n"] != "3" {
		t.Errorf("query seen by n8n = %v", out.Query)
	}
}

func TestRealN8NFailingWorkflowIsNotResent(t *testing.T) {
	t.Parallel()
	m, rt := realManager(t, nil)
	var hookErr atomic.Value
	_ = m.RegisterHook(hooks.StageError, hooks.Func(func(_ context.Context, ec *hooks.ExecutionContext) error {
		hookErr.Store(ec.Err)
		return nil
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := m.ExecuteWorkflow(ctx, n8ntest.Fail, map[string]any{"x": 1})
	var herr *invocation.HTTPError
	if !errors.As(err, &herr) {
		t.Fatalf("err = %v (%T), want *HTTPError", err, err)
	}
	if herr.StatusCode != 500 || !herr.WorkflowFailed || !errors.Is(err, invocation.ErrWorkflowFailed) ||
		invocation.ClassOf(err) != invocation.Permanent || herr.Attempts != 1 {
		t.Errorf("err = %v, %+v", err, herr)
	}
	if rt.total.Load() != 1 {
		t.Errorf("failed workflow sent %d times, want 1", rt.total.Load())
	}
	if hookErr.Load() == nil {
		t.Error("error hook not called")
	}
}

func TestRealN8NUnknownWebhookIsPermanentAndQuick(t *testing.T) {
	t.Parallel()
	m, rt := realManager(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	_, err := m.ExecuteWorkflow(ctx, n8ntest.Missing, nil)
	if !errors.Is(err, invocation.ErrNotRegistered) || invocation.ClassOf(err) != invocation.Permanent || invocation.AttemptsOf(err) != 1 {
		t.Fatalf("err = %v, want a permanent not-registered error after 1 attempt", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
	if rt.total.Load() != 1 {
		t.Errorf("%d attempts", rt.total.Load())
	}
	_, err = m.ExecuteWorkflow(ctx, "no-such-name", nil)
	if !errors.Is(err, invocation.ErrUnknownWorkflow) || rt.total.Load() != 1 {
		t.Errorf("unknown name: err = %v, %d requests", err, rt.total.Load())
	}
}

func TestRealN8NAuth(t *testing.T) {
	t.Parallel()
	wrong := secret.New("wrong-secret")
	tests := []struct {
		name     string
		workflow string
		spoil    func(*config.Workflow)
		status   int
	}{
		{"header right", n8ntest.HeaderAuth, nil, 200},
		{"header wrong", n8ntest.HeaderAuth, func(w *config.Workflow) { w.Auth.Value = wrong }, 403},
		{"header missing", n8ntest.HeaderAuth, func(w *config.Workflow) { w.Auth = config.Auth{Type: config.AuthNone} }, 403},
		{"basic right", n8ntest.BasicAuth, nil, 200},
		{"basic wrong", n8ntest.BasicAuth, func(w *config.Workflow) { w.Auth.Password = wrong }, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, rt := realManager(t, func(c *config.Config) {
				if tt.spoil != nil {
					w := c.Workflows[tt.workflow]
					tt.spoil(&w)
					c.Workflows[tt.workflow] = w
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res, err := m.ExecuteWorkflow(ctx, tt.workflow, map[string]any{"case": tt.name})
			if tt.status == 200 {
				var out echoOut
				if err != nil || res.Decode(&out) != nil || out.Received["case"] != tt.name {
					t.Fatalf("res = %+v, err = %v", res, err)
				}
				return
			}
			want := tt.status
			if want == 401 && n8ntest.Require(t).Line() == 1 {
				want = 403 // 1.x answers a wrong basic auth password 403 "Authorization data is wrong!"
			}
			var herr *invocation.HTTPError
			if !errors.As(err, &herr) || herr.StatusCode != want || herr.ErrClass != invocation.Permanent {
				t.Fatalf("err = %v, want HTTP %d permanent", err, want)
			}
			if rt.total.Load() != 1 {
				t.Errorf("auth failure sent %d times", rt.total.Load())
			}
			if s := err.Error(); containsAny(s, wrong.Reveal(), n8ntestSecret(t)) {
				t.Errorf("error leaks a secret: %s", s)
			}
		})
	}
}

func n8ntestSecret(t *testing.T) string { return n8ntest.Require(t).HeaderValue }

func containsAny(s string, subs ...string) bool {
	for _, x := range subs {
		if x != "" && strings.Contains(s, x) {
			return true
		}
	}
	return false
}

func TestRealN8NOnReceivedIsNotCompleted(t *testing.T) {
	t.Parallel()
	m, _ := realManager(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := m.ExecuteWorkflow(ctx, n8ntest.OnReceived, map[string]any{"x": 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Completed || string(res.Output) != `{"message":"Workflow was started"}` {
		t.Errorf("result = %+v output %s", res, res.Output)
	}
}

func TestRealN8NBatchInOrder(t *testing.T) {
	t.Parallel()
	m, rt := realManager(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	items := make([]invoker.BatchItem, 30)
	for i := range items {
		items[i] = invoker.BatchItem{Workflow: n8ntest.Echo, Params: map[string]any{"i": i, "tag": fmt.Sprintf("item-%d", i)}}
	}
	results, err := m.ExecuteBatch(ctx, items, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 30 {
		t.Fatalf("%d results", len(results))
	}
	seen := map[string]bool{}
	var mu sync.Mutex
	for i, r := range results {
		if r.Err != nil {
			t.Errorf("item %d: %v", i, r.Err)
			continue
		}
		var out echoOut
		if err := r.Result.Decode(&out); err != nil {
			t.Fatal(err)
		}
		if r.Index != i || out.Received["i"] != float64(i) || out.Received["tag"] != fmt.Sprintf("item-%d", i) {
			t.Errorf("result %d holds the answer to %v", i, out.Received)
		}
		mu.Lock()
		if seen[out.ExecutionID] {
			t.Errorf("execution %s reported twice", out.ExecutionID)
		}
		seen[out.ExecutionID] = true
		mu.Unlock()
	}
	if p := rt.peak.Load(); p > 5 || p < 2 {
		t.Errorf("peak in flight = %d, want 2..5", p)
	}
	if rt.total.Load() != 30 {
		t.Errorf("%d attempts for 30 items", rt.total.Load())
	}
}

// TestRealN8NPathParams: a webhook path with a parameter is filled from
// Request.PathParams (percent-encoded) under the webhook id n8n serves it
// at, by alias and by n8n id; a missing parameter fails before sending.
func TestRealN8NPathParams(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	m, err := invoker.New(n8n.Config(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	ctx := t.Context()
	byID := n8n.WorkflowID(t, "n8n-invoker orders")
	for _, name := range []string{n8ntest.Orders, byID} {
		res, err := m.Execute(ctx, &invocation.Request{Workflow: name, Params: map[string]any{"n": 1}, PathParams: map[string]string{"orderId": "A 42é"}})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var out struct {
			Params map[string]string `json:"params"`
		}
		if err := res.Decode(&out); err != nil || out.Params["orderId"] != "A 42é" {
			t.Errorf("%s: n8n saw params %v (%s)", name, out.Params, res.Output)
		}
	}
	_, err = m.ExecuteWorkflow(ctx, n8ntest.Orders, nil)
	if invocation.CodeOf(err) != invocation.CodeBadRequest || !strings.Contains(err.Error(), "path parameter(s) orderId ") || invocation.AttemptsOf(err) != 0 {
		t.Errorf("missing parameter: %v", err)
	}
}

// TestRealN8NReplayReconciles: replaying a dead letter whose key n8n had
// already run (its answer was lost) records n8n's execution and sends
// nothing: one execution per key, before and after the replay.
func TestRealN8NReplayReconciles(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	cfg := n8n.Config(t)
	cfg.DLQ.Enabled = true
	cfg.Store.Path = filepath.Join(t.TempDir(), "dlq.db")
	m, err := invoker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := fmt.Sprintf("replay-%d", time.Now().UnixNano())
	// n8n runs it; the answer never reaches the store (another manager,
	// without one).
	other, err := invoker.New(n8n.Config(t))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())
	if _, err := other.Execute(ctx, &invocation.Request{Workflow: n8ntest.Echo, IdempotencyKey: key, Params: map[string]any{"n": 1}}); err != nil {
		t.Fatal(err)
	}
	store := m.DLQ().(*dlq.SQLite)
	// As if the answer had been lost: the success is not recorded, the
	// call is a dead letter.
	id, err := store.Put(ctx, &dlq.Entry{Workflow: n8ntest.Echo, IdempotencyKey: key, Params: json.RawMessage(`{"n":1}`), Reason: "ambiguous", Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := m.ReplayDeadLetters(ctx, dlq.Filter{IDs: []int64{id}})
	if err != nil || rep.AlreadyDone != 1 || !rep.Results[0].Result.Reconciled {
		t.Fatalf("replay: %+v %v", rep, err)
	}
	wfID := n8n.WorkflowID(t, "n8n-invoker echo")
	execs := n8n.ExecutionsByHeader(ctx, t, wfID, "idempotency-key", func(k string) bool { return k == key })
	if len(execs[key]) != 1 {
		t.Errorf("%d executions of the key, want 1", len(execs[key]))
	}
	if n, _ := store.Count(ctx); n != 0 {
		t.Errorf("%d entries left", n)
	}
}

// TestRealN8NHealthWithWrongKey: a wrong API key makes the manager
// unhealthy (resolution by id, Wait and reconcile need the API).
func TestRealN8NHealthWithWrongKey(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	cfg := n8n.Config(t)
	cfg.N8N.APIKey = secret.New("wrong-key")
	m, err := invoker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	h := m.Health(t.Context())
	if h.Healthy || h.N8NAPI == nil || h.N8NAPI.OK || h.N8NAPI.Status != 401 || !h.N8NLive.OK {
		t.Errorf("health with a wrong key: %+v api %+v", h, h.N8NAPI)
	}
	if strings.Contains(fmt.Sprint(h), "wrong-key") {
		t.Error("the key leaked into the health report")
	}
}
