package mcpinvoker

import (
	"fmt"
	"strings"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// CannotCarryError is a call that an MCP run cannot express, refused
// before anything is sent: path parameters, a body that is not a JSON
// object, webhook authentication, a Respond to Webhook node's answer.
type CannotCarryError struct {
	Workflow string
	// What names what cannot be carried.
	What string
}

// Error returns the message.
func (e *CannotCarryError) Error() string {
	return fmt.Sprintf("workflow %q: the MCP transport cannot carry %s; use the webhook transport (permanent, not sent)", e.Workflow, e.What)
}

// Class returns invocation.Permanent.
func (e *CannotCarryError) Class() invocation.Class { return invocation.Permanent }

// Outcome returns invocation.NotSent.
func (e *CannotCarryError) Outcome() invocation.Outcome { return invocation.NotSent }

// Is matches invocation.ErrPermanent.
func (e *CannotCarryError) Is(target error) bool { return target == invocation.ErrPermanent }

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

// RPCError is a JSON-RPC error answer (an unknown tool or method, a bad
// protocol version).
type RPCError struct {
	Workflow string
	Code     int
	Message  string
	Attempts int
}

// Error returns the message.
func (e *RPCError) Error() string {
	return fmt.Sprintf("workflow %q: MCP JSON-RPC error %d: %s (permanent, %d attempt%s)", e.Workflow, e.Code, e.Message, e.Attempts, plural(e.Attempts))
}

// Class returns invocation.Permanent.
func (e *RPCError) Class() invocation.Class { return invocation.Permanent }

// Outcome returns invocation.Answered.
func (e *RPCError) Outcome() invocation.Outcome { return invocation.Answered }

// Is matches invocation.ErrPermanent.
func (e *RPCError) Is(target error) bool { return target == invocation.ErrPermanent }

// AttemptCount returns the number of attempts made.
func (e *RPCError) AttemptCount() int { return e.Attempts }

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
