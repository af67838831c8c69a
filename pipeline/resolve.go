package pipeline

import (
	"context"
	"errors"
	"sort"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Resolver finds the Target of a workflow name, for any transport.
// Implementations return an error that is Permanent (such as
// an error of code invocation.CodeUnknownWorkflow) for a name they do not know.
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
// it, the answer is one an error of code invocation.CodeUnknownWorkflow that lists the names the
// resolvers know and the last one's hint.
type Chain []Resolver

// Resolve returns the first answer that is not "unknown workflow".
func (ch Chain) Resolve(ctx context.Context, workflow string) (*invocation.Target, error) {
	var known []string
	var hint string
	var cause error
	for _, r := range ch {
		t, err := r.Resolve(ctx, workflow)
		if err == nil || !errors.Is(err, invocation.ErrUnknownWorkflow) {
			return t, err
		}
		var un *unknownNames
		var nf notInN8N
		switch {
		case errors.As(err, &nf):
			hint, cause = "n8n has no workflow with this id or name either", err
		case errors.As(err, &un):
			known = append(known, un.known...)
			if un.hint != "" {
				hint = un.hint
			}
		default:
			hint = err.Error()
		}
	}
	return nil, UnknownWorkflow(workflow, known, hint, cause)
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

// Resolve returns the target of workflow or an an error of code invocation.CodeUnknownWorkflow.
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
	return nil, UnknownWorkflow(workflow, known, "", nil)
}
