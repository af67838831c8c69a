package invoker_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/hooks"
	"github.com/n8n-invoker/n8n-invoker/invocation"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeInvoker answers from a function and records the peak concurrency.
type fakeInvoker struct {
	fn        func(ctx context.Context, req *invocation.Request) (*invocation.Result, error)
	now, peak atomic.Int64
	mu        sync.Mutex
	seen      []invocation.Request
}

func (f *fakeInvoker) Attempt(ctx context.Context, a *invocation.Attempt) (*invocation.Result, error) {
	req := a.Request
	n := f.now.Add(1)
	defer f.now.Add(-1)
	for p := f.peak.Load(); n > p && !f.peak.CompareAndSwap(p, n); p = f.peak.Load() {
	}
	f.mu.Lock()
	f.seen = append(f.seen, *req)
	f.mu.Unlock()
	return f.fn(ctx, req)
}

func okResult(_ context.Context, req *invocation.Request) (*invocation.Result, error) {
	return &invocation.Result{Workflow: req.Workflow, RequestID: req.RequestID, StatusCode: 200, Attempts: 1}, nil
}

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte("n8n: {base_url: 'http://127.0.0.1:1'}\nworkflows: {w: {path: w}}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func newManager(t *testing.T, f *fakeInvoker, opts ...invoker.Option) *invoker.Manager {
	t.Helper()
	m, err := invoker.New(testConfig(t), append([]invoker.Option{invoker.WithTransport(f)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func TestHooksOrderAndParams(t *testing.T) {
	t.Parallel()
	f := &fakeInvoker{fn: okResult}
	m := newManager(t, f)
	var calls []string
	var mu sync.Mutex
	rec := func(name string) hooks.Func {
		return func(_ context.Context, ec *hooks.ExecutionContext) error {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, name)
			if name == "pre1" {
				ec.Params["added"] = true
			}
			return nil
		}
	}
	for _, h := range []struct {
		stage hooks.Stage
		name  string
	}{{hooks.StagePreExecution, "pre1"}, {hooks.StagePreExecution, "pre2"}, {hooks.StagePostExecution, "post"}, {hooks.StageError, "err"}} {
		if err := m.RegisterHook(h.stage, rec(h.name)); err != nil {
			t.Fatal(err)
		}
	}
	params := map[string]any{"a": 1}
	res, err := m.ExecuteWorkflow(t.Context(), "w", params)
	if err != nil {
		t.Fatal(err)
	}
	if len(params) != 1 {
		t.Errorf("a hook changed the caller's map: %v", params)
	}
	if strings.Join(calls, ",") != "pre1,pre2,post" {
		t.Errorf("calls = %v", calls)
	}
	if f.seen[0].Params["added"] != true || f.seen[0].RequestID == "" || f.seen[0].IdempotencyKey != f.seen[0].RequestID || res.RequestID != f.seen[0].RequestID {
		t.Errorf("request = %+v", f.seen[0])
	}
	if err := m.RegisterHook("during", rec("x")); err == nil {
		t.Error("unknown stage accepted")
	}
}

type vetoHook struct {
	hooks.Base
	err   error
	panic bool
}

func (v vetoHook) PreExecution(context.Context, *hooks.ExecutionContext) error {
	if v.panic {
		panic("hook bug")
	}
	return v.err
}

type panicPost struct{ hooks.Base }

func (panicPost) PostExecution(context.Context, *hooks.ExecutionContext) { panic("post bug") }

func TestPreHookVetoAndPanics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		hook hooks.Hook
		msg  string
	}{
		{"veto", vetoHook{err: errors.New("not today")}, "not today"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeInvoker{fn: okResult}
			m := newManager(t, f)
			_ = m.RegisterHook(hooks.StagePreExecution, tt.hook)
			var errHook atomic.Bool
			_ = m.RegisterHook(hooks.StageError, hooks.Func(func(context.Context, *hooks.ExecutionContext) error { errHook.Store(true); return nil }))
			_, err := m.ExecuteWorkflow(t.Context(), "w", nil)
			if invocation.CodeOf(err) != invocation.CodeVetoed || !strings.Contains(err.Error(), tt.msg) || invocation.ClassOf(err) != invocation.Permanent {
				t.Fatalf("err = %v", err)
			}
			if len(f.seen) != 0 || !errHook.Load() {
				t.Errorf("vetoed call made (%d) or error hook not run", len(f.seen))
			}
		})
	}
	t.Run("pre panic isolated", func(t *testing.T) {
		t.Parallel()
		f := &fakeInvoker{fn: okResult}
		m := newManager(t, f)
		_ = m.RegisterHook(hooks.StagePreExecution, vetoHook{panic: true})
		if _, err := m.ExecuteWorkflow(t.Context(), "w", nil); err != nil || len(f.seen) != 1 {
			t.Fatalf("a panicking pre hook broke the execution: %v", err)
		}
	})
	t.Run("post panic isolated", func(t *testing.T) {
		t.Parallel()
		m := newManager(t, &fakeInvoker{fn: okResult})
		_ = m.RegisterHook(hooks.StagePostExecution, panicPost{})
		if _, err := m.ExecuteWorkflow(t.Context(), "w", nil); err != nil {
			t.Fatalf("a panicking post hook broke the execution: %v", err)
		}
	})
}

func TestErrorHooksSkipCancellation(t *testing.T) {
	t.Parallel()
	m := newManager(t, &fakeInvoker{fn: func(ctx context.Context, _ *invocation.Request) (*invocation.Result, error) {
		return nil, context.Canceled
	}})
	var called atomic.Bool
	_ = m.RegisterHook(hooks.StageError, hooks.Func(func(context.Context, *hooks.ExecutionContext) error { called.Store(true); return nil }))
	if _, err := m.ExecuteWorkflow(t.Context(), "w", nil); !invocation.IsCanceled(err) || called.Load() {
		t.Errorf("err %v, error hook called %v", err, called.Load())
	}
}

func TestExecuteBatchOrderAndBound(t *testing.T) {
	t.Parallel()
	f := &fakeInvoker{fn: func(_ context.Context, req *invocation.Request) (*invocation.Result, error) {
		time.Sleep(time.Millisecond)
		if req.Params["fail"] == true {
			return nil, &invocation.HTTPError{Workflow: req.Workflow, StatusCode: 500, WorkflowFailed: true, ErrClass: invocation.Permanent, Attempts: 1, Message: "Error in workflow"}
		}
		return &invocation.Result{Workflow: req.Workflow, Output: []byte(`"` + req.Params["tag"].(string) + `"`)}, nil
	}}
	m := newManager(t, f)
	items := make([]invoker.BatchItem, 40)
	for i := range items {
		items[i] = invoker.BatchItem{Workflow: "w", Params: map[string]any{"tag": string(rune('A' + i%26)), "fail": i%7 == 3}}
	}
	results, err := m.ExecuteBatch(t.Context(), items, 4)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		switch {
		case r.Index != i:
			t.Errorf("result %d has index %d", i, r.Index)
		case i%7 == 3:
			if !errors.Is(r.Err, invocation.ErrWorkflowFailed) {
				t.Errorf("item %d: %v", i, r.Err)
			}
		case r.Err != nil || string(r.Result.Output) != `"`+string(rune('A'+i%26))+`"`:
			t.Errorf("item %d: %v %v", i, r.Result, r.Err)
		}
	}
	if p := f.peak.Load(); p > 4 {
		t.Errorf("peak concurrency %d > 4", p)
	}
	if _, err := m.ExecuteBatch(t.Context(), items, -1); err == nil {
		t.Error("negative concurrency accepted")
	}
}

func TestExecuteBatchCancelAccountsForEveryItem(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	var started atomic.Int64
	f := &fakeInvoker{fn: func(c context.Context, req *invocation.Request) (*invocation.Result, error) {
		if started.Add(1) == 3 {
			cancel()
		}
		<-c.Done()
		return nil, c.Err()
	}}
	m := newManager(t, f)
	items := make([]invoker.BatchItem, 50)
	for i := range items {
		items[i] = invoker.BatchItem{Workflow: "w"}
	}
	results, err := m.ExecuteBatch(ctx, items, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 50 {
		t.Fatalf("%d results", len(results))
	}
	for i, r := range results {
		if r.Result != nil || !invocation.IsCanceled(r.Err) || r.Index != i {
			t.Errorf("item %d: %+v", i, r)
		}
	}
	if started.Load() != 3 {
		t.Errorf("%d items started after cancel, want 3", started.Load())
	}
}

func TestCloseWaitsAndRefuses(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	entered := make(chan struct{})
	f := &fakeInvoker{fn: func(ctx context.Context, req *invocation.Request) (*invocation.Result, error) {
		close(entered)
		<-release
		return okResult(ctx, req)
	}}
	m, err := invoker.New(testConfig(t), invoker.WithTransport(f))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := m.ExecuteWorkflow(context.Background(), "w", nil); done <- err }()
	<-entered
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := m.Close(short); err == nil {
		t.Error("Close returned while work was in flight")
	}
	if _, err := m.ExecuteWorkflow(context.Background(), "w", nil); !errors.Is(err, invocation.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("in-flight call: %v", err)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestFromConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown hook", "n8n: {base_url: 'http://x'}\nhooks:\n  error:\n    - logging_hook\n    - pager_hook\n", "hook.yaml:5:7: hooks.error[1]: unknown hook \"pager_hook\""},
		{"bad value", "n8n:\n  base_url: http://x\n  timeout: -3\n", "hook.yaml:3:3: n8n.timeout: must be positive"},
	}
	for _, tt := range tests {
		p := write("hook.yaml", tt.yaml)
		_, err := invoker.FromConfig(p)
		var ce *config.Error
		if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), filepath.Join(dir, tt.want)) {
			t.Errorf("%s: err = %v, want %s", tt.name, err, tt.want)
		}
	}
	if _, err := invoker.FromConfig(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }
