package pipeline

import (
	"context"
	"errors"
	"sort"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Resolver finds the Target of a workflow name, for any transport.
// Implementations return an error that is Permanent (such as
// *UnknownWorkflowError) for a name they do not know.
type Resolver interface {
	Resolve(ctx context.Context, workflow string) (*invocation.Target, error)
}

// Invalidator is a Resolver with a cache: the retry loop drops a workflow
// from it when its webhook answers "not registered".
type Invalidator interface {
	Invalidate(workflow string)
}

// Chain tries resolvers in order; a resolver that does not know the
// workflow (ErrUnknownWorkflow) passes it to the next. The last one's
// answer stands.
type Chain []Resolver

// Resolve returns the first answer that is not "unknown workflow".
func (ch Chain) Resolve(ctx context.Context, workflow string) (*invocation.Target, error) {
	var err error
	for _, r := range ch {
		var t *invocation.Target
		if t, err = r.Resolve(ctx, workflow); err == nil || !errors.Is(err, invocation.ErrUnknownWorkflow) {
			return t, err
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

// StaticResolver resolves the names of a fixed map, such as the
// configuration's workflows section. Its targets are shared by every
// call (read-only): do not change them once calls are made.
type StaticResolver map[string]*invocation.Target

// Resolve returns the target of workflow or an *UnknownWorkflowError.
func (s StaticResolver) Resolve(_ context.Context, workflow string) (*invocation.Target, error) {
	if t, ok := s[workflow]; ok && t != nil {
		if t.Workflow == "" {
			cp := *t
			cp.Workflow = workflow
			return &cp, nil
		}
		return t, nil
	}
	known := make([]string, 0, len(s))
	for k := range s {
		known = append(known, k)
	}
	sort.Strings(known)
	return nil, &UnknownWorkflowError{Workflow: workflow, Known: known}
}
