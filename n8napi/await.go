package n8napi

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// AwaitOptions tunes Await.
type AwaitOptions struct {
	// FirstInterval is the first poll delay (default 100 ms); it grows by
	// half each poll up to MaxInterval (default 2 s).
	FirstInterval time.Duration
	MaxInterval   time.Duration
	// ReturnOnWaiting returns as soon as the execution is waiting (a Wait
	// node), instead of polling until it ends.
	ReturnOnWaiting bool
	// StopOnCancel stops the execution in n8n when ctx is canceled.
	StopOnCancel bool
	// WorkflowID is the execution's workflow, when known: Await then finds
	// the execution in the workflow's list when n8n answers its GET with a
	// 500 (ExecutionsService.Find).
	WorkflowID string
}

// Await polls execution id until it reaches a terminal status (success,
// error, crashed, canceled), or is waiting when opts.ReturnOnWaiting, and
// returns it with its data. polls counts the API calls made.
func (c *Client) Await(ctx context.Context, id string, opts *AwaitOptions) (e *Execution, polls int, err error) {
	o := AwaitOptions{}
	if opts != nil {
		o = *opts
	}
	get := func(ctx context.Context) (*Execution, error) {
		e, _, err := c.Executions.Find(ctx, o.WorkflowID, id, true)
		return e, err
	}
	var stop func(context.Context)
	if o.StopOnCancel {
		stop = func(ctx context.Context) { _, _, _ = c.Executions.Stop(ctx, id) }
	}
	return Poll(ctx, get, stop, &o)
}

// Poll calls get until the execution it returns reaches a terminal
// status, or is waiting when opts.ReturnOnWaiting, with Await's backoff;
// a transient failure of get is polled through, another ends the poll.
// When ctx ends and stop is not nil, stop is called (with a context of
// its own) to stop the execution in n8n. It lets another source of
// executions (the MCP transport's) share Await's loop.
func Poll(ctx context.Context, get func(context.Context) (*Execution, error), stop func(context.Context), opts *AwaitOptions) (e *Execution, polls int, err error) {
	o := AwaitOptions{}
	if opts != nil {
		o = *opts
	}
	if o.FirstInterval <= 0 {
		o.FirstInterval = 100 * time.Millisecond
	}
	if o.MaxInterval <= 0 {
		o.MaxInterval = 2 * time.Second
	}
	wait := o.FirstInterval
	for {
		polls++
		e, err = get(ctx)
		if err == nil && (e.Terminal() || (o.ReturnOnWaiting && e.Status == StatusWaiting)) {
			return e, polls, nil
		}
		if err != nil && ctx.Err() == nil && !IsTransient(err) {
			return nil, polls, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			if stop != nil {
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				stop(sctx)
				cancel()
			}
			return e, polls, ctx.Err()
		case <-t.C:
		}
		wait = min(o.MaxInterval, wait*3/2)
	}
}

// IsTransient reports whether an API error is worth retrying: a 429 or
// 5xx answer, or no answer at all.
func IsTransient(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Class() != invocation.Permanent
	}
	return true
}

// Correlate finds the execution of workflowID whose webhook request
// carried header (lower case, e.g. "x-request-id") with value, among the
// newest executions, running ones included. It polls for up to timeout,
// since n8n lists an execution a moment after it starts. It returns ""
// when none is found.
func (c *Client) Correlate(ctx context.Context, workflowID, header, value string, timeout time.Duration) (id string, calls int, err error) {
	deadline := time.Now().Add(timeout)
	wait := 100 * time.Millisecond
	for {
		for _, status := range []string{StatusRunning, ""} {
			calls++
			execs, _, err := c.Executions.List(ctx, &ExecutionListOptions{WorkflowID: workflowID, Status: status, IncludeData: true, Limit: 25})
			if err != nil {
				return "", calls, err
			}
			for _, e := range execs {
				if headerOf(e, header) == value {
					return e.ID.String(), calls, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", calls, nil
		}
		select {
		case <-ctx.Done():
			return "", calls, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(time.Second, wait*2)
	}
}

// RequestHeader returns the header (lower case, as n8n records it) of the
// request that started e: in the trigger's first item (TriggerItem), ""
// when e has no data or no such header. No other node's "headers"
// counts: a node that calls another service with the same header is not
// the request.
func (e *Execution) RequestHeader(header string) string { return headerOf(e, header) }

func headerOf(e *Execution, header string) string {
	it, ok := e.TriggerItem("")
	if !ok {
		return ""
	}
	return itemHeader(it, header)
}

// TriggerItem returns the first item of the node that started e, with
// its data: trigger names the node when not empty; otherwise it is the
// workflow's Webhook node (from the execution's workflowData), else the
// node whose type is a trigger's, else, without workflowData, the node
// that ran first. A run started through MCP keeps the trigger's item as
// pinned data, which wins over its output.
func (e *Execution) TriggerItem(trigger string) (Item, bool) {
	if e == nil || e.Data == nil {
		return Item{}, false
	}
	rd := &e.Data.ResultData
	if trigger == "" {
		trigger = e.triggerName()
	}
	if trigger == "" {
		return Item{}, false
	}
	if items := rd.PinData[trigger]; len(items) > 0 {
		return items[0], true
	}
	runs := rd.RunData[trigger]
	if len(runs) == 0 || runs[0].Data == nil || len(runs[0].Data.Main) == 0 || len(runs[0].Data.Main[0]) == 0 {
		return Item{}, false
	}
	return runs[0].Data.Main[0][0], true
}

func (e *Execution) triggerName() string {
	rd := &e.Data.ResultData
	has := func(name string) bool { return len(rd.RunData[name]) > 0 || len(rd.PinData[name]) > 0 }
	if e.WorkflowData != nil {
		for _, n := range e.WorkflowData.Nodes {
			if n.Type == WebhookNodeType && has(n.Name) {
				return n.Name
			}
		}
		for _, n := range e.WorkflowData.Nodes {
			if strings.HasSuffix(strings.ToLower(n.Type), "trigger") && has(n.Name) {
				return n.Name
			}
		}
		return ""
	}
	// Without the workflow: the node that started first.
	name, first := "", int64(0)
	for n, runs := range rd.RunData {
		if len(runs) == 0 {
			continue
		}
		if st := runs[0].StartTime; name == "" || st < first || (st == first && n < name) {
			name, first = n, st
		}
	}
	return name
}

func itemHeader(it Item, header string) string {
	if h, ok := it.JSON["headers"].(map[string]any); ok {
		if v, ok := h[header].(string); ok {
			return v
		}
	}
	return ""
}
