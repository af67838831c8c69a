package n8napi

import (
	"fmt"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// ExecutionFailedError is an execution that n8n reports as ended without
// success (error, crashed, canceled), with n8n's own error message and
// failing node, which the webhook's 500 "Error in workflow" hides.
type ExecutionFailedError struct {
	Workflow    string
	ExecutionID string
	// Status is n8n's execution status: error, crashed or canceled.
	Status string
	// Message is n8n's error message; Node the failing node.
	Message string
	Node    string
	// Attempts is the number of webhook attempts made.
	Attempts int
}

// Error returns the message.
func (e *ExecutionFailedError) Error() string {
	s := fmt.Sprintf("workflow %q: execution %s %s", e.Workflow, e.ExecutionID, e.Status)
	if e.Node != "" {
		s += fmt.Sprintf(" in node %q", e.Node)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// invocation.Class returns invocation.Permanent: the workflow ran.
func (e *ExecutionFailedError) Class() invocation.Class { return invocation.Permanent }

// Is matches invocation.ErrWorkflowFailed and invocation.ErrPermanent.
func (e *ExecutionFailedError) Is(target error) bool {
	return target == invocation.ErrWorkflowFailed || target == invocation.ErrPermanent
}

// AttemptCount returns the number of attempts made.
func (e *ExecutionFailedError) AttemptCount() int { return e.Attempts }

// ErrorCode returns invocation.CodeWorkflowFailed: the workflow ran.
func (e *ExecutionFailedError) ErrorCode() invocation.Code { return invocation.CodeWorkflowFailed }
