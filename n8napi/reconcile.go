package n8napi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Defaults of ReconcileOptions.
const (
	DefaultReconcileSettle  = time.Second
	DefaultReconcileSkew    = 5 * time.Second
	DefaultReconcileTimeout = 2 * time.Minute
	// DefaultReconcileMaxPages bounds the match: pages of
	// reconcileMatchLimit executions with their data.
	DefaultReconcileMaxPages = 20
	// DefaultRetentionMaxAge and DefaultRetentionMaxCount are n8n's own
	// pruning defaults (EXECUTIONS_DATA_MAX_AGE, 336 hours, and
	// EXECUTIONS_DATA_PRUNE_MAX_COUNT).
	DefaultRetentionMaxAge   = 14 * 24 * time.Hour
	DefaultRetentionMaxCount = 10_000
)

// reconcileMatchLimit is the page size of the match (executions with
// their data); the snapshot, without data, asks for n8n's most, 250.
const reconcileMatchLimit = 100

// Retention is how long n8n keeps executions: it prunes those older
// than MaxAge and all but the newest MaxCount, outside its API. A zero
// field is not checked.
type Retention struct {
	// MaxAge is how long n8n keeps an execution.
	MaxAge time.Duration
	// MaxCount is how many executions n8n keeps across the instance.
	MaxCount int
}

// ReconcileOptions bound a reconciliation.
type ReconcileOptions struct {
	// Settle is waited first, for executions n8n has not created yet
	// (default DefaultReconcileSettle).
	Settle time.Duration
	// Skew is the clock margin used only when n8n's answers carry no Date
	// header (default DefaultReconcileSkew); otherwise the offset of n8n's
	// clock is measured from that header.
	Skew time.Duration
	// Timeout bounds the whole reconciliation: the wait for the executions
	// that were running to end and the match (default
	// DefaultReconcileTimeout). Past it the outcome is unresolved.
	Timeout time.Duration
	// MaxPages bounds the match's pages (default
	// DefaultReconcileMaxPages); when they end before the window's start
	// the outcome is unresolved.
	MaxPages int
	// TriggerNode names the workflow's trigger node when known; empty: it
	// is found in each execution's workflow data.
	TriggerNode string
	// Retention is n8n's execution retention: a key not found in a window
	// that started longer ago than it, or with more executions since than
	// it keeps, is unresolved (n8n may have pruned it), not "not run".
	Retention Retention
}

// Reconciliation is what Reconcile found.
type Reconciliation struct {
	// Execution is the execution whose request carried the value, with
	// its data; nil when none did. It may still be running or waiting:
	// ResultOf maps it.
	Execution *Execution
	// Unresolved is true when nobody can tell yet: an execution that may
	// be the one was still running at the timeout, the match's pages ran
	// out before the window's start, or n8n may have pruned it. Reason
	// says which.
	Unresolved bool
	// Reason explains an unresolved outcome.
	Reason string
	// Calls counts the API calls made, Bytes the bytes of their answers.
	Calls int
	Bytes int64
	// Offset is how far n8n's clock is at least ahead of this process's
	// (negative: behind), measured from the Date header of its answers;
	// From is the window's start on n8n's clock.
	Offset time.Duration
	From   time.Time
}

func (r *Reconciliation) unresolved(format string, args ...any) *Reconciliation {
	r.Execution, r.Unresolved, r.Reason = nil, true, fmt.Sprintf(format, args...)
	return r
}

// Reconcile tells whether a request whose answer was lost ran in n8n:
// among workflowID's executions started at or after since (the first
// attempt that may have reached n8n, on this process's clock), the one
// whose trigger's first item recorded header = value (header in lower
// case, as n8n records it). n8n stores a request's headers only when its
// execution ends or waits (unless the workflow saves its progress), so it
// runs in two phases after the settle delay: a snapshot, without data,
// of every execution that is new, running or waiting and started in the
// window (paged to the window's start, no cap), a wait for each of them
// to end; then a match, with data, newest first back to the window's
// start, bounded by MaxPages and by Timeout. The window's start is moved
// to n8n's clock by the offset its Date header shows. When nothing
// matches, the retention and the workflow's saved-execution settings are
// checked: a key n8n may have pruned or never saved is unresolved.
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
	if opt.MaxPages <= 0 {
		opt.MaxPages = DefaultReconcileMaxPages
	}
	deadline := time.Now().Add(opt.Timeout)
	cc := &CallCounter{}
	ctx = WithCallCounter(ctx, cc)
	r := &Reconciliation{}
	defer func() { r.Calls, r.Bytes = cc.Count(), cc.Bytes() }()
	if err := invocation.WaitReleased(ctx, opt.Settle, nil); err != nil {
		return r, err
	}
	rc := &reconciler{c: c, wf: workflowID, r: r, since: since, skew: opt.Skew}

	// Phase 1, the snapshot: what may still become the execution.
	var pending []string
	for _, status := range []string{StatusRunning, StatusNew, StatusWaiting} {
		opts := &ExecutionListOptions{WorkflowID: workflowID, Status: status, Limit: 250}
		ok := true
		for ok {
			page, more, err := rc.page(ctx, opts)
			var ae *APIError
			if errors.As(err, &ae) && ae.StatusCode == http.StatusBadRequest {
				break // a status this n8n does not filter on (1.x: new)
			}
			if err != nil {
				return r, err
			}
			for _, e := range page {
				if rc.inWindow(e) {
					pending = append(pending, e.ID.String())
				} else {
					more = false // newest first: the window's start is passed
				}
			}
			ok = more
			if ok && time.Now().After(deadline) {
				return r.unresolved("the snapshot of running executions did not reach the window's start within %s", opt.Timeout), nil
			}
		}
	}
	// Wait for each of that fixed set to end (or wait: its data is saved).
	wait := 100 * time.Millisecond
	for len(pending) > 0 {
		still := pending[:0]
		for _, id := range pending {
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
			r.unresolved("%d execution(s) that started after the attempt were still running after %s", len(pending), opt.Timeout)
			break
		}
		if err := invocation.WaitReleased(ctx, min(wait, time.Until(deadline)+time.Millisecond), nil); err != nil {
			return r, err
		}
		wait = min(2*time.Second, wait*2)
	}

	// Phase 2, the match: newest first, with data, back to the window's
	// start, bounded. Then the running ones (the unfiltered list leaves
	// them out), which show the header only when they save progress.
	pages := 0
	before := "" // the newest execution of the workflow before the window
	for _, status := range []string{"", StatusRunning} {
		opts := &ExecutionListOptions{WorkflowID: workflowID, Status: status, IncludeData: true, Limit: reconcileMatchLimit}
		for {
			if pages >= opt.MaxPages {
				return r.unresolved("the match's %d pages of executions ended before the window's start", opt.MaxPages), nil
			}
			if pages > 0 && time.Now().After(deadline) {
				if r.Unresolved {
					return r, nil // the wait's reason
				}
				return r.unresolved("the match did not reach the window's start within %s", opt.Timeout), nil
			}
			pages++
			page, more, err := rc.page(ctx, opts)
			if err != nil {
				if status != "" {
					break // best effort
				}
				return r, err
			}
			for _, e := range page {
				if !rc.inWindow(e) {
					if before == "" && status == "" {
						before = e.ID.String()
					}
					more = false
					break
				}
				if it, ok := e.TriggerItem(opt.TriggerNode); ok && itemHeader(it, header) == value {
					r.Execution, r.Unresolved, r.Reason = e, false, ""
					return r, nil
				}
			}
			if !more {
				break
			}
		}
	}
	if r.Unresolved {
		return r, nil
	}
	// Not found: is that because n8n never ran it, or because n8n pruned
	// it or never saved it?
	if reason, err := rc.lost(ctx, opt.Retention, before); err != nil || reason != "" {
		if err != nil {
			return r, err
		}
		return r.unresolved("%s", reason), nil
	}
	return r, nil
}

// reconciler holds one reconciliation's state: the window on n8n's clock
// and whether this n8n filters by start time.
type reconciler struct {
	c     *Client
	wf    string
	r     *Reconciliation
	since time.Time
	skew  time.Duration
	from  time.Time // zero until the first answer's Date is read
}

// page lists one page of opts (then moves opts to the next), measuring
// n8n's clock from the first answer and filtering by start time where
// n8n accepts it; more is false on the last page.
func (rc *reconciler) page(ctx context.Context, opts *ExecutionListOptions) ([]*Execution, bool, error) {
	if !rc.from.IsZero() && !rc.c.noStartedAfter.Load() && opts.Status != "" && opts.Status != StatusNew && !opts.IncludeData && opts.Cursor == "" {
		// A snapshot's first page: n8n filters, and keeps filtering on
		// the next pages (strictly after: less 1 ms). Not for new
		// executions: a queued one (queue mode) has no start time yet,
		// and n8n's filter leaves it out.
		opts.StartedAfter = rc.from.Add(-time.Millisecond)
	}
	page, resp, err := rc.c.Executions.List(ctx, opts)
	var ae *APIError
	if !opts.StartedAfter.IsZero() && errors.As(err, &ae) && ae.StatusCode == http.StatusBadRequest {
		// n8n 1.x has no startedAfter: filter here.
		opts.StartedAfter = time.Time{}
		if page, resp, err = rc.c.Executions.List(ctx, opts); err == nil {
			rc.c.noStartedAfter.Store(true)
		}
	}
	if err != nil {
		return nil, false, err
	}
	if rc.from.IsZero() {
		rc.r.Offset = -rc.skew
		if d, derr := http.ParseTime(resp.Header.Get("Date")); derr == nil {
			// n8n's clock read d (rounded down to the second) at some
			// moment before now: it is at least d - now ahead.
			rc.r.Offset = time.Until(d)
		}
		rc.from = rc.since.Add(rc.r.Offset)
		rc.r.From = rc.from
	}
	opts.Cursor = resp.NextCursor
	return page, resp.NextCursor != "", nil
}

// inWindow reports whether e started at or after the window's start (an
// execution without a start time is counted in).
func (rc *reconciler) inWindow(e *Execution) bool {
	return e.StartedAt == nil || !e.StartedAt.Before(rc.from)
}

// lost says why a key that was not found may still have run: n8n may
// have pruned its execution (older than the retention's age, or more
// executions since than it keeps), or the workflow saves none of its
// successful or failed executions. "" when not found means not run.
// before is the id of the workflow's newest execution before the
// window, "" when none was seen.
func (rc *reconciler) lost(ctx context.Context, ret Retention, before string) (string, error) {
	nowN8N := time.Now().Add(rc.r.Offset)
	if ret.MaxAge > 0 && nowN8N.Sub(rc.from) > ret.MaxAge {
		return fmt.Sprintf("its first attempt was %s ago, past n8n's execution retention of %s: n8n may have pruned its execution (not re-sent)",
			nowN8N.Sub(rc.from).Round(time.Second), ret.MaxAge), nil
	}
	w, _, err := rc.c.Workflows.Get(ctx, rc.wf)
	if err != nil {
		return "", err
	}
	var s struct {
		Success string `json:"saveDataSuccessExecution"`
		Error   string `json:"saveDataErrorExecution"`
	}
	_ = json.Unmarshal(w.Settings, &s)
	switch {
	case s.Success == "none":
		return "the workflow's settings save no successful executions (saveDataSuccessExecution: none): n8n cannot tell whether it ran (not re-sent)", nil
	case s.Error == "none":
		return "the workflow's settings save no failed executions (saveDataErrorExecution: none): n8n cannot tell whether it ran (not re-sent)", nil
	}
	if ret.MaxCount <= 0 {
		return "", nil
	}
	// n8n's ids count up across the instance: ours, if it ran, is newer
	// than the newest execution before the window, the workflow's (seen by
	// the match) or, closer, the instance's (where n8n filters by start).
	newest, _, err := rc.c.Executions.List(ctx, &ExecutionListOptions{Limit: 1})
	if err != nil || len(newest) == 0 {
		return "", err
	}
	n, nerr := strconv.ParseInt(newest[0].ID.String(), 10, 64)
	if nerr != nil {
		return "", nil // not n8n's numeric ids: nothing to count
	}
	b, berr := strconv.ParseInt(before, 10, 64)
	if berr != nil {
		b = 0 // no execution of the workflow before the window is left
	}
	if n-b >= int64(ret.MaxCount) && !rc.c.noStartedAfter.Load() {
		if prior, _, perr := rc.c.Executions.List(ctx, &ExecutionListOptions{Limit: 1, StartedBefore: rc.from}); perr == nil && len(prior) > 0 {
			if p, err := strconv.ParseInt(prior[0].ID.String(), 10, 64); err == nil && p > b {
				b = p
			}
		}
	}
	if n-b >= int64(ret.MaxCount) {
		return fmt.Sprintf("n8n has run up to %d executions since its first attempt, past its execution retention of %d: n8n may have pruned its execution (not re-sent)",
			n-b, ret.MaxCount), nil
	}
	return "", nil
}
