package outbox_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/contrib/postgres"
	"github.com/n8n-invoker/n8n-invoker/contrib/postgres/outbox"
	"github.com/n8n-invoker/n8n-invoker/internal/n8ntest"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	ob "github.com/n8n-invoker/n8n-invoker/outbox"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// setup returns a manager on a fresh schema of the test database, with
// the defaults (retries, breaker, journal, reconcile) against the real
// n8n, and an outbox delivering through it.
func setup(t *testing.T, workers int) (*outbox.Outbox, *postgres.Store, *n8ntest.Instance) {
	t.Helper()
	return setupWith(t, ob.Options{Workers: workers})
}

// setupWith is setup with the outbox's options.
func setupWith(t *testing.T, opts ob.Options) (*outbox.Outbox, *postgres.Store, *n8ntest.Instance) {
	t.Helper()
	n8n := n8ntest.Require(t)
	dsn := os.Getenv("N8N_INVOKER_PG_DSN")
	if dsn == "" {
		t.Fatal("N8N_INVOKER_PG_DSN is not set: run scripts/cluster db and source .cluster/env (make test does)")
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "t_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		pool, err := pgxpool.New(context.Background(), dsn)
		if err == nil {
			_, _ = pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
			pool.Close()
		}
	})
	cfg := n8n.Config(t)
	def := config.Default().Invokers.HTTP
	cfg.Invokers.HTTP.MaxRetries, cfg.Invokers.HTTP.BackoffFactor = def.MaxRetries, def.BackoffFactor
	cfg.DLQ.Enabled = true
	cfg.Store = config.Store{Backend: postgres.Backend, DSN: secret.New(dsn), Schema: schema}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m, err := invoker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	store := m.DLQ().(*postgres.Store)
	// outbox.Open picks this engine for the PostgreSQL store.
	if q, err := ob.Open(t.Context(), m, &ob.Options{Workers: -1}); err != nil {
		t.Fatal(err)
	} else if _, ok := q.(*outbox.Outbox); !ok {
		t.Fatalf("outbox.Open on the PostgreSQL store: %T", q)
	}
	o, err := outbox.New(t.Context(), store, m, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = o.Stop(ctx)
	})
	return o, store, n8n
}

// A service writes its own row and enqueues the trigger in one
// transaction: rolled back, neither is there and n8n never runs it;
// committed, it is delivered once, and enqueueing the key again returns
// the same invocation.
func TestEnqueueTx(t *testing.T) {
	t.Parallel()
	o, store, n8n := setup(t, 4)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if _, err := store.Pool().Exec(ctx, "CREATE TABLE "+store.Schema()+".orders (id text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("outbox-%d-", time.Now().UnixNano())
	inTx := func(key string, commit bool) string {
		tx, err := store.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if _, err := tx.Exec(ctx, "INSERT INTO "+store.Schema()+".orders VALUES ($1)", key); err != nil {
			t.Fatal(err)
		}
		id, err := o.EnqueueTx(ctx, tx, &invocation.Request{Workflow: n8ntest.Echo, Params: map[string]any{"order": key}, IdempotencyKey: key})
		if err != nil {
			t.Fatal(err)
		}
		if commit {
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return id
	}

	rolledBack := inTx(prefix+"rolled-back", false)
	if _, err := o.Get(ctx, rolledBack); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("a rolled-back enqueue is stored: %v", err)
	}
	var jobs int
	if err := store.Pool().QueryRow(ctx, "SELECT count(*) FROM "+store.Schema()+".river_job").Scan(&jobs); err != nil || jobs != 0 {
		t.Errorf("River has %d jobs after the rollback (%v)", jobs, err)
	}

	committed := inTx(prefix+"committed", true)
	inv, err := o.Await(ctx, committed)
	if err != nil || inv.Status != outbox.Succeeded || inv.Result == nil || inv.Result.ExecutionID == "" {
		t.Fatalf("committed invocation: %+v, %v", inv, err)
	}
	again, err := o.Enqueue(ctx, &invocation.Request{Workflow: n8ntest.Echo, Params: map[string]any{"order": prefix + "committed"}, IdempotencyKey: prefix + "committed"})
	if err != nil || again != committed {
		t.Errorf("enqueueing the key again: %q, %v; want %q", again, err, committed)
	}
	if _, err := o.Enqueue(ctx, &invocation.Request{Workflow: n8ntest.Echo, Params: map[string]any{"order": "other"}, IdempotencyKey: prefix + "committed"}); invocation.CodeOf(err) != invocation.CodeKeyConflict {
		t.Errorf("the key with other parameters: %v, want a key conflict", err)
	}

	wfID := n8n.WorkflowID(t, "n8n-invoker echo")
	var execs int
	for range 20 {
		got := n8n.ExecutionsByHeader(ctx, t, wfID, "idempotency-key", func(k string) bool { return k == prefix+"committed" || k == prefix+"rolled-back" })
		if execs = len(got[prefix+"committed"]); execs == 1 && len(got[prefix+"rolled-back"]) == 0 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if execs != 1 {
		t.Errorf("n8n ran the committed invocation %d times, want 1", execs)
	}
	t.Logf("outbox: rolled back: not stored, no job, not run; committed: %s in execution %s, run once in n8n; the same key again: the same id", inv.Status, inv.Result.ExecutionID)
}

// A workflow that fails ends its invocation recorded as dead-lettered
// (the pipeline retried; River does not), and Get says so.
func TestFailedDeliveryIsRecorded(t *testing.T) {
	t.Parallel()
	o, _, _ := setup(t, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	id, err := o.Enqueue(ctx, &invocation.Request{Workflow: n8ntest.Missing})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := o.Await(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Status != outbox.Failed && inv.Status != outbox.DeadLettered || inv.Error == "" {
		t.Errorf("an unknown webhook: %+v", inv)
	}
	list, err := o.List(ctx, ob.Filter{Status: inv.Status, Limit: 10})
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Errorf("List(%s) = %v, %v", inv.Status, list, err)
	}
}

// TestDeliveryCutIsSnoozedAndCountedByTheOutbox: a delivery cut by the job
// timeout is snoozed (it is no attempt of River's), the outbox counts the
// deliveries itself, and at its bound the invocation ends in a terminal
// state with its job, never left queued behind a job River discarded
// (issue 25, points 9 and 12).
func TestDeliveryCutIsSnoozedAndCountedByTheOutbox(t *testing.T) {
	t.Parallel()
	o, store, n8n := setupWith(t, ob.Options{Workers: 1, JobTimeout: time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	key := fmt.Sprintf("cut-%d", time.Now().UnixNano())
	id, err := o.Enqueue(ctx, &invocation.Request{Workflow: n8ntest.SlowAnswer, IdempotencyKey: key, Params: map[string]any{"delay_ms": 4000}})
	if err != nil {
		t.Fatal(err)
	}
	pool := store.Pool()
	// River's view of the job: its snoozes (metadata) and errored attempts.
	job := func() (snoozes, errored int, state string) {
		if err := pool.QueryRow(ctx, "SELECT coalesce((metadata->>'snoozes')::int, 0), coalesce(array_length(errors, 1), 0), state FROM "+
			store.Schema()+".river_job WHERE args->>'id' = $1", id).Scan(&snoozes, &errored, &state); err != nil {
			t.Fatal(err)
		}
		return
	}
	// The first delivery is cut after a second: snoozed, not an errored
	// attempt.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if snoozes, _, _ := job(); snoozes >= 1 {
			break
		}
		if time.Now().After(deadline) {
			inv, _ := o.Get(ctx, id)
			t.Fatalf("no snooze after a cut delivery: %+v", inv)
		}
	}
	if _, errored, state := job(); errored != 0 {
		t.Errorf("River's job after a cut delivery: %d errored attempts (state %s), want none", errored, state)
	}
	// A long history of cut deliveries: at the bound, the invocation ends.
	if _, err := pool.Exec(ctx, "UPDATE "+store.Schema()+".invocations SET deliveries = $2 WHERE id = $1", id, ob.MaxDeliveries); err != nil {
		t.Fatal(err)
	}
	inv, err := o.Await(ctx, id)
	if err != nil || inv.Status != outbox.Failed || !strings.Contains(inv.Error, "without an end") {
		t.Fatalf("at the bound: %+v, %v", inv, err)
	}
	if _, _, state := job(); state != "completed" {
		t.Errorf("River's job at the bound: %s, want completed with the invocation", state)
	}
	wfID := n8n.WorkflowID(t, "n8n-invoker slow answer")
	time.Sleep(5 * time.Second) // the cut execution runs to its end in n8n
	if execs := n8n.ExecutionsByHeader(ctx, t, wfID, "idempotency-key", func(k string) bool { return k == key }); len(execs[key]) > 1 {
		t.Errorf("n8n ran the key %d times", len(execs[key]))
	}
}
