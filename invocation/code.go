package invocation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Code says what became of an invocation that did not succeed, in one
// word: whether anything was sent, whether n8n ran the workflow, and who
// refused it. Every error the library returns maps to one Code (CodeOf);
// its class, its wire outcome and the sentinels it matches come from the
// code through one table, and so do the CLI's exit codes, the service's
// HTTP statuses, the dead-letter reasons and the metric labels.
type Code uint8

// The codes. The comment of each says what a caller may conclude.
const (
	// CodeOK: no error.
	CodeOK Code = iota
	// CodeCanceled: the caller canceled (or the manager closed) before
	// anything was sent. Not a failure; nothing ran.
	CodeCanceled
	// CodeCanceledInFlight: the caller canceled after the request was sent:
	// the workflow may have run. Not a failure.
	CodeCanceledInFlight
	// CodeNotSent: nothing reached n8n (connection refused, DNS, TLS): safe
	// to send again.
	CodeNotSent
	// CodeUnavailable: n8n answered that it did not run the workflow because
	// it cannot now (503, "starting up").
	CodeUnavailable
	// CodeRateLimited: n8n (or a proxy) answered 429, or asked to wait longer
	// than allowed; the workflow did not run.
	CodeRateLimited
	// CodeLost: the request was sent and its answer lost or replaced by a
	// proxy's (a reset, a timeout, a 502/504/524): the workflow may have
	// run. Never sent again without a reconcile that says "not run".
	CodeLost
	// CodeAmbiguous: like Lost, and nothing can tell whether n8n ran it (no
	// API key to reconcile with): not sent again.
	CodeAmbiguous
	// CodeUnresolved: a reconcile could not settle whether n8n ran it in
	// time (an execution still running, n8n's API failing).
	CodeUnresolved
	// CodeUnknown: an error nothing explains (a custom transport's plain
	// error, an answer of a status no rule knows): it may have run.
	CodeUnknown
	// CodeRejected: n8n refused the request before running the workflow (a
	// 4xx, a webhook that is not registered, its authentication).
	CodeRejected
	// CodeWorkflowFailed: the workflow ran and failed ("Error in workflow",
	// an execution that ended in error).
	CodeWorkflowFailed
	// CodeWorkflowAnswered: the workflow ran and chose its answer (a Respond
	// to Webhook node's non-success status).
	CodeWorkflowAnswered
	// CodeInvalidAnswer: the workflow ran and its answer could not be read
	// (too large, malformed, a packed answer of the wrong shape).
	CodeInvalidAnswer
	// CodeUnknownWorkflow: no configuration, alias or n8n workflow has the
	// name; nothing was sent.
	CodeUnknownWorkflow
	// CodeBadRequest: the call cannot be made as asked (a missing or invalid
	// path parameter, a missing API key, a body the transport cannot
	// carry); nothing was sent.
	CodeBadRequest
	// CodeVetoed: a pre-execution hook refused the call; nothing was sent.
	CodeVetoed
	// CodeCircuitOpen: the circuit breaker of the workflow's endpoint
	// refused the call; nothing was sent.
	CodeCircuitOpen
	// CodeBudgetExhausted: the client-wide retry budget refused a retry.
	CodeBudgetExhausted
	// CodeBulkheadFull: the workflow had the most calls in flight allowed.
	CodeBulkheadFull
	// CodeKeyConflict: the idempotency key is in use with another workflow
	// or other parameters; nothing was sent.
	CodeKeyConflict
	// CodeKeyHeld: another live process holds the key and did not end it
	// within the wait; nothing was sent here.
	CodeKeyHeld
	// CodeLeaseLost: another process took the key over while this one ran
	// it; that process decides and records the outcome.
	CodeLeaseLost

	numCodes // the number of codes; keep last
)

// codeInfo is one row of the code table.
type codeInfo struct {
	name    string
	class   Class
	outcome Outcome
	// degraded marks a fail-fast refusal of a degraded system.
	degraded bool
	// is lists the sentinels the code matches with errors.Is.
	is   []error
	text string
}

// codes is the one table: a code's name, class, wire outcome, sentinels
// and text.
var codes = [numCodes]codeInfo{
	CodeOK:               {name: "ok", class: Unknown, outcome: Answered, text: "ok"},
	CodeCanceled:         {name: "canceled", class: Permanent, outcome: NotSent, text: "canceled before anything was sent"},
	CodeCanceledInFlight: {name: "canceled-in-flight", class: Permanent, outcome: Ambiguous, text: "canceled after the request was sent: it may have run"},
	CodeNotSent:          {name: "not-sent", class: Transient, outcome: NotSent, text: "not sent"},
	CodeUnavailable:      {name: "unavailable", class: Transient, outcome: Answered, text: "n8n is unavailable"},
	CodeRateLimited:      {name: "rate-limited", class: Transient, outcome: Answered, is: []error{ErrRateLimited}, text: "rate limited"},
	CodeLost:             {name: "lost", class: Transient, outcome: Ambiguous, text: "sent, answer lost: it may have run"},
	CodeAmbiguous:        {name: "ambiguous", class: Unknown, outcome: Ambiguous, is: []error{ErrAmbiguous}, text: "ambiguous"},
	CodeUnresolved:       {name: "unresolved", class: Unknown, outcome: Ambiguous, is: []error{ErrUnresolved}, text: "unresolved"},
	CodeUnknown:          {name: "unknown", class: Unknown, outcome: Ambiguous, text: "unknown error"},
	CodeRejected:         {name: "rejected", class: Permanent, outcome: Answered, is: []error{ErrPermanent}, text: "rejected by n8n before it ran"},
	CodeWorkflowFailed:   {name: "workflow-failed", class: Permanent, outcome: Answered, is: []error{ErrPermanent, ErrWorkflowFailed}, text: "workflow failed"},
	CodeWorkflowAnswered: {name: "workflow-answered", class: Permanent, outcome: Answered, is: []error{ErrPermanent}, text: "the workflow ran and answered with an error status"},
	CodeInvalidAnswer:    {name: "invalid-answer", class: Permanent, outcome: Answered, is: []error{ErrPermanent}, text: "invalid answer"},
	CodeUnknownWorkflow:  {name: "unknown-workflow", class: Permanent, outcome: NotSent, is: []error{ErrPermanent, ErrUnknownWorkflow}, text: "unknown workflow"},
	CodeBadRequest:       {name: "bad-request", class: Permanent, outcome: NotSent, is: []error{ErrPermanent}, text: "bad request"},
	CodeVetoed:           {name: "vetoed", class: Permanent, outcome: NotSent, is: []error{ErrPermanent}, text: "vetoed by a hook"},
	CodeCircuitOpen:      {name: "circuit-open", class: Transient, outcome: NotSent, degraded: true, is: []error{ErrCircuitOpen}, text: "circuit open"},
	CodeBudgetExhausted:  {name: "budget-exhausted", class: Transient, outcome: NotSent, degraded: true, is: []error{ErrRetryBudgetExhausted}, text: "retry budget exhausted"},
	CodeBulkheadFull:     {name: "bulkhead-full", class: Transient, outcome: NotSent, degraded: true, is: []error{ErrBulkheadFull}, text: "bulkhead full"},
	CodeKeyConflict:      {name: "key-conflict", class: Permanent, outcome: NotSent, is: []error{ErrPermanent, ErrKeyConflict}, text: "idempotency key conflict"},
	CodeKeyHeld:          {name: "key-held", class: Transient, outcome: NotSent, is: []error{ErrKeyHeld}, text: "idempotency key held by another process"},
	CodeLeaseLost:        {name: "lease-lost", class: Transient, outcome: Ambiguous, is: []error{ErrLeaseLost}, text: "lease lost to another process"},
}

// Codes lists every code, OK first.
func Codes() []Code {
	cs := make([]Code, numCodes)
	for i := range cs {
		cs[i] = Code(i)
	}
	return cs
}

// String returns the code's name: "ok", "not-sent", "workflow-failed", ...
func (c Code) String() string {
	if c >= numCodes {
		return fmt.Sprintf("code(%d)", uint8(c))
	}
	return codes[c].name
}

// MarshalText encodes the code as its name.
func (c Code) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText decodes a code's name.
func (c *Code) UnmarshalText(b []byte) error {
	got, ok := ParseCode(string(b))
	if !ok {
		return fmt.Errorf("invocation: unknown error code %q", b)
	}
	*c = got
	return nil
}

// ParseCode returns the code named s.
func ParseCode(s string) (Code, bool) {
	for i := range codes {
		if codes[i].name == s {
			return Code(i), true
		}
	}
	return CodeUnknown, false
}

// Class returns the code's class: whether a call that ended with it is
// worth trying again.
func (c Code) Class() Class {
	if c >= numCodes {
		return Unknown
	}
	return codes[c].class
}

// Outcome returns what a call that ended with the code did on the wire:
// NotSent (nothing ran), Answered (n8n answered), Ambiguous (it may have
// run).
func (c Code) Outcome() Outcome {
	if c >= numCodes {
		return Ambiguous
	}
	return codes[c].outcome
}

// Degraded reports whether the code is a fail-fast refusal of a degraded
// system: CodeCircuitOpen, CodeBudgetExhausted, CodeBulkheadFull.
func (c Code) Degraded() bool { return c < numCodes && codes[c].degraded }

// Ran reports whether the code says n8n ran the workflow.
func (c Code) Ran() bool {
	switch c {
	case CodeWorkflowFailed, CodeWorkflowAnswered, CodeInvalidAnswer:
		return true
	}
	return false
}

// Sentinels matched through the code table (besides those of errors.go).
var (
	// ErrAmbiguous matches the code Ambiguous.
	ErrAmbiguous = errors.New("ambiguous: sent, answer lost, not reconcilable")
	// ErrUnresolved matches the code CodeUnresolved.
	ErrUnresolved = errors.New("unresolved: reconciliation did not settle")
	// ErrKeyConflict matches the code CodeKeyConflict.
	ErrKeyConflict = errors.New("idempotency key conflict")
	// ErrKeyHeld matches the code CodeKeyHeld.
	ErrKeyHeld = errors.New("idempotency key held by another process")
	// ErrLeaseLost matches the code CodeLeaseLost.
	ErrLeaseLost = errors.New("the lease on the key was lost to another process")
)

// Error is the library's error: a Code, what the call was, and the cause
// (the wire's details: *HTTPError, *TransportError, *ResponseError,
// n8napi's *APIError and *ExecutionFailedError, a context's error), which
// errors.As finds. errors.Is matches the sentinels of its code
// (ErrPermanent for a permanent one, ErrCircuitOpen, ...), ErrDeadLettered
// when DeadLetter is set, and whatever its cause matches.
type Error struct {
	// Code says what became of the call.
	Code Code
	// Workflow is the workflow's name as the caller gave it.
	Workflow string
	// Message says what happened, without the workflow and the cause;
	// empty means the code's own text.
	Message string
	// Attempts is the number of attempts made.
	Attempts int
	// ExecutionID is n8n's execution, when known.
	ExecutionID string
	// Node is the failing node, when n8n said.
	Node string
	// Key is the idempotency key, for the codes about keys.
	Key string
	// Owner is the process that holds the key, for CodeKeyHeld.
	Owner string
	// RetryAfter is how long a server or a breaker asked to wait, when
	// one did.
	RetryAfter time.Duration
	// DeadLetter is the dead-letter entry the call was stored as; 0 when
	// it was not.
	DeadLetter int64
	// Err is the cause.
	Err error
}

// Error returns the message: the workflow, the message (the code's text
// when empty) and the cause's message; only the cause's when there is no
// message.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Workflow != "" {
		b.WriteString("workflow ")
		b.WriteString(quote(e.Workflow))
		b.WriteString(": ")
	}
	switch {
	case e.Message == "" && e.Err != nil:
		// The cause says it all (and names the workflow itself).
		b.Reset()
		b.WriteString(e.Err.Error())
	case e.Err != nil:
		b.WriteString(e.Message)
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	case e.Message != "":
		b.WriteString(e.Message)
	default:
		b.WriteString(e.Code.text())
	}
	if e.DeadLetter != 0 {
		fmt.Fprintf(&b, " (stored in the dead-letter queue as entry %d)", e.DeadLetter)
	}
	return b.String()
}

func (c Code) text() string {
	if c >= numCodes {
		return c.String()
	}
	return codes[c].text
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is matches the sentinels of the error's code, ErrPermanent for a
// permanent code, and ErrDeadLettered when the call was stored as a dead
// letter.
func (e *Error) Is(target error) bool {
	if target == ErrDeadLettered {
		return e.DeadLetter != 0
	}
	if target == ErrPermanent && e.Code.Class() == Permanent && e.Code != CodeCanceled && e.Code != CodeCanceledInFlight {
		return true
	}
	if e.Code < numCodes {
		for _, s := range codes[e.Code].is {
			if s == target {
				return true
			}
		}
	}
	return false
}

// ErrorCode returns the error's code.
func (e *Error) ErrorCode() Code { return e.Code }

// Class returns the class of the error's code.
func (e *Error) Class() Class { return e.Code.Class() }

// Outcome returns the wire outcome of the error's code.
func (e *Error) Outcome() Outcome { return e.Code.Outcome() }

// AttemptCount returns the number of attempts made.
func (e *Error) AttemptCount() int { return e.Attempts }

// CodeOf returns the code of err: CodeOK for nil; the code of the first error
// in its chain that has one (an *Error, or a wire error such as
// *HTTPError whose code follows from what n8n answered); CodeCanceled for a
// context's error; the code of a sentinel it wraps (ErrUnknownWorkflow,
// ErrCircuitOpen, ...); CodeUnknown otherwise.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	var c interface{ ErrorCode() Code }
	if errors.As(err, &c) {
		return c.ErrorCode()
	}
	if IsCanceled(err) || errors.Is(err, ErrClosed) {
		return CodeCanceled
	}
	// An error that wraps one of the sentinels (fmt.Errorf("%w: ...")).
	for i := range codes {
		for _, s := range codes[i].is {
			if s != ErrPermanent && errors.Is(err, s) {
				return Code(i)
			}
		}
	}
	return CodeUnknown
}

// DeadLetterOf returns the dead-letter entry err's call was stored as, 0
// when it was not.
func DeadLetterOf(err error) int64 {
	var e *Error
	if errors.As(err, &e) {
		return e.DeadLetter
	}
	return 0
}

// AsError returns err as an *Error the caller may change: a copy of the
// outermost *Error in its chain when that is err itself, else a new
// *Error with err's code and attempts around err. It returns nil for nil.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	if e, ok := err.(*Error); ok {
		c := *e
		return &c
	}
	return &Error{Code: CodeOf(err), Attempts: AttemptsOf(err), Err: err}
}

// Errorf returns an *Error of code c for workflow wf, its message
// formatted.
func Errorf(c Code, wf, format string, args ...any) *Error {
	return &Error{Code: c, Workflow: wf, Message: fmt.Sprintf(format, args...)}
}

// canceledCode is the code of a cancellation: CodeCanceledInFlight when the
// last attempt had been sent.
func canceledCode(sent bool) Code {
	if sent {
		return CodeCanceledInFlight
	}
	return CodeCanceled
}

// NewCanceled returns the error of a call its caller canceled: the
// context's error as cause, the attempts made, and whether the last one
// had been sent (then it may have run).
func NewCanceled(ctx context.Context, wf string, attempts int, sent bool) *Error {
	err := ctx.Err()
	if err == nil {
		err = context.Canceled
	}
	msg := "canceled after " + attemptsText(attempts)
	if sent {
		msg += " (the last one was sent: it may have run)"
	}
	return &Error{Code: canceledCode(sent), Workflow: wf, Attempts: attempts, Message: msg, Err: err}
}
