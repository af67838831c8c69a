package policy

import (
	"fmt"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// CircuitOpenError is a call refused without being sent because the
// circuit breaker of its endpoint is open (or half-open with all probes
// taken).
type CircuitOpenError struct {
	Workflow string
	// Endpoint is the breaker's name (the workflow's webhook).
	Endpoint string
	// State is "open" or "half-open".
	State string
	// RetryIn is the time until the breaker lets a probe through.
	RetryIn time.Duration
	// Attempts is the number of attempts made before the refusal.
	Attempts int
	// Last is the error of the last attempt, if any was made.
	Last error
}

// Error returns the message.
func (e *CircuitOpenError) Error() string {
	s := fmt.Sprintf("workflow %q: circuit breaker %s is %s, retry in %s (%d attempt%s)",
		e.Workflow, e.Endpoint, e.State, e.RetryIn.Round(time.Millisecond), e.Attempts, pluralS(e.Attempts))
	if e.Last != nil {
		s += ": last error: " + e.Last.Error()
	}
	return s
}

// Unwrap returns the last attempt's error, if any.
func (e *CircuitOpenError) Unwrap() error { return e.Last }

// invocation.Outcome returns invocation.NotSent: the breaker refused the attempt.
func (e *CircuitOpenError) Outcome() invocation.Outcome { return invocation.NotSent }

// Is matches invocation.ErrCircuitOpen.
func (e *CircuitOpenError) Is(target error) bool { return target == invocation.ErrCircuitOpen }

// invocation.Class returns invocation.Transient: the call may succeed once the endpoint recovers.
func (e *CircuitOpenError) Class() invocation.Class { return invocation.Transient }

// BudgetExhaustedError ends an invocation whose retry the client-wide
// retry budget refused; Last is the error that would have been retried.
type BudgetExhaustedError struct {
	Workflow string
	Attempts int
	Last     error
}

// Error returns the message.
func (e *BudgetExhaustedError) Error() string {
	return fmt.Sprintf("workflow %q: retry budget exhausted after %d attempt%s: %v", e.Workflow, e.Attempts, pluralS(e.Attempts), e.Last)
}

// Unwrap returns the last attempt's error.
func (e *BudgetExhaustedError) Unwrap() error { return e.Last }

// Is matches invocation.ErrRetryBudgetExhausted.
func (e *BudgetExhaustedError) Is(target error) bool {
	return target == invocation.ErrRetryBudgetExhausted
}

// invocation.Class returns invocation.Transient.
func (e *BudgetExhaustedError) Class() invocation.Class { return invocation.Transient }

// BulkheadError is a call refused because its workflow already has the
// maximum number of calls in flight and none ended within the wait.
type BulkheadError struct {
	Workflow    string
	MaxInFlight int
}

// Error returns the message.
func (e *BulkheadError) Error() string {
	return fmt.Sprintf("workflow %q: %d calls already in flight (bulkhead full)", e.Workflow, e.MaxInFlight)
}

// Is matches invocation.ErrBulkheadFull.
func (e *BulkheadError) Is(target error) bool { return target == invocation.ErrBulkheadFull }

// invocation.Class returns invocation.Transient.
func (e *BulkheadError) Class() invocation.Class { return invocation.Transient }

// AttemptCount returns the number of attempts made.
func (e *CircuitOpenError) AttemptCount() int { return e.Attempts }

// AttemptCount returns the number of attempts made.
func (e *BudgetExhaustedError) AttemptCount() int { return e.Attempts }

func pluralS(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
