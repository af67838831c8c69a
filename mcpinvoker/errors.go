package mcpinvoker

import (
	"fmt"
	"strings"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// cannotCarry is the error of a call that an MCP run cannot express,
// refused before anything is sent (code invocation.CodeBadRequest): path
// parameters, a body that is not a JSON object, webhook authentication, a
// Respond to Webhook node's answer.
func cannotCarry(workflow, what string) *invocation.Error {
	return &invocation.Error{Code: invocation.CodeBadRequest, Workflow: workflow,
		Message: fmt.Sprintf("the MCP transport cannot carry %s; use the webhook transport (permanent, not sent)", what)}
}

// ToolError is an MCP tool that answered with a failure. n8n sends its
// tool failures as a successful JSON-RPC result with status "error" (the
// workflow is unknown, not available in MCP, has no published version,
// the trigger or inputs do not fit); Invalid marks the arguments failing
// the tool's schema (isError). Nothing ran.
type ToolError struct {
	Workflow string
	Tool     string
	// Message is n8n's error text.
	Message string
	Invalid bool
	// Attempts is the number of attempts made.
	Attempts int
}

// Error returns the message.
func (e *ToolError) Error() string {
	return fmt.Sprintf("workflow %q: MCP %s: %s (%s, %d attempt%s)", e.Workflow, e.Tool, e.Message, e.Class(), e.Attempts, plural(e.Attempts))
}

// NotPublished reports n8n's "has no published (active) version": for
// about a second after a workflow is published, that answer is n8n
// catching up.
func (e *ToolError) NotPublished() bool {
	return strings.Contains(strings.ToLower(e.Message), "no published")
}

// Class returns invocation.Transient for "no published version" (retried
// briefly: see NotPublished), invocation.Permanent otherwise.
func (e *ToolError) Class() invocation.Class {
	if e.NotPublished() && !e.Invalid {
		return invocation.Transient
	}
	return invocation.Permanent
}

// Outcome returns invocation.Answered: the server answered, nothing ran.
func (e *ToolError) Outcome() invocation.Outcome { return invocation.Answered }

// Is matches invocation.ErrPermanent for a permanent failure.
func (e *ToolError) Is(target error) bool {
	return target == invocation.ErrPermanent && e.Class() == invocation.Permanent
}

// AttemptCount returns the number of attempts made.
func (e *ToolError) AttemptCount() int { return e.Attempts }

// ErrorCode returns invocation.CodeUnavailable for "no published
// version" (n8n catching up), invocation.CodeRejected otherwise: nothing
// ran.
func (e *ToolError) ErrorCode() invocation.Code {
	if e.Class() == invocation.Transient {
		return invocation.CodeUnavailable
	}
	return invocation.CodeRejected
}

// rpcError is the error of a JSON-RPC error answer (an unknown tool or
// method, a bad protocol version): code invocation.CodeRejected.
func rpcError(workflow string, code int, message string) *invocation.Error {
	return &invocation.Error{Code: invocation.CodeRejected, Workflow: workflow,
		Message: fmt.Sprintf("MCP JSON-RPC error %d: %s", code, message)}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
