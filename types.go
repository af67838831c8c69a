package invoker

import "github.com/n8n-invoker/n8n-invoker/internal/core"

// Invoker runs one workflow invocation. Implementations handle their own
// retries and return a *Result or a typed error that carries its Class and
// the number of attempts made. They must be safe for concurrent use. The
// HTTP webhook invoker is in package httpinvoker.
type Invoker = core.Invoker

// Request is one workflow invocation, independent of the transport.
type Request = core.Request

// Result is the outcome of an invocation that n8n answered with success.
type Result = core.Result

// Class says whether an error is worth retrying: Unknown, Transient or
// Permanent.
type Class = core.Class

// Error classes.
const (
	Unknown   = core.Unknown
	Transient = core.Transient
	Permanent = core.Permanent
)

// HTTPError is an answer from n8n with a status that is not a success.
type HTTPError = core.HTTPError

// TransportError is a failure to get an answer at all.
type TransportError = core.TransportError

// ResponseError is a success status whose body failed validation.
type ResponseError = core.ResponseError

// RetryAfterError is a Retry-After longer than the allowed maximum; it
// carries the requested wait.
type RetryAfterError = core.RetryAfterError

// AttemptsExhaustedError is returned when every allowed attempt failed.
type AttemptsExhaustedError = core.AttemptsExhaustedError

// UnknownWorkflowError is returned for a workflow name nothing resolves.
type UnknownWorkflowError = core.UnknownWorkflowError

// Sentinel errors, matched with errors.Is.
var (
	ErrPermanent       = core.ErrPermanent
	ErrWorkflowFailed  = core.ErrWorkflowFailed
	ErrUnknownWorkflow = core.ErrUnknownWorkflow
	ErrNotRegistered   = core.ErrNotRegistered
	ErrClosed          = core.ErrClosed
	ErrRateLimited     = core.ErrRateLimited
	ErrCircuitOpen     = core.ErrCircuitOpen
	// ErrRetryBudgetExhausted matches a retry refused by the retry budget.
	ErrRetryBudgetExhausted = core.ErrRetryBudgetExhausted
	// ErrBulkheadFull matches a call refused by a full bulkhead.
	ErrBulkheadFull = core.ErrBulkheadFull
	// ErrBatchAborted is the error of batch items not started because
	// another item failed under WithFailFast. It matches context.Canceled:
	// those items did not fail, they were not run.
	ErrBatchAborted = core.ErrBatchAborted
)

// DeadLetteredError is an invocation stored in the dead-letter queue.
type DeadLetteredError = core.DeadLetteredError

// ErrDeadLettered matches an invocation stored in the dead-letter queue.
var ErrDeadLettered = core.ErrDeadLettered

// ExecutionFailedError is an execution n8n reports as failed, with n8n's
// error message and failing node.
type ExecutionFailedError = core.ExecutionFailedError

// CircuitOpenError is a call refused because its endpoint's breaker is
// open.
type CircuitOpenError = core.CircuitOpenError

// BudgetExhaustedError is an invocation whose retry the retry budget
// refused.
type BudgetExhaustedError = core.BudgetExhaustedError

// BulkheadError is a call refused because its workflow has the maximum
// calls in flight.
type BulkheadError = core.BulkheadError

// ClassOf returns the class of err (Unknown when nothing in its chain
// reports one; Permanent for a canceled context, which nobody should
// retry).
func ClassOf(err error) Class { return core.ClassOf(err) }

// IsCanceled reports whether err comes from the caller's canceled context
// or expired deadline. Cancellation is not a failure.
func IsCanceled(err error) bool { return core.IsCanceled(err) }

// AttemptsOf returns the number of attempts recorded on err, 0 when none.
func AttemptsOf(err error) int { return core.AttemptsOf(err) }
