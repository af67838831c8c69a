package invoker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/internal/n8ntest"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
	"github.com/n8n-invoker/n8n-invoker/pack"
)

// defaultConfig is the default configuration for the instance, with or
// without its API key, mapping the given workflows (name: YAML value).
func defaultConfig(t *testing.T, n8n *n8ntest.Instance, apiKey bool, workflows string) *config.Config {
	t.Helper()
	key := ""
	if apiKey {
		key = n8n.APIKey
	}
	cfg, err := config.Parse(fmt.Appendf(nil, "n8n: {base_url: %q, api_key: %q}\nworkflows:\n%s", n8n.BaseURL, key, workflows), "default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// executionsOf waits until n8n has saved at least one execution of each
// key that keep accepts and no execution of the workflow still runs, then
// returns them by key.
func executionsOf(ctx context.Context, t *testing.T, n8n *n8ntest.Instance, wfID string, keys int, keep func(string) bool) map[string][]*n8napi.Execution {
	t.Helper()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		execs := n8n.ExecutionsByHeader(ctx, t, wfID, "idempotency-key", keep)
		running := 0
		for _, err := range n8n.API(t).Executions.All(ctx, &n8napi.ExecutionListOptions{WorkflowID: wfID, Status: n8napi.StatusRunning}) {
			if err != nil {
				t.Fatal(err)
			}
			running++
		}
		if len(execs) >= keys && running == 0 {
			return execs
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for the executions: %v (%d keys of %d seen, %d running)", ctx.Err(), len(execs), keys, running)
		case <-tick.C:
		}
	}
}

// TestRealN8NRespond500RunsOnce: a workflow whose Respond to Webhook node
// answers 500 after it ran is run once per call with the default
// configuration, with and without an API key, whether its configuration
// says it answers through a Respond node (the workflow's answer: code
// workflow-answered, its status and body) or leaves the response mode at
// its default (ambiguous: reconciled with an API key, a typed ambiguous
// outcome without one). Counted by key in n8n's executions API.
func TestRealN8NRespond500RunsOnce(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	wfID := n8n.WorkflowID(t, "n8n-invoker respond 500")
	prefix := fmt.Sprintf("respond500-%d-", time.Now().UnixNano())
	tests := []struct {
		name   string
		apiKey bool
		mode   string // "" leaves the default (lastNode)
		check  func(err error) bool
	}{
		{"responseNode, API key", true, "responseNode", func(err error) bool {
			var he *invocation.HTTPError
			return invocation.CodeOf(err) == invocation.CodeWorkflowAnswered && errors.As(err, &he) && he.StatusCode == 500 && len(he.Body) > 0
		}},
		{"responseNode, no API key", false, "responseNode", func(err error) bool {
			return invocation.CodeOf(err) == invocation.CodeWorkflowAnswered
		}},
		{"default mode, API key", true, "", func(err error) bool {
			// Reconciled: n8n's execution succeeded, so the call is not
			// sent again (its result, or an error that is not a re-send).
			return invocation.AttemptsOf(err) <= 1
		}},
		{"default mode, no API key", false, "", func(err error) bool {
			return invocation.CodeOf(err) == invocation.CodeAmbiguous && invocation.AttemptsOf(err) == 1
		}},
	}
	for i, tt := range tests {
		key := fmt.Sprintf("%s%d", prefix, i)
		t.Run(tt.name, func(t *testing.T) {
			wf := "path: invoker-respond-500"
			if tt.mode != "" {
				wf += ", response_mode: " + tt.mode
			}
			cfg := defaultConfig(t, n8n, tt.apiKey, "  r500: {"+wf+"}\n")
			m, err := invoker.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
			_, err = m.Execute(ctx, &invocation.Request{Workflow: "r500", IdempotencyKey: key, Params: map[string]any{"n": i}})
			if !tt.check(err) {
				t.Errorf("err = %v (code %s, %d attempts)", err, invocation.CodeOf(err), invocation.AttemptsOf(err))
			}
			execs := executionsOf(ctx, t, n8n, wfID, 1, func(k string) bool { return k == key })
			t.Logf("%s: %d execution(s) of the key; err %v", tt.name, len(execs[key]), err)
			if len(execs[key]) != 1 {
				t.Errorf("%d executions of the key, want exactly 1", len(execs[key]))
			}
		})
	}
}

// TestRealN8NPackingNotBuiltForPackingRunsOnce: a packed batch against a
// workflow not built for packing (the echo fixture answers a 2xx object,
// not an array of item results) runs one execution per pack, none split,
// and each item gets a typed error with its key and the execution's id.
func TestRealN8NPackingNotBuiltForPackingRunsOnce(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m, err := invoker.New(defaultConfig(t, n8n, true, "  echo: {path: invoker-echo}\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	prefix := fmt.Sprintf("notpacked-%d-", time.Now().UnixNano())
	items := make([]invoker.BatchItem, 8)
	for i := range items {
		items[i] = invoker.BatchItem{Workflow: "echo", Params: map[string]any{"i": i}, IdempotencyKey: fmt.Sprintf("%s%d", prefix, i)}
	}
	results, err := m.ExecuteBatch(ctx, items, 0, invoker.WithPacking(pack.Options{MaxItems: 4}))
	if err != nil {
		t.Fatal(err)
	}
	packKeys := map[string]bool{}
	for p := 0; p < 2; p++ {
		its := make([]pack.Item, 4)
		for j := range its {
			its[j] = pack.Item{Key: items[p*4+j].IdempotencyKey}
		}
		_, k := pack.Body(its)
		packKeys[k] = true
	}
	for i, r := range results {
		var ie *invocation.Error
		if !errors.As(r.Err, &ie) || ie.Code != invocation.CodeInvalidAnswer || ie.Key != items[i].IdempotencyKey || ie.ExecutionID == "" {
			t.Errorf("item %d: %v (%+v)", i, r.Err, ie)
		}
	}
	wfID := n8n.WorkflowID(t, "n8n-invoker echo")
	execs := executionsOf(ctx, t, n8n, wfID, 2, func(k string) bool { return packKeys[k] || len(k) > len(prefix) && k[:len(prefix)] == prefix })
	total := 0
	for k, es := range execs {
		total += len(es)
		if !packKeys[k] || len(es) != 1 {
			t.Errorf("key %s: %d executions, want 1 per pack key", k, len(es))
		}
	}
	t.Logf("8 items in packs of 4 against the echo workflow: %d executions (%d pack keys)", total, len(packKeys))
	if total != 2 {
		t.Errorf("%d executions, want 2 (one per pack)", total)
	}
}
