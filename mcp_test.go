package invoker_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/internal/chaos"
	"github.com/n8n-invoker/n8n-invoker/internal/n8ntest"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/mcpinvoker"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
)

// mcpConfig maps the echo and fail fixtures to the MCP transport, by id,
// with the default retries, breaker and reconcile.
// unlimited drops the transport's own limiter (the suite's n8n runs with
// N8N_MCP_SERVER_RATE_LIMIT=0 after TestRealN8NMCPDefaultRateLimit).
func mcpConfig(t *testing.T, n8n *n8ntest.Instance, baseURL string, withAPI, unlimited bool) *config.Config {
	t.Helper()
	if n8n.MCPToken == "" {
		t.Fatalf("n8n %s has no MCP token in its env file: restart it with scripts/n8n start", n8n.Version)
	}
	key := fmt.Sprintf("api_key: %q", n8n.APIKey)
	if !withAPI {
		key = ""
	}
	limit := ""
	if unlimited {
		limit = "rate_limit: {requests: -1}"
	}
	yaml := fmt.Sprintf(`n8n:
  base_url: %q
  %s
  timeout: 30
invokers:
  mcp:
    token: %q
    %s
workflows:
  echo: {transport: mcp, id: %q}
  fail: {transport: mcp, id: %q, trigger_node: Webhook}
  orders: {transport: mcp, id: %q}
`, baseURL, key, n8n.MCPToken, limit, n8n.WorkflowID(t, "n8n-invoker echo"), n8n.WorkflowID(t, "n8n-invoker fail"), n8n.WorkflowID(t, "n8n-invoker echo"))
	cfg, err := config.Parse([]byte(yaml), "mcp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestRealN8NMCPRunByID runs a workflow by id through n8n's MCP server,
// following the execution through the API and, without an API key,
// through MCP itself; n8n's executions agree.
func TestRealN8NMCPRunByID(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	for _, withAPI := range []bool{true, false} {
		t.Run(fmt.Sprintf("api=%v", withAPI), func(t *testing.T) {
			m, err := invoker.New(mcpConfig(t, n8n, n8n.BaseURL, withAPI, true))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = m.Close(context.Background()) }()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			key := fmt.Sprintf("mcp-%v-%d", withAPI, time.Now().UnixNano())
			res, err := m.Execute(ctx, &invocation.Request{Workflow: "echo", Params: map[string]any{"hello": "mcp"}, IdempotencyKey: key})
			if err != nil {
				t.Fatal(err)
			}
			var out struct {
				Received       map[string]any `json:"received"`
				IdempotencyKey string         `json:"idempotencyKey"`
				ExecutionID    string         `json:"executionId"`
			}
			if err := res.Decode(&out); err != nil {
				t.Fatalf("output %s: %v", res.Output, err)
			}
			if out.Received["hello"] != "mcp" || out.IdempotencyKey != key || out.ExecutionID != res.ExecutionID || !res.Completed || res.Status != n8napi.StatusSuccess {
				t.Errorf("result %+v, output %s", res, res.Output)
			}
			execs := n8n.ExecutionsByHeader(ctx, t, res.WorkflowID, "idempotency-key", func(v string) bool { return v == key })
			if len(execs[key]) != 1 || execs[key][0].ID.String() != res.ExecutionID {
				t.Errorf("n8n's executions of the key: %v", execs[key])
			}
			t.Logf("MCP run (api=%v): execution %s, %d attempt(s), %d API calls, %s", withAPI, res.ExecutionID, res.Attempts, res.APICalls, res.Duration.Round(time.Millisecond))
		})
	}
}

// TestRealN8NMCPErrors: a workflow that fails, an unknown workflow and a
// call MCP cannot carry end in typed errors; none is reported as a
// success.
func TestRealN8NMCPErrors(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	cfg := mcpConfig(t, n8n, n8n.BaseURL, true, true)
	cfg.Workflows["unknown"] = config.Workflow{Transport: config.TransportMCP, ID: "NoSuchWorkflow0", TriggerNode: "Webhook"}
	m, err := invoker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Close(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = m.Execute(ctx, &invocation.Request{Workflow: "fail", Params: map[string]any{"x": 1}})
	var fe *n8napi.ExecutionFailedError
	if !errors.As(err, &fe) || fe.Status != n8napi.StatusError || fe.Message == "" {
		t.Errorf("failing workflow: %v", err)
	}
	_, err = m.Execute(ctx, &invocation.Request{Workflow: "unknown"})
	var te *mcpinvoker.ToolError
	if !errors.As(err, &te) || invocation.ClassOf(err) != invocation.Permanent || invocation.AttemptsOf(err) != 1 {
		t.Errorf("unknown workflow: %v", err)
	}
	_, err = m.Execute(ctx, &invocation.Request{Workflow: "orders", PathParams: map[string]string{"orderId": "7"}})
	if invocation.CodeOf(err) != invocation.CodeBadRequest || !strings.Contains(err.Error(), "cannot carry") {
		t.Errorf("path parameters: %v", err)
	}
}

// TestRealN8NMCPReconcile: a 503 before n8n is retried by the pipeline
// (2 attempts, 1 execution); then the answer of an execute_workflow that
// n8n ran is lost: the pipeline's reconcile finds the execution by its
// Idempotency-Key (sent in webhookData.headers) and does not start it
// again. One execution in n8n each, with the default retries.
func TestRealN8NMCPReconcile(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	proxy, err := chaos.New(n8n.BaseURL, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	cfg := mcpConfig(t, n8n, proxy.URL, true, true)
	w := cfg.Workflows["echo"]
	w.TriggerNode = "Webhook" // one MCP request per attempt: the one the proxy cuts
	cfg.Workflows["echo"] = w
	m, err := invoker.New(cfg, invoker.WithAPIClient(n8n.API(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Close(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// First a 503 that never reached n8n: the pipeline's retry sends again.
	proxy.SetFaults(map[chaos.Fault]float64{chaos.Unavailable: 1})
	go func() {
		for len(proxy.Records()) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		proxy.SetFaults(nil)
	}()
	rkey := fmt.Sprintf("mcp-retry-%d", time.Now().UnixNano())
	res, err := m.Execute(ctx, &invocation.Request{Workflow: "echo", Params: map[string]any{"n": 0}, IdempotencyKey: rkey})
	if err != nil || res.Attempts != 2 || res.Reconciled {
		t.Fatalf("after a 503: %+v %v, want 2 attempts", res, err)
	}
	if execs := n8n.ExecutionsByHeader(ctx, t, res.WorkflowID, "idempotency-key", func(v string) bool { return v == rkey }); len(execs[rkey]) != 1 {
		t.Errorf("%d executions of the retried key, want 1", len(execs[rkey]))
	}
	for len(proxy.Records()) < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	before := len(proxy.Records())
	// Then a lost answer of a request n8n ran: reconcile, no re-send.
	proxy.SetFaults(map[chaos.Fault]float64{chaos.ResetAfter: 1})
	go func() {
		for len(proxy.Records()) == before {
			time.Sleep(5 * time.Millisecond)
		}
		proxy.SetFaults(nil)
	}()
	key := fmt.Sprintf("mcp-reconcile-%d", time.Now().UnixNano())
	res, err = m.Execute(ctx, &invocation.Request{Workflow: "echo", Params: map[string]any{"n": 1}, IdempotencyKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reconciled {
		t.Errorf("result %+v: not reconciled", res)
	}
	recs := proxy.Records()[before:]
	if len(recs) != 1 || recs[0].Fault != chaos.ResetAfter || !recs[0].Forwarded {
		t.Errorf("proxy saw %+v, want one cut request", recs)
	}
	execs := n8n.ExecutionsByHeader(ctx, t, res.WorkflowID, "idempotency-key", func(v string) bool { return v == key })
	if len(execs[key]) != 1 {
		t.Errorf("%d executions of the key, want 1", len(execs[key]))
	}
}

// TestRealN8NMCPDefaultRateLimit runs against n8n's default MCP rate
// limit (100 requests per 5 minutes per IP; scripts/test.sh runs it
// before it restarts n8n with the limit off): once the window is spent,
// a call with the default MCP settings sends one request, gets the 429,
// and then waits out its Retry-After (up to the whole window, within
// invokers.mcp.max_retry_after) instead of failing or hammering n8n;
// the caller's deadline ends the wait, nothing ran.
func TestRealN8NMCPDefaultRateLimit(t *testing.T) {
	n8n := n8ntest.Require(t)
	if n8n.Line() != 2 {
		t.Fatalf("n8n %s has no instance MCP server", n8n.Version)
	}
	target, _ := url.Parse(n8n.BaseURL)
	var toMCP atomic.Int32
	rp := httputil.NewSingleHostReverseProxy(target)
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == mcpinvoker.Path {
			toMCP.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	defer counting.Close()
	// Spend the window with pings (every method counts).
	spent, limited := 0, false
	for spent < 150 && !limited {
		req, _ := http.NewRequest(http.MethodPost, n8n.BaseURL+mcpinvoker.Path, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Header.Set("Authorization", "Bearer "+n8n.MCPToken)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		limited = resp.StatusCode == http.StatusTooManyRequests
		if !limited && resp.StatusCode != http.StatusOK {
			t.Fatalf("ping %d: HTTP %d", spent, resp.StatusCode)
		}
		spent++
	}
	if !limited {
		t.Fatalf("no 429 after %d MCP requests: is N8N_MCP_SERVER_RATE_LIMIT off on this n8n?", spent)
	}
	cfg := mcpConfig(t, n8n, counting.URL, true, false) // the default MCP settings
	cfg.DLQ.Enabled = true
	cfg.Store.Path = filepath.Join(t.TempDir(), "dlq.db")
	w := cfg.Workflows["echo"]
	w.TriggerNode = "Webhook"
	cfg.Workflows["echo"] = w
	m, err := invoker.New(cfg, invoker.WithAPIClient(n8n.API(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Close(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	key := fmt.Sprintf("mcp-limited-%d", time.Now().UnixNano())
	start := time.Now()
	_, err = m.Execute(ctx, &invocation.Request{Workflow: "echo", Params: map[string]any{"n": 1}, IdempotencyKey: key})
	if !invocation.IsCanceled(err) || time.Since(start) < 7*time.Second {
		t.Fatalf("err %v after %s, want the caller's deadline while waiting out the 429", err, time.Since(start))
	}
	if n := toMCP.Load(); n != 1 {
		t.Errorf("%d MCP requests sent, want 1 (the 429 holds the rest)", n)
	}
	dead, err := m.DLQ().List(context.Background(), dlq.Filter{})
	if err != nil || len(dead) != 0 {
		t.Errorf("dead letters %v %v: a caller's deadline is not a failure", dead, err)
	}
	bg, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	if execs := n8n.ExecutionsByHeader(bg, t, n8n.WorkflowID(t, "n8n-invoker echo"), "idempotency-key", func(v string) bool { return v == key }); len(execs[key]) != 0 {
		t.Errorf("n8n ran the rate-limited call: %v", execs[key])
	}
	t.Logf("default MCP rate limit: 429 after %d requests; the call sent 1 request and waited until its deadline", spent)
}
