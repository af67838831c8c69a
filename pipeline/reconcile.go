package pipeline

import (
	"context"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Verdict is what a reconciliation found of an ambiguous attempt.
type Verdict int

const (
	// NotRun: n8n has no execution of the call; re-sending is safe.
	NotRun Verdict = iota
	// Ran: the call ran and succeeded; Result is its outcome.
	Ran
	// RanAndFailed: the call ran and failed; Err says how.
	RanAndFailed
	// Crashed: n8n died while running it; it is re-sent once.
	Crashed
	// Unresolved: nothing could be settled within the bound.
	Unresolved
)

// Reconciled is a reconciliation's answer.
type Reconciled struct {
	Verdict Verdict
	Result  *invocation.Result
	Err     error
	// Reason explains an Unresolved verdict.
	Reason string
}

// Reconciler tells whether an ambiguous attempt of c ran in n8n (by its
// Idempotency-Key): since is when the call's first ambiguous attempt was
// sent (c.FirstAmbiguous), so that every reconcile of a call looks at
// every attempt that may have run. The manager's reconciles through
// n8n's executions API when an API key is configured.
type Reconciler interface {
	Reconcile(ctx context.Context, c *Call, since time.Time) Reconciled
}

// ReconcilerFunc adapts a function to Reconciler.
type ReconcilerFunc func(ctx context.Context, c *Call, since time.Time) Reconciled

// Reconcile calls f.
func (f ReconcilerFunc) Reconcile(ctx context.Context, c *Call, since time.Time) Reconciled {
	return f(ctx, c, since)
}
