package pipeline

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// RetryAfterError is returned when n8n (or a proxy) asks to wait longer
// than the invoker's maximum Retry-After delay. It carries the requested
// wait so that a caller can schedule the item instead of sleeping.
type RetryAfterError struct {
	Workflow string
	// Wait is the delay the server asked for.
	Wait time.Duration
	// Attempts is the number of attempts made.
	Attempts int
	// Err is the answer that carried the Retry-After header.
	Err error
}

// Error returns the message.
func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("workflow %q: server asked to retry after %s, more than allowed (%d attempt%s): %v",
		e.Workflow, e.Wait, e.Attempts, pluralS(e.Attempts), e.Err)
}

// Unwrap returns the answer that carried the Retry-After header.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// invocation.Class returns invocation.Transient: the call may succeed later.
func (e *RetryAfterError) Class() invocation.Class { return invocation.Transient }

// AttemptsExhaustedError is returned when every allowed attempt failed
// with a retryable error.
type AttemptsExhaustedError struct {
	Workflow string
	Attempts int
	// Last is the error of the last attempt.
	Last error
}

// Error returns the message.
func (e *AttemptsExhaustedError) Error() string {
	return fmt.Sprintf("workflow %q: gave up after %d attempt%s: %v", e.Workflow, e.Attempts, pluralS(e.Attempts), e.Last)
}

// Unwrap returns the error of the last attempt.
func (e *AttemptsExhaustedError) Unwrap() error { return e.Last }

// invocation.Class returns the class of the last attempt's error.
func (e *AttemptsExhaustedError) Class() invocation.Class { return invocation.ClassOf(e.Last) }

// UnknownWorkflowError is returned for a workflow name that nothing
// resolves.
type UnknownWorkflowError struct {
	Workflow string
	// Known lists the configured workflow names, for the message.
	Known []string
	// Hint, when set, ends the message.
	Hint string
	// Err is what n8n's API said of the name, when it was asked (a
	// *ResolveError).
	Err error
}

// Unwrap returns what n8n's API said, if it was asked.
func (e *UnknownWorkflowError) Unwrap() error { return e.Err }

// Error returns the message.
func (e *UnknownWorkflowError) Error() string {
	s := fmt.Sprintf("unknown workflow %q: no workflows are configured", e.Workflow)
	if len(e.Known) > 0 {
		s = fmt.Sprintf("unknown workflow %q (configured: %s)", e.Workflow, strings.Join(e.Known, ", "))
	}
	if e.Hint != "" {
		s += "; " + e.Hint
	}
	return s
}

// invocation.Class returns invocation.Permanent.
func (e *UnknownWorkflowError) Class() invocation.Class { return invocation.Permanent }

// Is matches invocation.ErrUnknownWorkflow and invocation.ErrPermanent.
func (e *UnknownWorkflowError) Is(target error) bool {
	return target == invocation.ErrUnknownWorkflow || target == invocation.ErrPermanent
}

// AttemptCount returns the number of attempts made.
func (e *RetryAfterError) AttemptCount() int { return e.Attempts }

// AttemptCount returns the number of attempts made.
func (e *AttemptsExhaustedError) AttemptCount() int { return e.Attempts }

func pluralS(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// AmbiguousError ends a call whose attempt was sent and whose answer was
// lost (a reset after writing, a timeout, a proxy's 502/504) when nothing
// can tell whether n8n ran it (no API key to reconcile with) and
// retry_ambiguous is off: re-sending could run the workflow twice. With
// the dead-letter queue on it is stored as a dead letter marked
// ambiguous, to be reconciled and replayed.
type AmbiguousError struct {
	Workflow string
	Attempts int
	// Last is the ambiguous attempt's error.
	Last error
}

// Error returns the message.
func (e *AmbiguousError) Error() string {
	return fmt.Sprintf("workflow %q: the answer of attempt %d was lost after it was sent, and without n8n.api_key it cannot be reconciled (not re-sent; retry_ambiguous re-sends): %v",
		e.Workflow, e.Attempts, e.Last)
}

// Unwrap returns the last attempt's error.
func (e *AmbiguousError) Unwrap() error { return e.Last }

// Class returns Unknown: the workflow may have run.
func (e *AmbiguousError) Class() invocation.Class { return invocation.Unknown }

// Outcome returns Ambiguous.
func (e *AmbiguousError) Outcome() invocation.Outcome { return invocation.Ambiguous }

// Is matches ErrAmbiguous.
func (e *AmbiguousError) Is(target error) bool { return target == ErrAmbiguous }

// AttemptCount returns the number of attempts made.
func (e *AmbiguousError) AttemptCount() int { return e.Attempts }

// UnresolvedError ends a call whose lost answer reconciliation could not
// settle in time: an execution that may be the call's was still running
// when the bound expired, or n8n's API failed. The call is not re-sent by
// itself; with the queue on it is a dead letter marked unresolved.
type UnresolvedError struct {
	Workflow string
	Attempts int
	// Reason says why.
	Reason string
	// Last is the ambiguous attempt's error.
	Last error
}

// Error returns the message.
func (e *UnresolvedError) Error() string {
	return fmt.Sprintf("workflow %q: unresolved after %d attempt%s: %s: %v", e.Workflow, e.Attempts, pluralS(e.Attempts), e.Reason, e.Last)
}

// Unwrap returns the last attempt's error.
func (e *UnresolvedError) Unwrap() error { return e.Last }

// Class returns Unknown.
func (e *UnresolvedError) Class() invocation.Class { return invocation.Unknown }

// Outcome returns Ambiguous.
func (e *UnresolvedError) Outcome() invocation.Outcome { return invocation.Ambiguous }

// Is matches ErrUnresolved.
func (e *UnresolvedError) Is(target error) bool { return target == ErrUnresolved }

// AttemptCount returns the number of attempts made.
func (e *UnresolvedError) AttemptCount() int { return e.Attempts }

// Sentinels of the reconcile outcomes.
var (
	// ErrAmbiguous matches an *AmbiguousError.
	ErrAmbiguous = errors.New("ambiguous: sent, answer lost, not reconcilable")
	// ErrUnresolved matches an *UnresolvedError.
	ErrUnresolved = errors.New("unresolved: reconciliation did not settle")
)
