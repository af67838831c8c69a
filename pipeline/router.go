package pipeline

import (
	"context"
	"fmt"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Router is the pipeline's transport when workflows are served by more
// than one: each attempt goes to the transport its Target names
// (Target.Transport; empty means Default). Every transport gets every
// stage above it.
type Router struct {
	Default invocation.Transport
	// ByName holds the other transports, e.g. "mcp".
	ByName map[string]invocation.Transport
}

// Attempt passes a to the transport of its target.
func (r *Router) Attempt(ctx context.Context, a *invocation.Attempt) (*invocation.Result, error) {
	name := a.Target.Transport
	if name == "" || name == TransportWebhook {
		return r.Default.Attempt(ctx, a)
	}
	if t, ok := r.ByName[name]; ok && t != nil {
		return t.Attempt(ctx, a)
	}
	return nil, &UnknownTransportError{Workflow: a.Request.Workflow, Transport: name}
}

// TransportWebhook names the default transport, n8n's webhooks.
const TransportWebhook = "webhook"

// UnknownTransportError is a target naming a transport the manager does
// not have (an MCP workflow without an MCP token, for example). Nothing
// was sent.
type UnknownTransportError struct {
	Workflow, Transport string
}

// Error returns the message.
func (e *UnknownTransportError) Error() string {
	return fmt.Sprintf("workflow %q: no %q transport is configured (permanent, not sent)", e.Workflow, e.Transport)
}

// Class returns invocation.Permanent.
func (e *UnknownTransportError) Class() invocation.Class { return invocation.Permanent }

// Outcome returns invocation.NotSent.
func (e *UnknownTransportError) Outcome() invocation.Outcome { return invocation.NotSent }

// Is matches invocation.ErrPermanent.
func (e *UnknownTransportError) Is(target error) bool { return target == invocation.ErrPermanent }
