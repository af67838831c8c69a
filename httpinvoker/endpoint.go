package httpinvoker

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Endpoint is the webhook of one workflow.
type Endpoint struct {
	// Path is the webhook node's path, served at <base>/webhook/<path>.
	Path string
	// Method is the HTTP method; empty means POST.
	Method string
	// ResponseMode is the node's response mode (config.ResponseMode...);
	// with onReceived the result only says the workflow started.
	ResponseMode string
	// Timeout overrides the invoker's attempt timeout when not zero.
	Timeout time.Duration
	// Auth is the webhook's authentication.
	Auth config.Auth
	// ID is the n8n workflow id, when known.
	ID string
}

// Invalidator is a Resolver with a cache: the invoker drops a workflow
// from it when its webhook answers "not registered".
type Invalidator interface {
	Invalidate(workflow string)
}

// Chain tries resolvers in order; a resolver that does not know the
// workflow (ErrUnknownWorkflow) passes it to the next. The last one's
// answer stands.
type Chain []Resolver

// Resolve returns the first answer that is not "unknown workflow".
func (ch Chain) Resolve(ctx context.Context, workflow string) (*Endpoint, error) {
	var err error
	for _, r := range ch {
		var ep *Endpoint
		if ep, err = r.Resolve(ctx, workflow); err == nil || !errors.Is(err, invocation.ErrUnknownWorkflow) {
			return ep, err
		}
	}
	return nil, err
}

// Invalidate passes the invalidation to every resolver that caches.
func (ch Chain) Invalidate(workflow string) {
	for _, r := range ch {
		if inv, ok := r.(Invalidator); ok {
			inv.Invalidate(workflow)
		}
	}
}

// Resolver finds the webhook of a workflow name. Implementations return
// an error that is Permanent (such as *invocation.UnknownWorkflowError) for a
// name they do not know.
type Resolver interface {
	Resolve(ctx context.Context, workflow string) (*Endpoint, error)
}

// StaticResolver resolves the names of a fixed map, such as the
// configuration's workflows section.
type StaticResolver map[string]Endpoint

// Resolve returns the endpoint of workflow or an *UnknownWorkflowError.
func (s StaticResolver) Resolve(_ context.Context, workflow string) (*Endpoint, error) {
	if e, ok := s[workflow]; ok {
		return &e, nil
	}
	known := make([]string, 0, len(s))
	for k := range s {
		known = append(known, k)
	}
	sort.Strings(known)
	return nil, &invocation.UnknownWorkflowError{Workflow: workflow, Known: known}
}

// ResolverFromConfig returns the resolver of the configuration's
// workflows section.
func ResolverFromConfig(cfg *config.Config) StaticResolver {
	r := make(StaticResolver, len(cfg.Workflows))
	for name, w := range cfg.Workflows {
		r[name] = Endpoint{
			Path: w.Path, Method: w.Method, ResponseMode: w.ResponseMode,
			Timeout: w.Timeout.D(), Auth: w.Auth, ID: w.ID,
		}
	}
	return r
}
