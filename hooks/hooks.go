package hooks

import (
	"context"
	"fmt"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Stage is when a hook runs.
type Stage string

// Hook stages, named as in the configuration's hooks section.
const (
	StagePreExecution  Stage = "pre_execution"
	StagePostExecution Stage = "post_execution"
	StageError         Stage = "error"
)

// Valid reports whether s is one of the three stages.
func (s Stage) Valid() bool {
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

// Hook is called around executions. A hook registered for a
// stage has that stage's method called: PreExecution before the call (an
// error vetoes it), PostExecution after a success, OnError after a
// failure (not after the caller's cancellation, which is no failure).
// Implementations embed Base, so that methods added later have a
// default and break nobody.
type Hook interface {
	PreExecution(ctx context.Context, ec *ExecutionContext) error
	PostExecution(ctx context.Context, ec *ExecutionContext)
	OnError(ctx context.Context, ec *ExecutionContext)
}

// Base implements every Hook method as a no-op. Embed it.
type Base struct{}

// PreExecution does nothing.
func (Base) PreExecution(context.Context, *ExecutionContext) error { return nil }

// PostExecution does nothing.
func (Base) PostExecution(context.Context, *ExecutionContext) {}

// OnError does nothing.
func (Base) OnError(context.Context, *ExecutionContext) {}

// Func adapts a function to an Hook: every method calls it
// (its error only matters at the pre-execution stage).
type Func func(ctx context.Context, ec *ExecutionContext) error

// PreExecution calls f.
func (f Func) PreExecution(ctx context.Context, ec *ExecutionContext) error { return f(ctx, ec) }

// PostExecution calls f.
func (f Func) PostExecution(ctx context.Context, ec *ExecutionContext) { _ = f(ctx, ec) }

// OnError calls f.
func (f Func) OnError(ctx context.Context, ec *ExecutionContext) { _ = f(ctx, ec) }

// Vetoed returns the error of a call a pre-execution hook refused (or
// panicked in): code invocation.CodeVetoed, nothing was sent, the hook's
// error as cause.
func Vetoed(stage Stage, workflow string, err error) *invocation.Error {
	return &invocation.Error{Code: invocation.CodeVetoed, Workflow: workflow, Message: fmt.Sprintf("%s hook", stage), Err: err}
}

// AfterCommit marks a post-execution hook that destroys evidence of the
// call (the cleanup_hook deletes n8n's execution): it runs only after the
// call's outcome is durably recorded (the journal's terminal write; at
// the call's end without a journal), so that a crash, or a terminal write
// that fails, leaves n8n's execution for a reconcile to find. It is
// skipped when that write fails.
type AfterCommit interface {
	AfterCommit()
}

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

// FromPlugin returns a hook that runs p at every stage.
func FromPlugin(p Plugin) Hook { return pluginHook{p} }

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
