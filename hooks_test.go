package invoker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/hooks"
	"github.com/n8n-invoker/n8n-invoker/invocation"
)

type slowHook struct {
	hooks.Base
	d time.Duration
}

func (h slowHook) PreExecution(ctx context.Context, ec *hooks.ExecutionContext) error {
	time.Sleep(h.d)
	ec.Params["late"] = true // too late: must not reach the call
	return nil
}

func TestHookTimeoutIsolated(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		f := &fakeInvoker{fn: okResult}
		m := newManager(t, f, invoker.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		_ = m.RegisterHook(hooks.StagePreExecution, slowHook{d: time.Minute})
		start := time.Now()
		if _, err := m.ExecuteWorkflow(t.Context(), "w", map[string]any{"a": 1}); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Errorf("waited %s for a hung hook, want the 5 s hook timeout", d)
		}
		if _, late := f.seen[0].Params["late"]; late || !strings.Contains(logs.String(), "hook timed out") {
			t.Errorf("params %v; logs %s", f.seen[0].Params, logs.String())
		}
		time.Sleep(time.Minute) // let the hung hook end inside the bubble
	})
}

type recordingPlugin struct {
	hooks.PluginBase
	mu     sync.Mutex
	events []string
}

func (p *recordingPlugin) add(s string) { p.mu.Lock(); p.events = append(p.events, s); p.mu.Unlock() }
func (p *recordingPlugin) OnWorkflowStarted(_ context.Context, ec *hooks.ExecutionContext) {
	p.add("started " + ec.Workflow)
}
func (p *recordingPlugin) OnWorkflowSucceeded(_ context.Context, ec *hooks.ExecutionContext) {
	p.add("succeeded")
}
func (p *recordingPlugin) OnWorkflowFailed(_ context.Context, ec *hooks.ExecutionContext) {
	p.add("failed " + invocation.ClassOf(ec.Err).String())
}

func TestPlugin(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	m := newManager(t, &fakeInvoker{fn: func(ctx context.Context, req *invocation.Request) (*invocation.Result, error) {
		if fail.Load() {
			return nil, &invocation.HTTPError{StatusCode: 400, ErrClass: invocation.Permanent}
		}
		return okResult(ctx, req)
	}})
	p := &recordingPlugin{}
	if err := m.RegisterPlugin(p); err != nil {
		t.Fatal(err)
	}
	_, _ = m.ExecuteWorkflow(t.Context(), "w", nil)
	fail.Store(true)
	_, _ = m.ExecuteWorkflow(t.Context(), "w", nil)
	if got := strings.Join(p.events, ","); got != "started w,succeeded,started w,failed permanent" {
		t.Errorf("events %s", got)
	}
}

func TestNotificationHook(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var bodies []string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
	}))
	defer recv.Close()
	for _, format := range []string{"slack", "json"} {
		cfg, err := config.Parse([]byte(`n8n: {base_url: 'http://127.0.0.1:1'}
workflows: {w: {path: w}}
hooks:
  error: [notification_hook]
  notification: {url: "`+recv.URL+`/hook/T0KEN", format: `+format+`}
`), "n.yaml")
		if err != nil {
			t.Fatal(err)
		}
		m, err := invoker.New(cfg, invoker.WithTransport(&fakeInvoker{fn: func(context.Context, *invocation.Request) (*invocation.Result, error) {
			return nil, &invocation.HTTPError{Workflow: "w", StatusCode: 500, WorkflowFailed: true, ErrClass: invocation.Permanent, Attempts: 1, Message: "Error in workflow"}
		}}))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = m.ExecuteWorkflow(t.Context(), "w", nil)
		_ = m.Close(context.Background())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 2 {
		t.Fatalf("%d notifications", len(bodies))
	}
	var slack struct{ Text string }
	var plain struct {
		Workflow, Class string
		Attempts        int
	}
	if json.Unmarshal([]byte(bodies[0]), &slack) != nil || !strings.Contains(slack.Text, "workflow *w* failed (permanent, 1 attempts") {
		t.Errorf("slack body %s", bodies[0])
	}
	if json.Unmarshal([]byte(bodies[1]), &plain) != nil || plain.Workflow != "w" || plain.Class != "permanent" || plain.Attempts != 1 {
		t.Errorf("json body %s", bodies[1])
	}
}

func TestNamedHookErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ yaml, want string }{
		{"hooks:\n  post_execution:\n    - cleanup_hook\n", "h.yaml:5:7: hooks.post_execution[0]: cleanup_hook deletes executions through n8n's API"},
		{"hooks:\n  pre_execution: [logging_hook, bogus_hook]\n", "h.yaml:4:33: hooks.pre_execution[1]: unknown hook \"bogus_hook\" (available: cleanup_hook, logging_hook, metrics_hook, notification_hook"},
	}
	for _, tt := range tests {
		cfg, err := config.Parse([]byte("n8n: {base_url: 'http://x'}\nworkflows: {w: {path: w}}\n"+tt.yaml), "h.yaml")
		if err != nil {
			t.Fatal(err)
		}
		_, err = invoker.New(cfg)
		var ce *config.Error
		if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("err = %v\nwant %s", err, tt.want)
		}
	}
	// The seed's hook lists work unchanged once their needs are met.
	cfg, err := config.Load("config/testdata/seed.yaml", config.WithLookupEnv(func(string) (string, bool) { return "key-123", true }))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	m, err := invoker.New(cfg, invoker.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatalf("seed hooks: %v", err)
	}
	_ = m.Close(context.Background())
	if !strings.Contains(logs.String(), "failures are only logged") {
		t.Errorf("no warning for notification_hook without a URL: %s", logs.String())
	}
}

func TestRegisterNamedHook(t *testing.T) {
	t.Parallel()
	if err := invoker.RegisterNamedHook("logging_hook", nil); err == nil {
		t.Error("a built-in name was taken")
	}
	var called atomic.Bool
	_ = invoker.RegisterNamedHook("test_custom_hook", func(*invoker.Manager, config.HookRef) (hooks.Hook, error) {
		return hooks.Func(func(context.Context, *hooks.ExecutionContext) error { called.Store(true); return nil }), nil
	})
	cfg, _ := config.Parse([]byte("n8n: {base_url: 'http://x'}\nworkflows: {w: {path: w}}\nhooks: {pre_execution: [test_custom_hook]}\n"), "c.yaml")
	m, err := invoker.New(cfg, invoker.WithTransport(&fakeInvoker{fn: okResult}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	_, _ = m.ExecuteWorkflow(t.Context(), "w", nil)
	if !called.Load() {
		t.Error("custom named hook not called")
	}
}
