package invoker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/internal/n8ntest"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
)

// slowConfig is the defaults with the dead-letter queue on, the slow
// fixture as "slow", and n8n.timeout as given.
func slowConfig(t *testing.T, n8n *n8ntest.Instance, apiKey bool, timeout string) *config.Config {
	t.Helper()
	key := ""
	if apiKey {
		key = n8n.APIKey
	}
	cfg, err := config.Parse(fmt.Appendf(nil, "n8n: {base_url: %q, api_key: %q, timeout: %s}\nworkflows:\n  slow: {path: invoker-slow-answer}\ndlq: {enabled: true}\nstore: {path: %q}\n",
		n8n.BaseURL, key, timeout, filepath.Join(t.TempDir(), "dlq.db")), "slow.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestRealN8NResubmittedAmbiguousKeyRunsOnce: a 3 s workflow called with
// a 1 s timeout and no API key is dead-lettered as ambiguous; the same
// call with the same key is then refused (code ambiguous, nothing sent),
// and n8n ran the key once (issue 25: it ran twice).
func TestRealN8NResubmittedAmbiguousKeyRunsOnce(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := invoker.New(slowConfig(t, n8n, false, "1s"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	key := fmt.Sprintf("resubmit-%d", time.Now().UnixNano())
	req := &invocation.Request{Workflow: "slow", IdempotencyKey: key, Params: map[string]any{"delay_ms": 3000}}
	_, err = m.Execute(ctx, req)
	if invocation.CodeOf(err) != invocation.CodeAmbiguous || invocation.DeadLetterOf(err) == 0 {
		t.Fatalf("first call: %v (code %s)", err, invocation.CodeOf(err))
	}
	_, err = m.Execute(ctx, req)
	if invocation.CodeOf(err) != invocation.CodeAmbiguous || invocation.AttemptsOf(err) != 0 {
		t.Errorf("the same call again: %v (code %s, %d attempts)", err, invocation.CodeOf(err), invocation.AttemptsOf(err))
	}
	wfID := n8n.WorkflowID(t, "n8n-invoker slow answer")
	execs := executionsOf(ctx, t, n8n, wfID, 1, func(k string) bool { return k == key })
	if len(execs[key]) != 1 {
		t.Errorf("n8n ran the key %d times, want 1", len(execs[key]))
	}
}

// TestRealN8NRunningExecutionAtTakeover: a key left in flight by a
// process that died while n8n still runs its execution is, when taken
// over, unresolved (not a failed run): it is kept for a later reconcile
// (in flight, or a dead letter marked unresolved), nothing is sent, and n8n runs the key once
// (issue 25, point 6: it was reported failed and its entry removed while
// n8n ran it).
func TestRealN8NRunningExecutionAtTakeover(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := slowConfig(t, n8n, true, "30s")
	cfg.Invokers.HTTP.ReconcileTimeout = config.Duration(2 * time.Second)
	m, err := invoker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	key := fmt.Sprintf("takeover-%d", time.Now().UnixNano())
	// The dead process's call: written ahead, sent, and still running in
	// n8n (12 s).
	store := m.DLQ()
	if _, _, err := store.Begin(ctx, &dlq.Inflight{IdempotencyKey: key, Workflow: "slow", Params: json.RawMessage(`{"delay_ms":12000}`)}, "gone", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"delay_ms":12000}`)
	hreq, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, n8n.BaseURL+"/webhook/invoker-slow-answer", bytes.NewReader(body))
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Idempotency-Key", key)
	go func() {
		if resp, err := http.DefaultClient.Do(hreq); err == nil {
			resp.Body.Close()
		}
	}()
	wfID := n8n.WorkflowID(t, "n8n-invoker slow answer")
	for deadline := time.Now().Add(20 * time.Second); ; {
		running := 0
		for _, err := range n8n.API(t).Executions.All(ctx, &n8napi.ExecutionListOptions{WorkflowID: wfID, Status: n8napi.StatusRunning}) {
			if err == nil {
				running++
			}
		}
		if running > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("n8n never showed the execution running")
		}
		time.Sleep(200 * time.Millisecond)
	}
	_, err = m.Execute(ctx, &invocation.Request{Workflow: "slow", IdempotencyKey: key, Params: map[string]any{"delay_ms": 12000}})
	if c := invocation.CodeOf(err); c != invocation.CodeUnresolved || invocation.OutcomeOf(err) != invocation.Ambiguous {
		t.Errorf("takeover of a running execution: %v (code %s), want unresolved", err, c)
	}
	// Kept for a later reconcile: in flight, or a dead letter marked
	// unresolved (a replay or a re-submission reconciles it first).
	in, _ := store.Inflight(ctx, dlq.InflightFilter{Key: key})
	dead, _ := store.List(ctx, dlq.Filter{Key: key})
	if len(in) != 1 && (len(dead) != 1 || dead[0].Reason != dlq.ReasonUnresolved) {
		t.Errorf("the key's journal: %d in flight, dead letters %+v; want it kept in flight or unresolved", len(in), dead)
	}
	execs := executionsOf(ctx, t, n8n, wfID, 1, func(k string) bool { return k == key })
	if len(execs[key]) != 1 {
		t.Errorf("n8n ran the key %d times, want 1", len(execs[key]))
	}
}
