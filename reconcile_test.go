package invoker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// n8nWithExecution is an n8n API that knows workflow "wf" with one
// execution of key "k" in status, started now on n8n's clock, which runs
// offset from this process's. Running executions are listed only under
// status=running, as n8n does; the execution's data (its trigger item)
// is there unless it is new.
func n8nWithExecution(t *testing.T, status string, offset time.Duration) *httptest.Server {
	t.Helper()
	started := time.Now().Add(offset)
	exec := func(data bool) map[string]any {
		e := map[string]any{"id": "41", "status": status, "workflowId": "wf", "startedAt": started.UTC().Format(time.RFC3339Nano)}
		if data {
			e["data"] = map[string]any{"resultData": map[string]any{"lastNodeExecuted": "Webhook", "runData": map[string]any{
				"Webhook": []any{map[string]any{"startTime": 1, "data": map[string]any{"main": []any{[]any{
					map[string]any{"json": map[string]any{"headers": map[string]any{"idempotency-key": "k"}}}}}}}}}}}
			e["workflowData"] = map[string]any{"nodes": []any{map[string]any{"name": "Webhook", "type": "n8n-nodes-base.webhook"}}}
		}
		return e
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", time.Now().Add(offset).UTC().Format(http.TimeFormat))
		q := r.URL.Query()
		switch r.URL.Path {
		case "/api/v1/executions":
			page := []any{}
			if st := q.Get("status"); st == status || (st == "" && status != "running") {
				page = append(page, exec(q.Get("includeData") == "true"))
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"data": page, "nextCursor": nil})
		case "/api/v1/executions/41":
			_ = json.NewEncoder(w).Encode(exec(q.Get("includeData") == "true"))
		case "/api/v1/workflows/wf":
			fmt.Fprint(w, `{"id":"wf","name":"w","nodes":[],"connections":{},"settings":{}}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestTakeoverOfARunningExecution: a key a dead process left in flight
// whose execution n8n still runs (or keeps waiting) is unresolved at
// takeover, never a failed run: nothing is sent, and it is not ended as
// failed (permanent) while n8n runs it.
func TestTakeoverOfARunningExecution(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status string
		offset time.Duration // of n8n's clock
	}{
		{"waiting", 0},
		{"running", 0},
		{"running", -time.Minute},
		{"new", time.Minute},
	} {
		t.Run(tc.status+" "+strconv.Itoa(int(tc.offset.Seconds())), func(t *testing.T) {
			t.Parallel()
			api := n8nWithExecution(t, tc.status, tc.offset)
			var attempts atomic.Int64
			m := leftInFlight(t, api.URL, "invokers: {http: {reconcile_timeout: 1s}}\n", &attempts)
			_, err := m.Execute(t.Context(), &invocation.Request{Workflow: "w", IdempotencyKey: "k"})
			if code := invocation.CodeOf(err); code != invocation.CodeUnresolved {
				t.Errorf("takeover of a %s execution: %v (code %s), want unresolved", tc.status, err, code)
			}
			if attempts.Load() != 0 {
				t.Errorf("sent %d times while n8n runs it", attempts.Load())
			}
		})
	}
}

// TestTakeoverOfASucceededExecution: a key taken over whose execution
// succeeded is the result the webhook would have answered (a lastNode
// workflow: the last node's first item, an object), as inside a call,
// with its attempts and duration; nothing is sent.
func TestTakeoverOfASucceededExecution(t *testing.T) {
	t.Parallel()
	api := n8nWithExecution(t, "success", 0)
	var attempts atomic.Int64
	m := leftInFlight(t, api.URL, "", &attempts)
	res, err := m.Execute(t.Context(), &invocation.Request{Workflow: "w", IdempotencyKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if attempts.Load() != 0 {
		t.Errorf("sent %d times", attempts.Load())
	}
	want := `{"headers":{"idempotency-key":"k"}}`
	if string(res.Output) != want || string(res.LastNodeOutput) != "["+want+"]" || !res.Reconciled || res.StatusCode != 0 ||
		res.Attempts < 1 || res.Duration <= 0 || res.ExecutionID != "41" {
		t.Errorf("reconciled result: output %s, last node %s, %+v", res.Output, res.LastNodeOutput, res)
	}
}

// leftInFlight returns a manager (its journal on a fresh SQLite file, n8n's
// API at apiURL, workflow "w" with n8n id "wf", more YAML in extra) whose
// transport counts its sends in attempts, with key "k" left in flight by
// a process whose lease has ended: the next call of "k" takes it over.
func leftInFlight(t *testing.T, apiURL, extra string, attempts *atomic.Int64) *invoker.Manager {
	t.Helper()
	cfg := parseConfig(t, fmt.Sprintf("n8n: {base_url: %q, api_key: k}\nworkflows: {w: {path: w, id: wf}}\n%sdlq: {enabled: true}\nstore: {path: %q}\n",
		apiURL, extra, filepath.Join(t.TempDir(), "dlq.db")))
	m, err := invoker.New(cfg, invoker.WithTransport(slowOK(0, attempts)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	if _, _, err := m.DLQ().Begin(t.Context(), &dlq.Inflight{IdempotencyKey: "k", Workflow: "w"}, "elsewhere/ns:1/x", time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	return m
}
