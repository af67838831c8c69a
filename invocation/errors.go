package invocation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// Class says whether an error is worth retrying.
type Class int

const (
	// Unknown errors are unexpected answers: retried with caution (once).
	Unknown Class = iota
	// Transient errors (connection failures, 429, 502, 503, 504, 524) are
	// retried with backoff.
	Transient
	// Permanent errors (400, 401, 403, 404, 422, a workflow that ran and
	// failed) are returned at once.
	Permanent
)

// String returns "unknown", "transient" or "permanent".
func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	default:
		return "unknown"
	}
}

// MarshalText encodes the class as its name.
func (c Class) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// Sentinel errors, matched with errors.Is.
var (
	// ErrPermanent matches every error whose class is Permanent.
	ErrPermanent = errors.New("permanent error")
	// ErrWorkflowFailed matches the 500 "Error in workflow" answer: the
	// workflow ran and failed, so the request is not re-sent.
	ErrWorkflowFailed = errors.New("workflow failed")
	// ErrUnknownWorkflow matches a workflow name that no configuration or
	// resolver knows.
	ErrUnknownWorkflow = errors.New("unknown workflow")
	// ErrNotRegistered matches n8n's 404 for a webhook that is not
	// registered (unknown path or inactive workflow).
	ErrNotRegistered = errors.New("webhook not registered")
	// ErrClosed is returned for work submitted after Close.
	ErrClosed = errors.New("invoker: manager closed")
	// ErrRateLimited matches a 429 answer.
	ErrRateLimited = errors.New("rate limited")
	// ErrCircuitOpen matches a call refused by an open circuit breaker.
	ErrCircuitOpen = errors.New("circuit open")
	// ErrRetryBudgetExhausted matches an invocation whose retry was refused
	// because the client-wide retry budget is spent.
	ErrRetryBudgetExhausted = errors.New("retry budget exhausted")
	// ErrBulkheadFull matches a call refused because its workflow has the
	// maximum number of calls in flight.
	ErrBulkheadFull = errors.New("bulkhead full")
	// ErrBatchAborted is the error of batch items not started because
	// another item failed in a fail-fast batch; it matches
	// context.Canceled.
	ErrBatchAborted = fmt.Errorf("batch aborted after an item failed (fail-fast): %w", context.Canceled)
)

// ClassOf returns the class of err: the class of the first error in its
// chain that reports one, Unknown when none does. Cancellation is not a
// failure and has no class of its own: ClassOf reports Permanent for it so
// that nobody retries a canceled call; use IsCanceled to tell it apart.
func ClassOf(err error) Class {
	if err == nil {
		return Unknown
	}
	if IsCanceled(err) {
		return Permanent
	}
	var c interface{ Class() Class }
	if errors.As(err, &c) {
		return c.Class()
	}
	return Unknown
}

// IsCanceled reports whether err comes from a canceled context or an
// expired deadline of the caller.
func IsCanceled(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func isClass(c Class, target error) bool {
	return target == ErrPermanent && c == Permanent
}

// HTTPError is an answer from n8n with a status that is not a success.
type HTTPError struct {
	Workflow   string
	Method     string
	URL        string // without query and credentials
	StatusCode int
	// Message is n8n's "message" field when the body is JSON, else the
	// start of the body.
	Message string
	// Body is the start of the response body, at most 4 KiB.
	Body   []byte
	Header http.Header
	// ErrClass is the classification of this answer.
	ErrClass Class
	// Attempts is the number of attempts made.
	Attempts int
	// WorkflowFailed is true for n8n's 500 "Error in workflow".
	WorkflowFailed bool
	// NotRegistered is true for n8n's 404 "webhook is not registered".
	NotRegistered bool
	// Starting is true for the answer of an n8n that is still migrating its
	// database: a 200 "n8n is starting up. Please wait" that ran nothing.
	Starting bool
	// RetryAfter is the wait the answer's Retry-After header asked for;
	// HasRetryAfter says whether it had a valid one.
	RetryAfter    time.Duration
	HasRetryAfter bool
	// ResponseMode is the target's webhook response mode (ResponseMode...)
	// as the transport knew it, empty when it did not. A workflow that
	// answers through a Respond to Webhook node chooses its own status, so
	// an answer that is not n8n's own is the workflow's (AnswerCode).
	ResponseMode string
}

// Error returns the message.
func (e *HTTPError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "workflow %q: %s %s: HTTP %d", e.Workflow, e.Method, e.URL, e.StatusCode)
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	fmt.Fprintf(&b, " (%s, %d attempt%s)", e.ErrClass, e.Attempts, plural(e.Attempts))
	return b.String()
}

// Class returns the classification of the answer.
func (e *HTTPError) Class() Class { return e.ErrClass }

// Outcome returns the outcome of the answer's code (ErrorCode): Ambiguous
// for an answer that may come after the workflow ran and does not say
// what became of it (a proxy's 502, 504, 524 or "reset before headers"
// 503; a 500 n8n did not explain, a 501, a 520 of a workflow that does not
// answer through a Respond node), Answered otherwise.
func (e *HTTPError) Outcome() Outcome { return e.ErrorCode().Outcome() }

// Is matches ErrPermanent, ErrWorkflowFailed, ErrNotRegistered and
// ErrRateLimited.
func (e *HTTPError) Is(target error) bool {
	switch target {
	case ErrWorkflowFailed:
		return e.WorkflowFailed
	case ErrNotRegistered:
		return e.NotRegistered
	case ErrRateLimited:
		return e.StatusCode == http.StatusTooManyRequests
	}
	return isClass(e.ErrClass, target)
}

// TransportError is a failure to get an answer at all: connection refused,
// reset, a timeout of the attempt, a TLS failure.
type TransportError struct {
	Workflow string
	Method   string
	URL      string
	// Attempts is the number of attempts made.
	Attempts int
	// ErrClass is the classification (Transient for connection failures).
	ErrClass Class
	// TimedOut is true when the attempt's own timeout expired: n8n may
	// still be running the workflow.
	TimedOut bool
	// Sent is true when the request had been written (its body read by
	// the connection) before the failure: the workflow may have run.
	Sent bool
	Err  error
}

// Outcome returns Ambiguous for a request that was sent, NotSent
// otherwise.
func (e *TransportError) Outcome() Outcome {
	if e.Sent {
		return Ambiguous
	}
	return NotSent
}

// Timeout reports whether the attempt's own timeout expired.
func (e *TransportError) Timeout() bool { return e.TimedOut }

// Error returns the message.
func (e *TransportError) Error() string {
	return fmt.Sprintf("workflow %q: %s %s: %v (%s, %d attempt%s)",
		e.Workflow, e.Method, e.URL, e.Err, e.ErrClass, e.Attempts, plural(e.Attempts))
}

// Unwrap returns the underlying network error.
func (e *TransportError) Unwrap() error { return e.Err }

// Class returns the classification of the failure.
func (e *TransportError) Class() Class { return e.ErrClass }

// Is matches ErrPermanent for permanent transport failures.
func (e *TransportError) Is(target error) bool { return isClass(e.ErrClass, target) }

// ResponseError is a success status whose body failed validation: too
// large, malformed JSON, an unexpected content type. The workflow ran, so
// it is Permanent: re-sending would run it again.
type ResponseError struct {
	Workflow   string
	StatusCode int
	Reason     string
	Attempts   int
	Err        error
}

// Error returns the message.
func (e *ResponseError) Error() string {
	s := fmt.Sprintf("workflow %q: invalid response (HTTP %d): %s", e.Workflow, e.StatusCode, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return fmt.Sprintf("%s (permanent, %d attempt%s)", s, e.Attempts, plural(e.Attempts))
}

// Unwrap returns the decoding error, if any.
func (e *ResponseError) Unwrap() error { return e.Err }

// Outcome returns Answered.
func (e *ResponseError) Outcome() Outcome { return Answered }

// Class returns Permanent.
func (e *ResponseError) Class() Class { return Permanent }

// Is matches ErrPermanent.
func (e *ResponseError) Is(target error) bool { return target == ErrPermanent }

// AttemptsOf returns the number of attempts recorded on err, 0 when
// none: the count of the first error in its chain that reports one (an
// AttemptCount() int method). The pipeline's errors (exhausted, a
// breaker's refusal, a spent budget) wrap the last attempt's error and
// report the call's total, so the outermost one wins.
func AttemptsOf(err error) int {
	if err == nil {
		return 0
	}
	var ac interface{ AttemptCount() int }
	if errors.As(err, &ac) {
		return ac.AttemptCount()
	}
	return 0
}

// AttemptCount returns the number of attempts made.
func (e *HTTPError) AttemptCount() int { return e.Attempts }

// AttemptCount returns the number of attempts made.
func (e *TransportError) AttemptCount() int { return e.Attempts }

// AttemptCount returns the number of attempts made.
func (e *ResponseError) AttemptCount() int { return e.Attempts }

func quote(s string) string { return fmt.Sprintf("%q", s) }

func attemptsText(n int) string { return fmt.Sprintf("%d attempt%s", n, plural(n)) }

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// ErrDeadLettered matches an invocation stored in the dead-letter queue.
var ErrDeadLettered = errors.New("stored in the dead-letter queue")

// MessageOf returns an error body's "message" field (n8n's JSON errors),
// else the start of the body as text (at most 200 bytes, "" when it is
// not valid UTF-8).
func MessageOf(b []byte) string {
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &m) == nil && m.Message != "" {
		return m.Message
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if !utf8.ValidString(s) {
		return ""
	}
	return s
}

// ErrorCode returns the code of the answer: AnswerCode, the code its
// evidence gives (n8n's own answers by their bodies, a Respond node's
// answer as the workflow's, anything unexplained as CodeUnknown: it may
// have run), adjusted by a class the classifiers gave against it where
// that cannot hide a run: a transient CodeRejected (a 404 during n8n's
// startup grace, a 408) is CodeUnavailable, and a permanent CodeUnknown is
// CodeRejected (not re-sent either way). A transient class never turns an
// answer that may have run into one that says "not run".
func (e *HTTPError) ErrorCode() Code {
	c := e.AnswerCode()
	switch {
	case e.ErrClass == Transient && c == CodeRejected:
		return CodeUnavailable
	case e.ErrClass == Permanent && c == CodeUnknown:
		return CodeRejected
	}
	return c
}

// ErrorCode returns CodeLost for a request that was sent (it may have
// run); for one that was not, CodeNotSent, or CodeBadRequest when the
// failure is permanent (a certificate that does not verify).
func (e *TransportError) ErrorCode() Code {
	if e.Sent {
		return CodeLost
	}
	return AttemptCode(e.ErrClass, NotSent)
}

// ErrorCode returns InvalidAnswer: the workflow ran, its answer could not
// be read.
func (e *ResponseError) ErrorCode() Code { return CodeInvalidAnswer }
