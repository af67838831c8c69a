package invoker_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/invocation"
)

func dlqManager(t *testing.T, f *fakeInvoker, on ...string) (*invoker.Manager, *dlq.SQLite) {
	t.Helper()
	cfg := testConfig(t)
	cfg.DLQ = config.DLQ{Enabled: true, On: on}
	cfg.Store.Path = filepath.Join(t.TempDir(), "dlq.db")
	// The fakes answer for a whole invocation, retries included (an
	// error of 4 attempts): the pipeline adds none. The
	// retry loop's own tests (package pipeline) and the chaos tests run
	// with the default retries.
	cfg.Invokers.HTTP.MaxRetries = 0
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m, err := invoker.New(cfg, invoker.WithTransport(f))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m, m.DLQ().(*dlq.SQLite)
}

func TestDeadLetterAndReplay(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	down.Store(true)
	f := &fakeInvoker{fn: func(ctx context.Context, req *invocation.Request) (*invocation.Result, error) {
		if down.Load() {
			return nil, &invocation.Error{Code: invocation.CodeUnavailable, Workflow: req.Workflow, Attempts: 4, Message: "gave up after 4 attempts",
				Err: &invocation.HTTPError{StatusCode: 503, ErrClass: invocation.Transient, Attempts: 4}}
		}
		return okResult(ctx, req)
	}}
	m, store := dlqManager(t, f)
	ctx := t.Context()
	results, _ := m.ExecuteBatch(ctx, []invoker.BatchItem{
		{Workflow: "w", Params: map[string]any{"i": 0}, IdempotencyKey: "key-0"},
		{Workflow: "w", Params: map[string]any{"i": 1}, IdempotencyKey: "key-1"},
	}, 2)
	for i, r := range results {
		if invocation.DeadLetterOf(r.Err) == 0 || invocation.ClassOf(r.Err) != invocation.Transient || invocation.AttemptsOf(r.Err) != 4 {
			t.Fatalf("item %d: %v", i, r.Err)
		}
	}
	entries, _ := store.List(ctx, dlq.Filter{})
	if len(entries) != 2 || entries[0].Reason != "exhausted" || entries[0].Attempts != 4 || string(entries[0].Params) == "" {
		t.Fatalf("entries %+v", entries)
	}

	// Still down: a replay fails and updates the entries.
	rep, err := m.ReplayDeadLetters(ctx, dlq.Filter{})
	if err != nil || rep.Failed != 2 {
		t.Fatalf("replay while down: %+v %v", rep, err)
	}
	e, _ := store.Get(ctx, entries[0].ID)
	if e.Replays != 1 || e.Attempts != 8 {
		t.Errorf("after failed replay: %+v", e)
	}
	if n, _ := store.Count(ctx); n != 2 {
		t.Errorf("a failed replay added entries: %d", n)
	}

	// Up: the replay succeeds with the same key and params, and empties the queue.
	down.Store(false)
	before := len(f.seen)
	rep, err = m.ReplayDeadLetters(ctx, dlq.Filter{})
	if err != nil || rep.Succeeded != 2 {
		t.Fatalf("replay: %+v %v", rep, err)
	}
	for _, req := range f.seen[before:] {
		if req.IdempotencyKey != "key-0" && req.IdempotencyKey != "key-1" || req.Body == nil {
			t.Errorf("replayed request %+v", req)
		}
	}
	if n, _ := store.Count(ctx); n != 0 {
		t.Errorf("%d entries left", n)
	}
	// The keys are now recorded: submitting one again does not call n8n.
	before = len(f.seen)
	res, err := m.Execute(ctx, &invocation.Request{Workflow: "w", Params: map[string]any{"i": 0}, IdempotencyKey: "key-0"})
	if err != nil || !res.Deduplicated || len(f.seen) != before {
		t.Errorf("repeated key: %+v %v, %d calls", res, err, len(f.seen)-before)
	}
}

func TestDeadLetterClasses(t *testing.T) {
	t.Parallel()
	permanent := &invocation.HTTPError{StatusCode: 500, WorkflowFailed: true, ErrClass: invocation.Permanent, Attempts: 1, Message: "Error in workflow"}
	f := &fakeInvoker{fn: func(context.Context, *invocation.Request) (*invocation.Result, error) { return nil, permanent }}
	m, store := dlqManager(t, f)
	_, err := m.ExecuteWorkflow(t.Context(), "w", nil)
	if errors.Is(err, invocation.ErrDeadLettered) {
		t.Error("a permanent failure went to the queue by default")
	}
	if n, _ := store.Count(t.Context()); n != 0 {
		t.Errorf("%d entries", n)
	}
	m2, store2 := dlqManager(t, f, "permanent")
	_, err = m2.ExecuteWorkflow(t.Context(), "w", nil)
	if !errors.Is(err, invocation.ErrDeadLettered) || !errors.Is(err, invocation.ErrWorkflowFailed) {
		t.Errorf("with on: [permanent]: %v", err)
	}
	if l, _ := store2.List(t.Context(), dlq.Filter{}); len(l) != 1 || l[0].Reason != "failed" {
		t.Errorf("entries %+v", l)
	}
	// A canceled call is not dead-lettered and leaves nothing in flight.
	fc := &fakeInvoker{fn: func(ctx context.Context, _ *invocation.Request) (*invocation.Result, error) {
		return nil, context.Canceled
	}}
	m3, store3 := dlqManager(t, fc)
	if _, err := m3.ExecuteWorkflow(t.Context(), "w", nil); !invocation.IsCanceled(err) {
		t.Errorf("canceled: %v", err)
	}
	if n, _ := store3.Count(t.Context()); n != 0 {
		t.Errorf("canceled call stored: %d", n)
	}
}

func TestDLQConfigErrorAtStart(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	dir := t.TempDir()
	cfg.DLQ = config.DLQ{Enabled: true}
	cfg.Store.Path = filepath.Join(dir, "not-a-dir", "x.db")
	_ = writeFile(filepath.Join(dir, "not-a-dir"), "file")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := invoker.New(cfg, invoker.WithTransport(&fakeInvoker{fn: okResult})); err == nil {
		t.Error("an unusable DLQ path was accepted at start")
	}
}

// BenchmarkReplay measures ReplayDeadLetters against a local stub:
// entries replayed (and removed) per second, journal writes included.
func BenchmarkReplay(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	cfg, err := config.Parse([]byte(fmt.Sprintf("n8n: {base_url: %q}\nworkflows: {w: {path: w}}\ndlq: {enabled: true}\nstore: {path: %q}\n",
		srv.URL, filepath.Join(b.TempDir(), "dlq.db"))), "b.yaml")
	if err != nil {
		b.Fatal(err)
	}
	m, err := invoker.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(context.Background())
	store := m.DLQ()
	ctx := context.Background()
	const batch = 100
	replayed := 0
	for b.Loop() {
		b.StopTimer()
		for i := range batch {
			_, _ = store.Put(ctx, &dlq.Entry{Workflow: "w", IdempotencyKey: fmt.Sprintf("k-%d-%d", replayed, i), Params: []byte(`{"a":1}`)})
		}
		b.StartTimer()
		rep, err := m.ReplayDeadLetters(ctx, dlq.Filter{})
		if err != nil || rep.Succeeded != batch {
			b.Fatalf("%+v %v", rep, err)
		}
		replayed += batch
	}
	b.ReportMetric(float64(replayed)/b.Elapsed().Seconds(), "replays/s")
}

// TestReplayDoesNoHarm: replaying ids the queue does not hold fails and
// replays nothing; an entry whose workflow ran and failed is skipped
// unless asked for; an entry another replay holds is skipped.
func TestReplayDoesNoHarm(t *testing.T) {
	t.Parallel()
	var sent atomic.Int32
	f := &fakeInvoker{fn: func(ctx context.Context, req *invocation.Request) (*invocation.Result, error) {
		sent.Add(1)
		return okResult(ctx, req)
	}}
	m, store := dlqManager(t, f)
	ctx := t.Context()
	failed, _ := store.Put(ctx, &dlq.Entry{Workflow: "w", IdempotencyKey: "k-failed", Reason: "failed", Attempts: 1,
		LastError: dlq.ErrorInfo{Class: "permanent", Message: "Error in workflow"}})
	held, _ := store.Put(ctx, &dlq.Entry{Workflow: "w", IdempotencyKey: "k-held", Reason: "exhausted", Attempts: 4})
	free, _ := store.Put(ctx, &dlq.Entry{Workflow: "w", IdempotencyKey: "k-free", Reason: "exhausted", Attempts: 4})
	if _, err := m.ReplayDeadLetters(ctx, dlq.Filter{IDs: []int64{free, 999}}); err == nil || !strings.Contains(err.Error(), "999") || sent.Load() != 0 {
		t.Fatalf("missing id: %v, %d sent", err, sent.Load())
	}
	if ok, err := store.Claim(ctx, held, "another-process", time.Minute); !ok || err != nil {
		t.Fatalf("claim: %v %v", ok, err)
	}
	rep, err := m.ReplayDeadLetters(ctx, dlq.Filter{})
	if err != nil || rep.Selected != 3 || rep.Succeeded != 1 || rep.Skipped != 2 || sent.Load() != 1 {
		t.Fatalf("replay: %+v %v, %d sent", rep, err, sent.Load())
	}
	rep, err = m.ReplayDeadLetters(ctx, dlq.Filter{IDs: []int64{failed}}, invoker.ReplayFailed())
	if err != nil || rep.Succeeded != 1 || sent.Load() != 2 {
		t.Fatalf("replay of a failed entry, asked for: %+v %v", rep, err)
	}
}
