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
	return nil, unknownTransport(a.Request.Workflow, name)
}

// TransportWebhook names the default transport, n8n's webhooks.
const TransportWebhook = "webhook"

// unknownTransport is the error of a target naming a transport the
// manager does not have (an MCP workflow without an MCP token, for
// example): code invocation.CodeBadRequest, nothing was sent.
func unknownTransport(workflow, name string) *invocation.Error {
	return &invocation.Error{Code: invocation.CodeBadRequest, Workflow: workflow,
		Message: fmt.Sprintf("no %q transport is configured (permanent, not sent)", name)}
}
