package invoker

import (
	"context"
	"fmt"
	"log/slog"
	"time"
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
	Result *Result
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

func (e *HookError) Error() string {
	return fmt.Sprintf("workflow %q: %s hook: %v", e.Workflow, e.Stage, e.Err)
}

// Unwrap returns the hook's error.
func (e *HookError) Unwrap() error { return e.Err }

// Class returns Permanent: the call was never made.
func (e *HookError) Class() Class { return Permanent }

// builtinHooks are the hooks the configuration can name.
var builtinHooks = map[string]func(m *Manager) ExecutionHook{
	"logging_hook": func(m *Manager) ExecutionHook { return &loggingHook{log: m.log} },
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
		"class", ClassOf(ec.Err).String(), "attempts", AttemptsOf(ec.Err), "duration", ec.Duration, "error", ec.Err.Error())
}
