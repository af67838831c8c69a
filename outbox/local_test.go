package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/internal/n8ntest"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
	"github.com/n8n-invoker/n8n-invoker/outbox"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"))
}

// manager returns a manager with the defaults on a SQLite store at path,
// its journal on.
func manager(t *testing.T, cfg *config.Config, path string) *invoker.Manager {
	t.Helper()
	cfg.DLQ.Enabled = true
	cfg.Store = config.Store{Path: path}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m, err := invoker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func open(t *testing.T, m *invoker.Manager, o outbox.Options) outbox.Queue {
	t.Helper()
	q, err := outbox.Open(t.Context(), m, &o)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = q.Stop(ctx)
	})
	return q
}

// stub is an n8n webhook that counts the calls per idempotency key.
type stub struct {
	mu    sync.Mutex
	calls map[string]int
	srv   *httptest.Server
	block chan struct{} // when set, calls wait on it
}

func newStub(t *testing.T) *stub {
	s := &stub{calls: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.calls[r.Header.Get("Idempotency-Key")]++
		block := s.block
		s.mu.Unlock()
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/fail") {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"message":"Error in workflow"}`))
			return
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *stub) count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[key]
}

func (s *stub) config() *config.Config {
	cfg := config.Default()
	cfg.N8N.BaseURL = s.srv.URL
	cfg.Workflows = map[string]config.Workflow{"hook": {Path: "hook"}, "fail": {Path: "fail"}}
	return cfg
}

// On the SQLite default, an enqueued batch is delivered once per key by
// two worker processes' worth of outboxes sharing the file, and every
// invocation ends succeeded with n8n's execution id, counted against
// n8n's own executions.
func TestLocalDeliversOnceAgainstN8N(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	path := filepath.Join(t.TempDir(), "store.db")
	cfg := n8n.Config(t)
	def := config.Default().Invokers.HTTP
	cfg.Invokers.HTTP.MaxRetries, cfg.Invokers.HTTP.BackoffFactor = def.MaxRetries, def.BackoffFactor
	a := manager(t, cfg, path)
	cfg2 := n8n.Config(t)
	cfg2.Invokers.HTTP.MaxRetries, cfg2.Invokers.HTTP.BackoffFactor = def.MaxRetries, def.BackoffFactor
	b := manager(t, cfg2, path)
	qa := open(t, a, outbox.Options{Workers: 3})
	open(t, b, outbox.Options{Workers: 3})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("local-outbox-%d-", time.Now().UnixNano())
	const n = 12
	ids := make([]string, n)
	for i := range n {
		var err error
		if ids[i], err = qa.Enqueue(ctx, &invocation.Request{Workflow: n8ntest.Echo, Params: map[string]any{"i": i}, IdempotencyKey: prefix + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		inv, err := qa.Await(ctx, id)
		if err != nil || inv.Status != outbox.Succeeded || inv.Result == nil || inv.Result.ExecutionID == "" {
			t.Fatalf("invocation %s: %+v, %v", id, inv, err)
		}
	}
	wfID := n8n.WorkflowID(t, "n8n-invoker echo")
	var got map[string][]*n8napi.Execution
	for range 20 {
		got = n8n.ExecutionsByHeader(ctx, t, wfID, "idempotency-key", func(k string) bool { return strings.HasPrefix(k, prefix) })
		if len(got) == n {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for i := range n {
		if c := len(got[prefix+strconv.Itoa(i)]); c != 1 {
			t.Errorf("key %d ran %d times in n8n, want 1", i, c)
		}
	}
	list, err := qa.List(ctx, outbox.Filter{Status: outbox.Succeeded, Limit: 100})
	if err != nil || len(list) != n {
		t.Errorf("List(succeeded) = %d, %v; want %d", len(list), err, n)
	}
}

// Enqueue is idempotent by key; a key with another body is a conflict;
// an unknown workflow and a malformed body are refused; none of them
// stores anything.
func TestLocalEnqueueChecks(t *testing.T) {
	t.Parallel()
	s := newStub(t)
	m := manager(t, s.config(), filepath.Join(t.TempDir(), "store.db"))
	q := open(t, m, outbox.Options{Workers: -1})
	ctx := t.Context()
	id, err := q.Enqueue(ctx, &invocation.Request{Workflow: "hook", Params: map[string]any{"a": 1}, IdempotencyKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		req     *invocation.Request
		same    bool
		wantErr func(error) bool
	}{
		{"same key, same body", &invocation.Request{Workflow: "hook", Body: []byte(`{ "a": 1 }`), IdempotencyKey: "k"}, true, nil},
		{"same key, other body", &invocation.Request{Workflow: "hook", Params: map[string]any{"a": 2}, IdempotencyKey: "k"}, false,
			func(err error) bool {
				return invocation.CodeOf(err) == invocation.CodeKeyConflict && strings.Contains(err.Error(), id)
			}},
		{"same key, other path params", &invocation.Request{Workflow: "hook", Params: map[string]any{"a": 1}, PathParams: map[string]string{"x": "1"}, IdempotencyKey: "k"}, false,
			func(err error) bool { return errors.Is(err, invocation.ErrKeyConflict) }},
		{"unknown workflow", &invocation.Request{Workflow: "nope", IdempotencyKey: "k2"}, false,
			func(err error) bool { return errors.Is(err, invocation.ErrUnknownWorkflow) }},
		{"malformed body", &invocation.Request{Workflow: "hook", Body: []byte(`{"a":`), IdempotencyKey: "k3"}, false,
			func(err error) bool { return errors.Is(err, outbox.ErrInvalid) }},
		{"no workflow", &invocation.Request{IdempotencyKey: "k4"}, false, func(err error) bool { return errors.Is(err, outbox.ErrInvalid) }},
	}
	for _, tt := range tests {
		got, err := q.Enqueue(ctx, tt.req)
		switch {
		case tt.same && (err != nil || got != id):
			t.Errorf("%s: %q, %v; want %q", tt.name, got, err, id)
		case !tt.same && !tt.wantErr(err):
			t.Errorf("%s: %q, %v", tt.name, got, err)
		}
	}
	list, err := q.List(ctx, outbox.Filter{})
	if err != nil || len(list) != 1 || list[0].Status != outbox.Queued {
		t.Errorf("stored: %v, %v; want the one queued invocation", list, err)
	}
	if _, err := q.Get(ctx, "inv_nope"); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("Get of an unknown id: %v", err)
	}
	if s.count("k") != 0 {
		t.Error("a process without workers delivered")
	}
}

// What a process without workers enqueued survives its restart and is
// delivered by the next one's workers; a claim a dead worker left is
// claimed again once its lease ends, and delivered once.
func TestLocalSurvivesRestartAndDeadWorker(t *testing.T) {
	t.Parallel()
	s := newStub(t)
	path := filepath.Join(t.TempDir(), "store.db")
	cfg := s.config()
	cfg.Store.Lease = config.Duration(time.Second)
	m1 := manager(t, cfg, path)
	q1, err := outbox.Open(t.Context(), m1, &outbox.Options{Workers: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	id, err := q1.Enqueue(ctx, &invocation.Request{Workflow: "hook", IdempotencyKey: "restart"})
	if err != nil {
		t.Fatal(err)
	}
	dead, err := q1.Enqueue(ctx, &invocation.Request{Workflow: "hook", IdempotencyKey: "dead-worker"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// A worker claims the second and dies: its claim ends in a second.
	st, err := dlq.Open(ctx, path, dlq.Options{})
	if err != nil {
		t.Fatal(err)
	}
	claimed, err := st.ClaimSubmission(ctx, "a dead worker", time.Second)
	if err != nil || claimed == nil {
		t.Fatalf("claim: %v, %v", claimed, err)
	}
	_ = st.Close()

	cfg2 := s.config()
	cfg2.Store.Lease = config.Duration(time.Second)
	m2 := manager(t, cfg2, path)
	q2 := open(t, m2, outbox.Options{Workers: 2, Poll: 50 * time.Millisecond})
	for _, want := range []string{id, dead} {
		inv, err := q2.Await(ctx, want)
		if err != nil || inv.Status != outbox.Succeeded {
			t.Fatalf("%s: %+v, %v", want, inv, err)
		}
	}
	if s.count("restart") != 1 || s.count("dead-worker") != 1 {
		t.Errorf("deliveries: restart %d, dead-worker %d; want 1 each", s.count("restart"), s.count("dead-worker"))
	}
	inv, _ := q2.Get(ctx, claimed.ID)
	if inv.Deliveries != 2 {
		t.Errorf("the dead worker's invocation: %d deliveries, want 2 (the dead one and this)", inv.Deliveries)
	}
}

// Stop lets deliveries in flight finish; one that does not finish in time
// is cut short and given back to the queue, its key kept in the journal.
func TestLocalStopGivesBack(t *testing.T) {
	t.Parallel()
	s := newStub(t)
	s.block = make(chan struct{})
	m := manager(t, s.config(), filepath.Join(t.TempDir(), "store.db"))
	q, err := outbox.Open(t.Context(), m, &outbox.Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	id, err := q.Enqueue(t.Context(), &invocation.Request{Workflow: "hook", IdempotencyKey: "stopped"})
	if err != nil {
		t.Fatal(err)
	}
	for s.count("stopped") == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := q.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop with a delivery in flight: %v, want the deadline", err)
	}
	inv, err := q.Get(t.Context(), id)
	if err != nil || inv.Status != outbox.Queued || inv.Deliveries != 1 {
		t.Errorf("after Stop: %+v, %v; want queued after one delivery", inv, err)
	}
	in, err := m.DLQ().(dlq.Journal).Inflight(t.Context(), dlq.InflightFilter{Key: "stopped"})
	if err != nil || len(in) != 1 {
		t.Errorf("journal: %v, %v; want the key in flight (the next delivery reconciles it)", in, err)
	}
	close(s.block)
}

// Open needs the journal.
func TestOpenNeedsJournal(t *testing.T) {
	t.Parallel()
	s := newStub(t)
	cfg := s.config()
	cfg.Store = config.Store{Path: filepath.Join(t.TempDir(), "store.db")}
	m, err := invoker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	if _, err := outbox.Open(t.Context(), m, nil); err == nil {
		t.Error("Open without dlq.enabled succeeded")
	}
}

// A workflow that fails is delivered once and ends recorded as failed or
// dead-lettered (the pipeline retried; the queue does not deliver again).
func TestLocalFailedDeliveryIsRecorded(t *testing.T) {
	t.Parallel()
	s := newStub(t)
	cfg := s.config()
	cfg.DLQ.On = []string{"transient", "unknown", "permanent"}
	m := manager(t, cfg, filepath.Join(t.TempDir(), "store.db"))
	q := open(t, m, outbox.Options{Workers: 2})
	id, err := q.Enqueue(t.Context(), &invocation.Request{Workflow: "fail", IdempotencyKey: "f"})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := q.Await(t.Context(), id)
	if err != nil || inv.Status != outbox.DeadLettered || inv.DeadLetter == 0 || inv.Deliveries != 1 || inv.Class != "permanent" {
		t.Errorf("a failing workflow: %+v, %v; want dead-lettered after one delivery", inv, err)
	}
}
