package n8napi

import (
	"context"
	"errors"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Defaults of ReconcileOptions.
const (
	DefaultReconcileSettle  = time.Second
	DefaultReconcileSkew    = 5 * time.Second
	DefaultReconcileTimeout = 2 * time.Minute
	DefaultReconcileMaxPages = 20
)

// ReconcileOptions bound a reconciliation.
type ReconcileOptions struct {
	// Settle is waited first, for executions n8n has not created yet
	// (default DefaultReconcileSettle).
	Settle time.Duration
	// Skew is the clock-skew margin: executions started up to Skew before
	// the attempt are looked at too (default DefaultReconcileSkew).
	Skew time.Duration
	// Timeout bounds the wait for the executions that were running to end
	// (default DefaultReconcileTimeout). When it expires the outcome is
	// unresolved.
	Timeout time.Duration
}

// Reconciliation is what Reconcile found.
type Reconciliation struct {
	// Execution is the execution whose request carried the value, with
	// its data; nil when none did.
	Execution *Execution
	// Unresolved is true when an execution that may be the one was still
	// running when the timeout expired: nobody can tell yet.
	Unresolved bool
	// Calls counts the API calls made.
	Calls int
}

// Reconcile tells whether a request whose answer was lost ran in n8n:
// among workflowID's executions started at or after since (less the skew),
// the one whose webhook request carried header = value. n8n stores a
// request's headers only when its execution ends (unless the workflow
// saves its progress), so it is "snapshot, then wait, then match": after
// the settle delay it takes the set of executions that are new, running
// or waiting, waits for each of them to end (bounded by the timeout), and
// then matches the header in the data of the executions, paging as far
// back as since. header is lower-case, as n8n records it.
func (c *Client) Reconcile(ctx context.Context, workflowID, header, value string, since time.Time, o *ReconcileOptions) (*Reconciliation, error) {
	opt := ReconcileOptions{}
	if o != nil {
		opt = *o
	}
	if opt.Settle <= 0 {
		opt.Settle = DefaultReconcileSettle
	}
	if opt.Skew <= 0 {
		opt.Skew = DefaultReconcileSkew
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultReconcileTimeout
	}
	from := since.Add(-opt.Skew)
	r := &Reconciliation{}
	if err := invocation.WaitReleased(ctx, opt.Settle, nil); err != nil {
		return r, err
	}
	// Snapshot: what may still become the execution.
	var pending []string
	for _, status := range []string{StatusRunning, StatusNew, StatusWaiting} {
		r.Calls++
		execs, _, err := c.Executions.List(ctx, &ExecutionListOptions{WorkflowID: workflowID, Status: status, Limit: 250})
		var ae *APIError
		if errors.As(err, &ae) && ae.StatusCode == 400 {
			continue // a status this n8n does not filter on (1.x)
		}
		if err != nil {
			return r, err
		}
		for _, e := range execs {
			if e.StartedAt == nil || !e.StartedAt.Before(from) {
				pending = append(pending, e.ID.String())
			}
		}
	}
	// Wait for each of that fixed set to end.
	deadline := time.Now().Add(opt.Timeout)
	wait := 100 * time.Millisecond
	for len(pending) > 0 {
		still := pending[:0]
		for _, id := range pending {
			r.Calls++
			e, _, err := c.Executions.Find(ctx, workflowID, id, false)
			if IsNotFound(err) {
				continue
			}
			if err != nil {
				return r, err
			}
			if !e.Terminal() && e.Status != StatusWaiting {
				still = append(still, id)
			}
		}
		pending = still
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			r.Unresolved = true
			break
		}
		if err := invocation.WaitReleased(ctx, wait, nil); err != nil {
			return r, err
		}
		wait = min(2*time.Second, wait*2)
	}
	// Match, newest first, back to the attempt (each page retried on its
	// own by the client's policy when n8n's API fails for a moment).
	opts := &ExecutionListOptions{WorkflowID: workflowID, IncludeData: true, Limit: 100}
	for {
		r.Calls++
		page, resp, err := c.Executions.List(ctx, opts)
		if err != nil {
			return r, err
		}
		done := false
		for _, e := range page {
			if e.StartedAt != nil && e.StartedAt.Before(from) {
				done = true
				break
			}
			if headerOf(e, header) == value {
				r.Execution, r.Unresolved = e, false
				return r, nil
			}
		}
		if done || resp == nil || resp.NextCursor == "" {
			break
		}
		opts.Cursor = resp.NextCursor
	}
	// The unfiltered list leaves running executions out: one that saves
	// its progress may show the header while it runs.
	for _, status := range []string{StatusRunning, StatusWaiting} {
		r.Calls++
		execs, _, err := c.Executions.List(ctx, &ExecutionListOptions{WorkflowID: workflowID, Status: status, IncludeData: true, Limit: 250})
		if err != nil {
			continue
		}
		for _, e := range execs {
			if headerOf(e, header) == value {
				r.Execution, r.Unresolved = e, false
				return r, nil
			}
		}
	}
	return r, nil
}
