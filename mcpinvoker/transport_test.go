package mcpinvoker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/mcpinvoker"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeMCP speaks n8n's MCP server as 2.41.1 does: JSON-RPC in, one SSE
// event out, plain JSON for errors before the handler.
type fakeMCP struct {
	token string
	mu    sync.Mutex
	calls []map[string]any // tools/call params
	tool  func(name string, args map[string]any) (status int, result string)
	n     atomic.Int32
}

func (f *fakeMCP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.n.Add(1)
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(401)
		fmt.Fprint(w, `{"message":"Unauthorized"}`)
		return
	}
	if !strings.Contains(r.Header.Get("Accept"), "text/event-stream") || !strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.WriteHeader(406)
		return
	}
	var req struct {
		ID     int64          `json:"id"`
		Method string         `json:"method"`
		Params map[string]any `json:"params"`
	}
	b, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(b, &req); err != nil {
		w.WriteHeader(400)
		return
	}
	name, _ := req.Params["name"].(string)
	args, _ := req.Params["arguments"].(map[string]any)
	f.mu.Lock()
	f.calls = append(f.calls, req.Params)
	f.mu.Unlock()
	status, result := f.tool(name, args)
	if status != 200 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, result)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprintf(w, "event: message\ndata: {\"result\":%s,\"jsonrpc\":\"2.0\",\"id\":%d}\n\n", result, req.ID)
}

func structured(v string) string {
	return fmt.Sprintf(`{"content":[{"type":"text","text":%q}],"structuredContent":%s}`, v, v)
}

func newTransport(t *testing.T, f *fakeMCP, o mcpinvoker.Options) *mcpinvoker.Transport {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	o.BaseURL = srv.URL
	if o.Token == nil {
		o.Token = secret.Static(secret.New(f.token))
	}
	tr, err := mcpinvoker.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr
}

func attempt(wf string, body string) *invocation.Attempt {
	return &invocation.Attempt{
		Request: &invocation.Request{Workflow: wf, RequestID: "req-1", IdempotencyKey: "key-1"},
		Target:  &invocation.Target{Workflow: wf, WorkflowID: "W1", Transport: mcpinvoker.Name},
		Number:  1, Body: []byte(body),
	}
}

func TestAttemptStartsTheExecution(t *testing.T) {
	t.Parallel()
	f := &fakeMCP{token: "tok", tool: func(name string, args map[string]any) (int, string) {
		switch name {
		case "get_workflow_details":
			return 200, structured(`{"workflow":{"nodes":[{"name":"Code","type":"n8n-nodes-base.code"},{"name":"Hook","type":"n8n-nodes-base.webhook"}]}}`)
		case "execute_workflow":
			return 200, structured(`{"executionId":"42","status":"started"}`)
		}
		return 200, structured(`{}`)
	}}
	tr := newTransport(t, f, mcpinvoker.Options{})
	a := attempt("echo", `{"n":1}`)
	a.SetHeader("Traceparent", "00-abc-def-01")
	for range 2 {
		res, err := tr.Attempt(t.Context(), a)
		if err != nil {
			t.Fatal(err)
		}
		if res.ExecutionID != "42" || res.WorkflowID != "W1" || res.Completed || invocation.OutcomeOf(nil) != invocation.Answered {
			t.Errorf("result %+v", res)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) != 3 { // the trigger node is asked once
		t.Fatalf("%d tool calls, want 3: %v", len(f.calls), f.calls)
	}
	args := f.calls[1]["arguments"].(map[string]any)
	wd := args["inputs"].(map[string]any)["webhookData"].(map[string]any)
	h := wd["headers"].(map[string]any)
	if args["triggerNodeName"] != "Hook" || args["executionMode"] != "production" || h["idempotency-key"] != "key-1" ||
		h["x-request-id"] != "req-1" || h["traceparent"] != "00-abc-def-01" || wd["body"].(map[string]any)["n"] != 1.0 {
		t.Errorf("execute_workflow arguments %v", args)
	}
}

func TestAttemptErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		status  int
		result  string
		class   invocation.Class
		outcome invocation.Outcome
		check   func(error) bool
	}{
		{"not available", 200, structured(`{"executionId":null,"status":"error","error":"Workflow is not available in MCP. Enable MCP access..."}`),
			invocation.Permanent, invocation.Answered, func(err error) bool { var te *mcpinvoker.ToolError; return errors.As(err, &te) && !te.NotPublished() }},
		{"not published yet", 200, structured(`{"executionId":null,"status":"error","error":"Workflow 'W1' has no published (active) version to execute"}`),
			invocation.Transient, invocation.Answered, func(err error) bool { var te *mcpinvoker.ToolError; return errors.As(err, &te) && te.NotPublished() }},
		{"schema", 200, `{"content":[{"type":"text","text":"Input validation error: executionMode: Required"}],"isError":true}`,
			invocation.Permanent, invocation.Answered, func(err error) bool { var te *mcpinvoker.ToolError; return errors.As(err, &te) && te.Invalid }},
		{"json-rpc error", 200, "", invocation.Permanent, invocation.Answered, func(err error) bool {
			return invocation.CodeOf(err) == invocation.CodeRejected && strings.Contains(err.Error(), "JSON-RPC error")
		}},
		{"mcp off", 404, `{"message":"MCP access is disabled"}`, invocation.Permanent, invocation.Answered,
			func(err error) bool {
				var he *invocation.HTTPError
				return errors.As(err, &he) && he.Message == "MCP access is disabled"
			}},
		{"rate limited", 429, `{"message":"Too many requests"}`, invocation.Transient, invocation.Answered,
			func(err error) bool { return errors.Is(err, invocation.ErrRateLimited) }},
		{"server error", 503, `{"message":"down"}`, invocation.Transient, invocation.Answered, func(error) bool { return true }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeMCP{token: "tok", tool: func(string, map[string]any) (int, string) { return tc.status, tc.result }}
			if tc.name == "json-rpc error" {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "text/event-stream")
					fmt.Fprint(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32602,\"message\":\"Tool execute_workflow not found\"}}\n\n")
				}))
				defer srv.Close()
				tr, _ := mcpinvoker.New(mcpinvoker.Options{BaseURL: srv.URL, Token: secret.Static(secret.New("x"))})
				defer tr.Close()
				a := attempt("w", `{}`)
				a.Target.TriggerNode = "Webhook"
				_, err := tr.Attempt(t.Context(), a)
				if !tc.check(err) || invocation.ClassOf(err) != tc.class {
					t.Fatalf("err %v (%T)", err, err)
				}
				return
			}
			tr := newTransport(t, f, mcpinvoker.Options{})
			a := attempt("w", `{}`)
			a.Target.TriggerNode = "Webhook"
			_, err := tr.Attempt(t.Context(), a)
			if err == nil || !tc.check(err) || invocation.ClassOf(err) != tc.class || invocation.OutcomeOf(err) != tc.outcome {
				t.Fatalf("err %v (%T): class %v outcome %v", err, err, invocation.ClassOf(err), invocation.OutcomeOf(err))
			}
			if strings.Contains(err.Error(), "tok") {
				t.Errorf("the token leaked: %v", err)
			}
		})
	}
}

// TestCannotCarry: what MCP cannot express is refused before sending.
func TestCannotCarry(t *testing.T) {
	t.Parallel()
	f := &fakeMCP{token: "tok", tool: func(string, map[string]any) (int, string) {
		return 200, structured(`{"executionId":"1","status":"started"}`)
	}}
	tr := newTransport(t, f, mcpinvoker.Options{})
	cases := map[string]func(a *invocation.Attempt){
		"path parameters": func(a *invocation.Attempt) { a.Request.PathParams = map[string]string{"id": "1"} },
		"array body":      func(a *invocation.Attempt) { a.Body = []byte(`[1,2]`) },
		"webhook auth":    func(a *invocation.Attempt) { a.Target.Auth = invocation.Auth{Type: invocation.AuthHeader} },
		"respond node":    func(a *invocation.Attempt) { a.Target.ResponseMode = invocation.ResponseModeResponseNode },
		"get query":       func(a *invocation.Attempt) { a.Target.Method = "GET"; a.Request.Params = map[string]any{"q": 1} },
		"no workflow id":  func(a *invocation.Attempt) { a.Target.WorkflowID = "" },
	}
	for name, change := range cases {
		a := attempt("w", `{}`)
		a.Target.TriggerNode = "Webhook"
		change(a)
		_, err := tr.Attempt(t.Context(), a)
		if invocation.CodeOf(err) != invocation.CodeBadRequest || invocation.ClassOf(err) != invocation.Permanent || invocation.OutcomeOf(err) != invocation.NotSent {
			t.Errorf("%s: %v", name, err)
		}
	}
	if n := f.n.Load(); n != 0 {
		t.Errorf("%d requests sent for calls MCP cannot carry", n)
	}
}

// TestRateLimitHoldsEveryRequest: after a 429, no request is sent until
// its Retry-After has passed; a call whose deadline comes first is
// refused unsent with the wait.
func TestRateLimitHoldsEveryRequest(t *testing.T) {
	t.Parallel()
	var limited atomic.Bool
	limited.Store(true)
	f := &fakeMCP{token: "tok", tool: func(string, map[string]any) (int, string) {
		if limited.Swap(false) {
			return 429, `{"message":"Too many requests"}`
		}
		return 200, structured(`{"executionId":"7","status":"started"}`)
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if limited.Load() {
			w.Header().Set("Retry-After", "240")
		}
		f.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tr, err := mcpinvoker.New(mcpinvoker.Options{BaseURL: srv.URL, Token: secret.Static(secret.New("tok"))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	a := attempt("w", `{}`)
	a.Target.TriggerNode = "Webhook"
	_, err = tr.Attempt(t.Context(), a)
	var he *invocation.HTTPError
	if !errors.As(err, &he) || he.StatusCode != 429 || !he.HasRetryAfter || he.RetryAfter != 240*time.Second {
		t.Fatalf("first: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err = tr.Attempt(ctx, a)
	if !errors.As(err, &he) || invocation.OutcomeOf(err) != invocation.Answered || he.RetryAfter < 200*time.Second || !strings.Contains(he.Message, "not sent") {
		t.Fatalf("held: %v", err)
	}
	if n := f.n.Load(); n != 1 {
		t.Errorf("%d requests reached the server, want 1 (the rest held)", n)
	}
}

// TestHoldCapped: a 429 asking for a day holds the transport's requests
// for at most MaxRetryAfter (default DefaultMaxRetryAfter); the 429's own
// error keeps the server's wait, so the retry policy fails fast past its
// cap. (Sockets: no synctest; the held request reports the hold left.)
func TestHoldCapped(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		max  time.Duration
		want time.Duration
	}{
		{"default", 0, mcpinvoker.DefaultMaxRetryAfter},
		{"configured", 30 * time.Second, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeMCP{token: "tok", tool: func(string, map[string]any) (int, string) {
				return 429, `{"message":"Too many requests"}`
			}}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "86400")
				f.ServeHTTP(w, r)
			}))
			t.Cleanup(srv.Close)
			tr, err := mcpinvoker.New(mcpinvoker.Options{BaseURL: srv.URL, Token: secret.Static(secret.New("tok")), MaxRetryAfter: tt.max})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(tr.Close)
			a := attempt("w", `{}`)
			a.Target.TriggerNode = "Webhook"
			_, err = tr.Attempt(t.Context(), a)
			var he *invocation.HTTPError
			if !errors.As(err, &he) || he.StatusCode != 429 || he.RetryAfter != 24*time.Hour {
				t.Fatalf("first: %v", err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			_, err = tr.Attempt(ctx, a)
			if !errors.As(err, &he) || !strings.Contains(he.Message, "not sent") || he.RetryAfter > tt.want || he.RetryAfter < tt.want-10*time.Second {
				t.Fatalf("held: %v (hold left %s), want a hold of at most %s", err, he.RetryAfter, tt.want)
			}
			if n := f.n.Load(); n != 1 {
				t.Errorf("%d requests reached the server, want 1", n)
			}
		})
	}
	if _, err := mcpinvoker.New(mcpinvoker.Options{BaseURL: "http://127.0.0.1:1", Token: secret.Static(secret.New("tok")), MaxRetryAfter: -1}); err == nil {
		t.Error("a negative MaxRetryAfter was accepted")
	}
}

// TestOwnLimiterDefaults: the default limiter lets a tenth of n8n's
// 100-per-5-minutes through at once and refuses, unsent, what would
// wait past the caller's deadline.
func TestOwnLimiterDefaults(t *testing.T) {
	t.Parallel()
	f := &fakeMCP{token: "tok", tool: func(string, map[string]any) (int, string) {
		return 200, structured(`{"executionId":"7","status":"started"}`)
	}}
	tr := newTransport(t, f, mcpinvoker.Options{})
	a := attempt("w", `{}`)
	a.Target.TriggerNode = "Webhook"
	for i := range 10 {
		if _, err := tr.Attempt(t.Context(), a); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	_, err := tr.Attempt(ctx, a)
	var he *invocation.HTTPError
	if !errors.As(err, &he) || he.StatusCode != 429 || he.RetryAfter < 2*time.Second {
		t.Fatalf("11th call: %v", err)
	}
	if n := f.n.Load(); n != 10 {
		t.Errorf("%d requests sent, want 10", n)
	}
}

func TestTokenReloadedAfter401(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := secret.NewFile(file)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeMCP{token: "new", tool: func(string, map[string]any) (int, string) {
		return 200, structured(`{"executionId":"7","status":"started"}`)
	}}
	tr := newTransport(t, f, mcpinvoker.Options{Token: p})
	a := attempt("w", `{}`)
	a.Target.TriggerNode = "Webhook"
	if _, err := tr.Attempt(t.Context(), a); err == nil || strings.Contains(err.Error(), "old") {
		t.Fatalf("with the old token: %v", err)
	}
	if err := os.WriteFile(file, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Attempt(t.Context(), a); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
}

func TestExecution(t *testing.T) {
	t.Parallel()
	f := &fakeMCP{token: "tok", tool: func(name string, args map[string]any) (int, string) {
		if args["executionId"] == "404" {
			return 200, structured(`{"execution":null,"error":"Execution '404' not found for workflow 'W1'"}`)
		}
		return 200, structured(`{"execution":{"id":"7","workflowId":"W1","mode":"webhook","status":"success"},"data":{"resultData":{"runData":{"Code":[{"data":{"main":[[{"json":{"ok":true}}]]}}]},"lastNodeExecuted":"Code"}}}`)
	}}
	tr := newTransport(t, f, mcpinvoker.Options{})
	e, err := tr.Execution(t.Context(), "W1", "7", true)
	if err != nil || e.Status != "success" || e.Data == nil || e.Data.ResultData.LastNodeExecuted != "Code" {
		t.Fatalf("%+v %v", e, err)
	}
	if _, err := tr.Execution(t.Context(), "W1", "404", false); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("unknown: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	for _, o := range []mcpinvoker.Options{{}, {BaseURL: "ftp://x", Token: secret.Static(secret.New("t"))}, {BaseURL: "http://x"}, {BaseURL: "http://x", Token: secret.Static(secret.New("t")), Timeout: -1}} {
		if _, err := mcpinvoker.New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

// TestAttemptTimeoutIsNotTheCallersCancel: an attempt whose own timeout
// ends (the server answers too late) is a transient failure that may
// have run, not the caller's cancellation: the retry loop reconciles it,
// the breaker sees it, it can be dead-lettered (issue 25: it came back as
// the caller's cancellation and stayed in flight).
func TestAttemptTimeoutIsNotTheCallersCancel(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	f := &fakeMCP{token: "tok", tool: func(string, map[string]any) (int, string) {
		<-release
		return 200, structured(`{"executionId":"7","status":"started"}`)
	}}
	tr := newTransport(t, f, mcpinvoker.Options{RateRequests: -1, Timeout: 100 * time.Millisecond})
	a := attempt("w", `{}`)
	a.Target.TriggerNode = "Webhook"
	_, err := tr.Attempt(t.Context(), a)
	if err == nil || invocation.IsCanceled(err) || invocation.ClassOf(err) == invocation.Permanent || invocation.OutcomeOf(err) != invocation.Ambiguous {
		t.Errorf("err = %v (canceled %v, class %s, outcome %s), want a failure that may have run, not a cancellation", err,
			invocation.IsCanceled(err), invocation.ClassOf(err), invocation.OutcomeOf(err))
	}
}
