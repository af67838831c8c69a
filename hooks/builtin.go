package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
	"github.com/n8n-invoker/n8n-invoker/secret"
	"github.com/n8n-invoker/n8n-invoker/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Logging returns the logging_hook: every execution logged to log.
func Logging(log *slog.Logger) Hook { return &loggingHook{log: log} }

// loggingHook logs executions to a logger.
type loggingHook struct {
	Base
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

// Metrics returns the metrics_hook: it counts the stages it sees per
// workflow (n8n_invoker.hook.stage) on meter.
func Metrics(meter metric.Meter) (Hook, error) {
	c, err := meter.Int64Counter("n8n_invoker.hook.stage", metric.WithDescription("Executions seen by metrics_hook, by stage."))
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

// Cleanup returns the cleanup_hook: it deletes a successful execution's
// record from n8n through api, for high-volume workflows that should not
// fill n8n's database; failures to delete are logged to log.
func Cleanup(api *n8napi.Client, log *slog.Logger) (Hook, error) {
	if api == nil {
		return nil, errors.New("cleanup_hook deletes executions through n8n's API: set n8n.api_key")
	}
	return &cleanupHook{api: api, log: log}, nil
}

type cleanupHook struct {
	Base
	api *n8napi.Client
	log *slog.Logger
}

// AfterCommit marks the cleanup_hook as destroying evidence: it deletes
// the execution only after the call's success is recorded.
func (h *cleanupHook) AfterCommit() {}

func (h *cleanupHook) PostExecution(ctx context.Context, ec *ExecutionContext) {
	if ec.Result == nil || ec.Result.ExecutionID == "" || !ec.Result.Completed {
		return
	}
	if _, err := h.api.Executions.Delete(ctx, ec.Result.ExecutionID); err != nil && !n8napi.IsNotFound(err) {
		h.log.WarnContext(ctx, "cleanup_hook: deleting the execution failed", "workflow", ec.Workflow,
			"execution_id", ec.Result.ExecutionID, "error", err.Error())
	}
}

// NotificationOptions configure the notification_hook.
type NotificationOptions struct {
	// URL receives a POST per failure; empty means failures are only
	// logged.
	URL secret.Secret
	// Format is "slack" (a {"text": ...} message; the default, as in
	// the configuration's hooks.notification.format) or "json" (the full
	// record).
	Format string
	// Timeout bounds each POST.
	Timeout time.Duration
}

// Notification returns the notification_hook: it posts every failure to
// a Slack-compatible or plain webhook (or logs it to log without a URL).
func Notification(o NotificationOptions, log *slog.Logger) Hook {
	if o.URL.IsZero() {
		return &notificationHook{log: log}
	}
	return &notificationHook{log: log, url: o.URL, format: o.Format, client: &http.Client{Timeout: o.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// notificationHook posts failures to a Slack-compatible or plain webhook.
type notificationHook struct {
	Base
	log    *slog.Logger
	url    secret.Secret
	format string
	client *http.Client
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
		h.log.ErrorContext(ctx, "notification: workflow failed", "workflow", n.Workflow, "request_id", n.RequestID,
			"execution_id", n.ExecutionID, "class", n.Class, "attempts", n.Attempts, "error", n.Error)
		return
	}
	var body any = n
	if h.format != "json" {
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
		h.log.WarnContext(ctx, "notification_hook: post failed", "workflow", ec.Workflow, "error", err.Error())
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		h.log.WarnContext(ctx, "notification_hook: post refused", "workflow", ec.Workflow, "status", resp.StatusCode)
	}
}
