package pipeline

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Sentinels of the reconcile outcomes, the same values as invocation's.
var (
	// ErrAmbiguous matches an error of code invocation.CodeAmbiguous.
	ErrAmbiguous = invocation.ErrAmbiguous
	// ErrUnresolved matches an error of code invocation.CodeUnresolved.
	ErrUnresolved = invocation.ErrUnresolved
)

// retryAfterTooLong is the error of a server that asked to wait longer
// than the policy's maximum Retry-After: RetryAfter carries the wait, so
// that a caller can schedule the item instead of sleeping.
func retryAfterTooLong(wf string, wait time.Duration, attempts int, err error) *invocation.Error {
	return &invocation.Error{Code: invocation.CodeOf(err), Workflow: wf, Attempts: attempts, RetryAfter: wait,
		Message: fmt.Sprintf("server asked to retry after %s, more than allowed (%d attempt%s)", wait, attempts, pluralS(attempts)), Err: err}
}

// ambiguous ends a call whose attempt was sent and whose answer was lost
// when nothing can tell whether n8n ran it (no API key) and
// retry_ambiguous is off: re-sending could run the workflow twice.
func ambiguous(wf string, attempts int, last error) *invocation.Error {
	what := "the answer of attempt %d was lost after it was sent"
	var he *invocation.HTTPError
	if errors.As(last, &he) && he.AnswerCode() == invocation.CodeUnknown {
		what = "attempt %d was answered with a status that may come after the workflow ran"
	}
	return &invocation.Error{Code: invocation.CodeAmbiguous, Workflow: wf, Attempts: attempts, Err: last,
		Message: fmt.Sprintf(what+", and without n8n.api_key it cannot be reconciled (not re-sent; retry_ambiguous re-sends)", attempts)}
}

// unresolved ends a call whose lost answer reconciliation could not
// settle in time.
func unresolved(wf string, attempts int, reason string, last error) *invocation.Error {
	return &invocation.Error{Code: invocation.CodeUnresolved, Workflow: wf, Attempts: attempts, Err: last,
		Message: fmt.Sprintf("unresolved after %d attempt%s: %s", attempts, pluralS(attempts), reason)}
}

// unknownNames is the cause of an unknown-workflow error: the names a
// resolver knows and its hint, which Chain merges.
type unknownNames struct {
	workflow string
	known    []string
	hint     string
}

func (u *unknownNames) Error() string {
	s := fmt.Sprintf("unknown workflow %q: no workflows are configured", u.workflow)
	if len(u.known) > 0 {
		s = fmt.Sprintf("unknown workflow %q (configured: %s)", u.workflow, strings.Join(u.known, ", "))
	}
	if u.hint != "" {
		s += "; " + u.hint
	}
	return s
}

// UnknownWorkflow returns the error of a workflow name that nothing
// resolves (code invocation.CodeUnknownWorkflow): known lists the names
// that resolve, hint (when set) ends the message, cause (when not nil) is
// what n8n's API said.
func UnknownWorkflow(wf string, known []string, hint string, cause error) *invocation.Error {
	u := &unknownNames{workflow: wf, known: known, hint: hint}
	return &invocation.Error{Code: invocation.CodeUnknownWorkflow, Workflow: wf, Err: causeOr(cause, u)}
}

func causeOr(cause error, u *unknownNames) error {
	if cause != nil {
		return &joined{u: u, err: cause}
	}
	return u
}

// joined keeps both the names (for Chain) and the API's answer (for
// errors.As) as the cause.
type joined struct {
	u   *unknownNames
	err error
}

func (j *joined) Error() string   { return j.u.Error() + ": " + j.err.Error() }
func (j *joined) Unwrap() []error { return []error{j.u, j.err} }

func pluralS(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
