package invoker_test

import (
	"context"
	"encoding/json"
	"testing"
	"testing/synctest"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/internal/sim"
	"github.com/n8n-invoker/n8n-invoker/invocation"
)

func simManager(t *testing.T, store *sim.Store, n *sim.N8N, name string) *invoker.Manager {
	t.Helper()
	cfg, err := config.Parse([]byte("n8n: {base_url: 'http://n8n.sim'}\nworkflows: {w: {path: w, id: wf1}}\ndlq: {enabled: true}\n"), "sim.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := sim.NewProc(name)
	m, err := invoker.New(cfg, invoker.WithDLQ(store.Handle(p)), invoker.WithTransport(n.Transport(p)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

// TestSimWaiterDoesNotResendAnAmbiguousKey (simulation seeds 73, 134, 4,
// 22, ...): a call of a key another process holds waits; that process's
// call ends ambiguous (its answer lost, no API key: a dead letter); the
// waiting call then must not send the key as a new call. It sent it: it
// had checked the dead letters before waiting.
func TestSimWaiterDoesNotResendAnAmbiguousKey(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		store := sim.NewStore()
		// Every execution runs 40s: past the 30s attempt timeout, the
		// answer is lost.
		n := sim.NewN8N(1, "wf1", sim.Faults{Long: 1, LongMin: 40 * time.Second, LongMax: 41 * time.Second})
		a, b := simManager(t, store, n, "a"), simManager(t, store, n, "b")
		req := func() *invocation.Request {
			return &invocation.Request{Workflow: "w", Params: map[string]any{"x": 1}, IdempotencyKey: "k"}
		}
		done := make(chan error, 1)
		go func() { _, err := a.Execute(context.Background(), req()); done <- err }()
		time.Sleep(5 * time.Second)
		_, err := b.Execute(context.Background(), req())
		if first := <-done; invocation.CodeOf(first) != invocation.CodeAmbiguous {
			t.Fatalf("the first call: %v", first)
		}
		if invocation.CodeOf(err) != invocation.CodeAmbiguous {
			t.Errorf("the waiting call: %v, want code ambiguous", err)
		}
		if es := n.Executions(); len(es) != 1 {
			t.Errorf("%d executions of the key, want 1", len(es))
		}
	})
}

// TestSimRescueEndsSettledRecords (simulation seeds 58 and 66): a key in
// flight under an expired lease whose key already succeeded (a
// write-ahead applied after the success, its process dead before it
// heard), or that a dead letter says may have run (no API key), is ended
// by a rescue; it stayed in flight forever, every rescue refusing it.
func TestSimRescueEndsSettledRecords(t *testing.T) {
	t.Parallel()
	for _, settled := range []string{"succeeded", "ambiguous dead letter"} {
		t.Run(settled, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				store := sim.NewStore()
				n := sim.NewN8N(1, "wf1", sim.Faults{})
				m := simManager(t, store, n, "a")
				params := json.RawMessage(`{"x":1}`)
				if settled == "succeeded" {
					if err := store.Complete(ctx, dlq.Lease{Key: "k"}, json.RawMessage(`{"status":200}`)); err != nil {
						t.Fatal(err)
					}
				} else if _, err := store.Put(ctx, &dlq.Entry{Workflow: "w", IdempotencyKey: "k", Params: params, Reason: dlq.ReasonAmbiguous}); err != nil {
					t.Fatal(err)
				}
				if _, _, err := store.Begin(ctx, &dlq.Inflight{IdempotencyKey: "k", Workflow: "w", Params: params}, "dead", time.Second); err != nil {
					t.Fatal(err)
				}
				time.Sleep(2 * time.Second)
				if _, err := m.Rescue(ctx); err != nil {
					t.Fatal(err)
				}
				if in, _ := store.Inflight(ctx, dlq.InflightFilter{}); len(in) != 0 {
					t.Errorf("still in flight after a rescue: %+v", in[0])
				}
				if es := n.Executions(); len(es) != 0 {
					t.Errorf("the rescue sent it: %d executions", len(es))
				}
			})
		})
	}
}
