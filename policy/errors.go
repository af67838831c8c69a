package policy

import (
	"fmt"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// circuitOpen is the error of a call the circuit breaker of endpoint
// refused without sending it (code invocation.CodeCircuitOpen); its
// RetryAfter is the time until the breaker lets a probe through.
func circuitOpen(endpoint string, state State, retryIn time.Duration) *invocation.Error {
	msg := fmt.Sprintf("circuit breaker %s is %s", endpoint, state)
	if retryIn > 0 {
		msg += fmt.Sprintf(", retry in %s", retryIn.Round(time.Millisecond))
	}
	return &invocation.Error{Code: invocation.CodeCircuitOpen, Message: msg, RetryAfter: retryIn}
}

// bulkheadFull is the error of a call refused because its workflow has
// the most calls in flight allowed (code invocation.CodeBulkheadFull).
func bulkheadFull(workflow string, maxInFlight int) *invocation.Error {
	return &invocation.Error{Code: invocation.CodeBulkheadFull, Workflow: workflow,
		Message: fmt.Sprintf("%d calls already in flight (bulkhead full)", maxInFlight)}
}
