package sim_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/dlq/dlqtest"
	"github.com/n8n-invoker/n8n-invoker/internal/sim"
)

// TestStoreConformance: the in-memory model keeps the journal contract
// as SQLite and PostgreSQL do, by the same operation sequences; and so
// does a live process's Handle on it.
func TestStoreConformance(t *testing.T) {
	t.Parallel()
	t.Run("Store", func(t *testing.T) {
		t.Parallel()
		var mu sync.Mutex // the parallel subtests open their stores at once
		var last *sim.Store
		dlqtest.Run(t, func(t *testing.T) dlq.Backend {
			mu.Lock()
			defer mu.Unlock()
			last = sim.NewStore()
			return last
		}, dlqtest.Options{Reopen: func(t *testing.T) dlq.Backend {
			mu.Lock()
			defer mu.Unlock()
			return last.Handle(sim.NewProc("other"))
		}})
	})
	t.Run("Handle", func(t *testing.T) {
		t.Parallel()
		dlqtest.Run(t, func(t *testing.T) dlq.Backend { return sim.NewStore().Handle(sim.NewProc("p")) }, dlqtest.Options{})
	})
}

// TestHandleCrash: a crashed process's store operations are refused; the
// one that crashes it may be applied and still reported failed.
func TestHandleCrash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, applied := range []bool{false, true} {
		s := sim.NewStore()
		p := sim.NewProc("p")
		h := s.Handle(p)
		l, _, err := h.Begin(ctx, &dlq.Inflight{IdempotencyKey: "k", Workflow: "w"}, "p", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		p.CrashAtStoreOp(1, applied)
		if err := h.Complete(ctx, l, json.RawMessage(`{}`)); !errors.Is(err, sim.ErrCrashed) {
			t.Fatalf("the crashing Complete: %v", err)
		}
		if _, ok, _ := s.Completed(ctx, "k"); ok != applied {
			t.Errorf("applied %v: recorded %v", applied, ok)
		}
		if _, _, err := h.Completed(ctx, "k"); !errors.Is(err, sim.ErrCrashed) || !p.Crashed() {
			t.Errorf("after the crash: %v", err)
		}
	}
}
