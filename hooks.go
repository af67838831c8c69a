package invoker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
	"github.com/n8n-invoker/n8n-invoker/secret"
	"github.com/n8n-invoker/n8n-invoker/telemetry"
)

// Stage is when a hook runs.
type Stage string

// Hook stages, named as in the configuration's hooks section.
const (
	StagePreExecution  Stage = "pre_execution"
	StagePostExecution Stage = "post_execution"
	StageError         Stage = "error"
)

func (s Stage) valid() bool {
	return s == StagePreExecution || s == StagePostExecution || s == StageError
}

// ExecutionContext is what hooks see of one execution.
type ExecutionContext struct {
	// Workflow is the workflow name the caller gave.
	Workflow string
	// Params are the parameters; pre-execution hooks may change them.
	Params map[string]any
	// RequestID and IdempotencyKey are sent with every attempt.
	RequestID      string
	IdempotencyKey string
	// StartedAt is when the execution started, before the pre hooks.
	StartedAt time.Time
	// Result is set for post-execution hooks.
	Result *invocation.Result
	// Err is set for error hooks.
	Err error
	// Duration is set for post-execution and error hooks.
	Duration time.Duration
}

// ExecutionHook is called around executions. A hook registered for a
// stage has that stage's method called: PreExecution before the call (an
// error vetoes it), PostExecution after a success, OnError after a
// failure (not after the caller's cancellation, which is no failure).
// Implementations embed HookBase, so that methods added later have a
// default and break nobody.
type ExecutionHook interface {
	PreExecution(ctx context.Context, ec *ExecutionContext) error
	PostExecution(ctx context.Context, ec *ExecutionContext)
	OnError(ctx context.Context, ec *ExecutionContext)
}

// HookBase implements every ExecutionHook method as a no-op. Embed it.
type HookBase struct{}

// PreExecution does nothing.
func (HookBase) PreExecution(context.Context, *ExecutionContext) error { return nil }

// PostExecution does nothing.
func (HookBase) PostExecution(context.Context, *ExecutionContext) {}

// OnError does nothing.
func (HookBase) OnError(context.Context, *ExecutionContext) {}

// HookFunc adapts a function to an ExecutionHook: every method calls it
// (its error only matters at the pre-execution stage).
type HookFunc func(ctx context.Context, ec *ExecutionContext) error

// PreExecution calls f.
func (f HookFunc) PreExecution(ctx context.Context, ec *ExecutionContext) error { return f(ctx, ec) }

// PostExecution calls f.
func (f HookFunc) PostExecution(ctx context.Context, ec *ExecutionContext) { _ = f(ctx, ec) }

// OnError calls f.
func (f HookFunc) OnError(ctx context.Context, ec *ExecutionContext) { _ = f(ctx, ec) }

// HookError is a pre-execution hook's veto, or its panic.
type HookError struct {
	Stage    Stage
	Workflow string
	Err      error
}

// Error returns the message.
func (e *HookError) Error() string {
	return fmt.Sprintf("workflow %q: %s hook: %v", e.Workflow, e.Stage, e.Err)
}

// Unwrap returns the hook's error.
func (e *HookError) Unwrap() error { return e.Err }

// Class returns Permanent: the call was never made.
func (e *HookError) Class() invocation.Class { return invocation.Permanent }

// Plugin observes executions, like the design's SlackNotificationPlugin.
// Implementations embed PluginBase, so that methods added later have a
// default. Plugins cannot veto a call; use a pre-execution hook for that.
type Plugin interface {
	OnWorkflowStarted(ctx context.Context, ec *ExecutionContext)
	OnWorkflowSucceeded(ctx context.Context, ec *ExecutionContext)
	OnWorkflowFailed(ctx context.Context, ec *ExecutionContext)
}

// PluginBase implements every Plugin method as a no-op. Embed it.
type PluginBase struct{}

// OnWorkflowStarted does nothing.
func (PluginBase) OnWorkflowStarted(context.Context, *ExecutionContext) {}

// OnWorkflowSucceeded does nothing.
func (PluginBase) OnWorkflowSucceeded(context.Context, *ExecutionContext) {}

// OnWorkflowFailed does nothing.
func (PluginBase) OnWorkflowFailed(context.Context, *ExecutionContext) {}

// pluginHook runs a plugin at every stage.
type pluginHook struct{ p Plugin }

func (h pluginHook) PreExecution(ctx context.Context, ec *ExecutionContext) error {
	h.p.OnWorkflowStarted(ctx, ec)
	return nil
}
func (h pluginHook) PostExecution(ctx context.Context, ec *ExecutionContext) {
	h.p.OnWorkflowSucceeded(ctx, ec)
}
func (h pluginHook) OnError(ctx context.Context, ec *ExecutionContext) { h.p.OnWorkflowFailed(ctx, ec) }

// RegisterPlugin adds a plugin, called at every stage after the hooks
// already registered.
func (m *Manager) RegisterPlugin(p Plugin) error {
	if p == nil {
		return errors.New("invoker: nil plugin")
	}
	for _, st := range []Stage{StagePreExecution, StagePostExecution, StageError} {
		if err := m.RegisterHook(st, pluginHook{p}); err != nil {
			return err
		}
	}
	return nil
}

// HookFactory makes a named hook for a manager; ref is where the
// configuration named it, for errors.
type HookFactory func(m *Manager, ref config.HookRef) (ExecutionHook, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]HookFactory{
		"logging_hook":      func(m *Manager, _ config.HookRef) (ExecutionHook, error) { return &loggingHook{log: m.log}, nil },
		"metrics_hook":      newMetricsHook,
		"cleanup_hook":      newCleanupHook,
		"notification_hook": newNotificationHook,
	}
)

// RegisterNamedHook makes a hook available by name to the configuration's
// hooks lists (call it before FromConfig, e.g. in an init function). It
// fails for a name already taken.
func RegisterNamedHook(name string, f HookFactory) error {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, ok := registry[name]; ok {
		return fmt.Errorf("invoker: hook %q is already registered", name)
	}
	registry[name] = f
	return nil
}

func namedHook(name string) (HookFactory, []string, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	f, ok := registry[name]
	return f, slices.Sorted(maps.Keys(registry)), ok
}

// loggingHook logs executions to the manager's logger.
type loggingHook struct {
	HookBase
	log *slog.Logger
}

func (h *loggingHook) PreExecution(ctx context.Context, ec *ExecutionContext) error {
	h.log.InfoContext(ctx, "workflow starting", "workflow", ec.Workflow, "request_id", ec.RequestID)
	return nil
}

func (h *loggingHook) PostExecution(ctx context.Context, ec *ExecutionContext) {
	h.log.InfoContext(ctx, "workflow succeeded", "workflow", ec.Workflow, "request_id", ec.RequestID,
		"execution_id", ec.Result.ExecutionID, "status", ec.Result.StatusCode,
		"attempts", ec.Result.Attempts, "duration", ec.Duration)
}

func (h *loggingHook) OnError(ctx context.Context, ec *ExecutionContext) {
	h.log.WarnContext(ctx, "workflow failed", "workflow", ec.Workflow, "request_id", ec.RequestID,
		"class", invocation.ClassOf(ec.Err).String(), "attempts", invocation.AttemptsOf(ec.Err), "duration", ec.Duration, "error", ec.Err.Error())
}

// metricsHook counts the stages it sees per workflow
// (n8n_invoker.hook.stage).
type metricsHook struct{ counter metric.Int64Counter }

func newMetricsHook(m *Manager, _ config.HookRef) (ExecutionHook, error) {
	c, err := m.tel.Meter().Int64Counter("n8n_invoker.hook.stage", metric.WithDescription("Executions seen by metrics_hook, by stage."))
	if err != nil {
		return nil, err
	}
	return &metricsHook{counter: c}, nil
}

func (h *metricsHook) add(ctx context.Context, ec *ExecutionContext, stage Stage) {
	h.counter.Add(ctx, 1, metric.WithAttributes(telemetry.AttrWorkflow.String(ec.Workflow), attribute.String("stage", string(stage))))
}

func (h *metricsHook) PreExecution(ctx context.Context, ec *ExecutionContext) error {
	h.add(ctx, ec, StagePreExecution)
	return nil
}
func (h *metricsHook) PostExecution(ctx context.Context, ec *ExecutionContext) {
	h.add(ctx, ec, StagePostExecution)
}
func (h *metricsHook) OnError(ctx context.Context, ec *ExecutionContext) { h.add(ctx, ec, StageError) }

// cleanupHook deletes a successful execution's record from n8n, for
// high-volume workflows that should not fill n8n's database.
type cleanupHook struct {
	HookBase
	m *Manager
}

func newCleanupHook(m *Manager, ref config.HookRef) (ExecutionHook, error) {
	if m.api == nil {
		return nil, &config.Error{Pos: ref.Pos, Msg: "cleanup_hook deletes executions through n8n's API: set n8n.api_key"}
	}
	return &cleanupHook{m: m}, nil
}

func (h *cleanupHook) PostExecution(ctx context.Context, ec *ExecutionContext) {
	if ec.Result == nil || ec.Result.ExecutionID == "" || !ec.Result.Completed {
		return
	}
	if _, err := h.m.api.Executions.Delete(ctx, ec.Result.ExecutionID); err != nil && !n8napi.IsNotFound(err) {
		h.m.log.WarnContext(ctx, "cleanup_hook: deleting the execution failed", "workflow", ec.Workflow,
			"execution_id", ec.Result.ExecutionID, "error", err.Error())
	}
}

// notificationHook posts failures to a Slack-compatible or plain webhook.
type notificationHook struct {
	HookBase
	m      *Manager
	url    secret.Secret
	format string
	client *http.Client
}

func newNotificationHook(m *Manager, ref config.HookRef) (ExecutionHook, error) {
	n := m.cfg.Hooks.Notification
	if n.URL.IsZero() {
		// The seed's YAML names the hook without a destination: notify
		// through the log rather than refuse to start.
		m.log.Warn("notification_hook has no hooks.notification.url: failures are only logged", "at", ref.Pos.String())
		return &notificationHook{m: m}, nil
	}
	return &notificationHook{m: m, url: n.URL, format: n.Format, client: &http.Client{Timeout: n.Timeout.D(),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

// notification is the json format's body.
type notification struct {
	Workflow    string `json:"workflow"`
	RequestID   string `json:"request_id"`
	ExecutionID string `json:"execution_id,omitempty"`
	Class       string `json:"class"`
	Attempts    int    `json:"attempts"`
	Error       string `json:"error"`
	DurationMS  int64  `json:"duration_ms"`
}

func (h *notificationHook) OnError(ctx context.Context, ec *ExecutionContext) {
	n := notification{Workflow: ec.Workflow, RequestID: ec.RequestID, Class: invocation.ClassOf(ec.Err).String(),
		Attempts: invocation.AttemptsOf(ec.Err), Error: ec.Err.Error(), DurationMS: ec.Duration.Milliseconds()}
	var fe *n8napi.ExecutionFailedError
	if errors.As(ec.Err, &fe) {
		n.ExecutionID = fe.ExecutionID
	}
	if h.url.IsZero() {
		h.m.log.ErrorContext(ctx, "notification: workflow failed", "workflow", n.Workflow, "request_id", n.RequestID,
			"execution_id", n.ExecutionID, "class", n.Class, "attempts", n.Attempts, "error", n.Error)
		return
	}
	var body any = n
	if h.format == "slack" {
		text := fmt.Sprintf("n8n-invoker: workflow *%s* failed (%s, %d attempts, request %s): %s",
			n.Workflow, n.Class, n.Attempts, n.RequestID, n.Error)
		body = map[string]string{"text": text}
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url.Reveal(), bytes.NewReader(b))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message repeats the secret URL
		}
		h.m.log.WarnContext(ctx, "notification_hook: post failed", "workflow", ec.Workflow, "error", err.Error())
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		h.m.log.WarnContext(ctx, "notification_hook: post refused", "workflow", ec.Workflow, "status", resp.StatusCode)
	}
}
