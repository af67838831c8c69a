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
// workflow (ErrUnknownWorkflow) passes it to the next. When none knows
// it, the answer is one *UnknownWorkflowError that lists the names the
// resolvers know and the last one's hint.
type Chain []Resolver

// Resolve returns the first answer that is not "unknown workflow".
func (ch Chain) Resolve(ctx context.Context, workflow string) (*invocation.Target, error) {
	unknown := &UnknownWorkflowError{Workflow: workflow}
	for _, r := range ch {
		t, err := r.Resolve(ctx, workflow)
		if err == nil || !errors.Is(err, invocation.ErrUnknownWorkflow) {
			return t, err
		}
		var ue *UnknownWorkflowError
		var re *ResolveError
		switch {
		case errors.As(err, &ue):
			unknown.Known = append(unknown.Known, ue.Known...)
			if ue.Hint != "" {
				unknown.Hint = ue.Hint
			}
		case errors.As(err, &re):
			unknown.Hint, unknown.Err = "n8n has no workflow with this id or name either", re
		default:
			unknown.Hint = err.Error()
		}
	}
	return nil, unknown
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
