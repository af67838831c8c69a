package invoker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/n8n-invoker/n8n-invoker/hooks"
	"github.com/n8n-invoker/n8n-invoker/httpinvoker"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/mcpinvoker"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
	"github.com/n8n-invoker/n8n-invoker/pipeline"
)

// buildPipeline composes the manager's stages in the pipeline's order
// (pipeline.Stages documents it): each stage below is one method of the
// manager or one value of its layer.
func (m *Manager) buildPipeline(resolve pipeline.Resolver) error {
	h := &m.cfg.Invokers.HTTP
	retry, err := retryFromConfig(h)
	if err != nil {
		return err
	}
	if m.breakers, err = breakersFromConfig(h.CircuitBreaker, m.fallback != nil, m.breakerChanged); err != nil {
		return err
	}
	limiter, err := limiterFromConfig(h.RateLimit, h.Retry.MaxRetryAfter.D())
	if err != nil {
		return err
	}
	m.bulkhead = bulkheadFromConfig(h.Bulkhead)
	retry.RetryAmbiguous = h.RetryAmbiguous
	if m.api != nil {
		retry.Reconciler = pipeline.ReconcilerFunc(m.reconcileAttempt)
	}
	s := pipeline.Stages{
		Resolve:      resolve,
		Dedupe:       pipeline.CallFunc(m.dedupeStage),
		Hooks:        pipeline.CallFunc(m.hooksStage),
		CallSpan:     pipeline.CallFunc(m.spanStage),
		Bulkhead:     m.bulkhead,
		Await:        pipeline.CallFunc(m.awaitStage),
		Interceptors: m.interceptors,
		Retry:        retry,
		Sign:         httpinvoker.Signer{},
		Fence:        pipeline.AttemptFunc(m.fence),
		Transport:    m.transport,
	}
	if m.mcp != nil {
		s.Transport = &pipeline.Router{Default: m.transport, ByName: map[string]invocation.Transport{mcpinvoker.Name: m.mcp}}
	}
	switch {
	case m.rateLimit != nil:
		s.RateLimit = m.rateLimit // a fleet's shared limit (WithRateLimiter)
	case limiter != nil:
		s.RateLimit = limiter
	}
	if m.breakers != nil {
		s.Breakers = m.breakers
	}
	if m.dlq != nil {
		s.Journal = pipeline.CallFunc(m.journalStage)
	}
	if m.fallback != nil {
		s.Fallback = pipeline.CallFunc(m.fallbackStage)
	}
	if m.tel.Tracing() { // without tracing, no attempt stage in the hot path
		s.AttemptSpan = m.tel.AttemptSpan()
	}
	m.pipe, err = pipeline.New(s)
	return err
}

// Stages returns the names of the pipeline's stages, top to bottom.
func (m *Manager) Stages() []string { return m.pipe.Names() }

// fallbackStage runs the fallback for a degraded failure.
func (m *Manager) fallbackStage(ctx context.Context, c *pipeline.Call, next pipeline.CallHandler) (*invocation.Result, error) {
	res, err := next(ctx, c)
	if err == nil || invocation.IsCanceled(err) || !m.fallbackOn(err) {
		return res, err
	}
	res, ferr := m.fallback(ctx, c.Request, err)
	if ferr != nil {
		return nil, ferr
	}
	if res == nil {
		return nil, err
	}
	res.Degraded = true
	return res, nil
}

// hooksStage runs the pre-execution hooks (which may veto the call or
// change its parameters), then the post-execution or error hooks.
func (m *Manager) hooksStage(ctx context.Context, c *pipeline.Call, next pipeline.CallHandler) (*invocation.Result, error) {
	hs := m.hookSet.Load()
	if hs == nil {
		return next(ctx, c)
	}
	pre, post, onErr := hs.pre, hs.post, hs.onErr
	req := c.Request
	ec := &hooks.ExecutionContext{
		Workflow: req.Workflow, Params: req.Params, RequestID: req.RequestID,
		IdempotencyKey: req.IdempotencyKey, StartedAt: c.Started,
	}
	if len(pre) > 0 && req.Body == nil {
		// Pre hooks may change the parameters: give them a copy, never the
		// caller's map.
		ec.Params = maps.Clone(req.Params)
		if ec.Params == nil {
			ec.Params = map[string]any{}
		}
	}
	fail := func(err error) (*invocation.Result, error) {
		ec.Err, ec.Duration = err, time.Since(ec.StartedAt)
		if !invocation.IsCanceled(err) {
			for _, h := range onErr {
				m.safely(ctx, hooks.StageError, ec, h.OnError)
			}
		}
		return nil, err
	}
	for _, h := range pre {
		if err := m.runPre(ctx, h, ec); err != nil {
			return fail(hooks.Vetoed(hooks.StagePreExecution, req.Workflow, err))
		}
	}
	req.Params = ec.Params
	res, err := next(ctx, c)
	if err != nil {
		return fail(err)
	}
	ec.Result, ec.Duration = res, time.Since(ec.StartedAt)
	for _, h := range post {
		if _, destroys := h.(hooks.AfterCommit); destroys {
			c.AfterCommit(func(ctx context.Context) { m.safely(ctx, hooks.StagePostExecution, ec, h.PostExecution) })
			continue
		}
		m.safely(ctx, hooks.StagePostExecution, ec, h.PostExecution)
	}
	return res, nil
}

// spanStage is the call's span, its metrics and the custom tracers.
func (m *Manager) spanStage(ctx context.Context, c *pipeline.Call, next pipeline.CallHandler) (*invocation.Result, error) {
	ctx, span := m.tel.StartExecution(ctx, c.Request.Workflow, c.Request.RequestID)
	res, err := next(ctx, c)
	m.record(ctx, span, c, res, err)
	return res, err
}

// awaitStage follows the execution to its end when the call asks to wait.
func (m *Manager) awaitStage(ctx context.Context, c *pipeline.Call, next pipeline.CallHandler) (*invocation.Result, error) {
	res, err := next(ctx, c)
	viaMCP := c.Target != nil && c.Target.Transport == mcpinvoker.Name
	if (!c.Wait && !viaMCP) || (err != nil && !errors.Is(err, invocation.ErrWorkflowFailed)) || (viaMCP && res != nil && res.Completed) {
		return res, err
	}
	if res, err = m.await(ctx, c.Request, res, err, &c.Await); err == nil {
		res.Duration = time.Since(c.Started)
		if viaMCP {
			// An MCP run has no webhook answer: its output is the last
			// node's first item, as a lastNode webhook answers.
			res.Output = firstItem(res.LastNodeOutput)
		}
	}
	return res, err
}

// journalStage runs the rest of the call under the write-ahead journal.
func (m *Manager) journalStage(ctx context.Context, c *pipeline.Call, next pipeline.CallHandler) (*invocation.Result, error) {
	return m.journaled(ctx, c, func() (*invocation.Result, error) { return next(ctx, c) })
}

// reconcileAttempt asks n8n whether an attempt of c whose answer was lost
// ran: by its Idempotency-Key among the workflow's executions since the
// call's first ambiguous attempt (since, c.FirstAmbiguous).
func (m *Manager) reconcileAttempt(ctx context.Context, c *pipeline.Call, since time.Time) pipeline.Reconciled {
	req := c.Request
	wfID := c.Target.WorkflowID
	timeout := m.cfg.Invokers.HTTP.ReconcileTimeout.D()
	deadline := time.Now().Add(timeout)
	for wait := time.Second; wfID == ""; wait = min(2*wait, 5*time.Second) {
		id, err := m.workflowID(ctx, req.Workflow)
		switch {
		case err == nil:
			wfID = id
		case !apiDown(err) || time.Now().After(deadline):
			return pipeline.Reconciled{Verdict: pipeline.Unresolved, Reason: "finding the workflow's n8n id to reconcile: " + err.Error()}
		default:
			if invocation.Sleep(ctx, wait) != nil {
				return pipeline.Reconciled{Verdict: pipeline.Unresolved, Reason: "canceled while reconciling"}
			}
		}
	}
	var v pipeline.Reconciled
	for wait := time.Second; ; wait = min(2*wait, 5*time.Second) {
		// n8n's API may be down with the webhook (a restart): wait for it
		// within the bound.
		var err error
		v, err = m.reconcileKey(ctx, req, c.Target, wfID, since, 0, time.Until(deadline), c.Attempts, c.Started)
		if err == nil || !apiDown(err) || time.Now().Add(wait).After(deadline) {
			break
		}
		if invocation.Sleep(ctx, wait) != nil {
			return pipeline.Reconciled{Verdict: pipeline.Unresolved, Reason: "canceled while reconciling"}
		}
	}
	// The re-send that follows "not run" or "crashed" passes the fence
	// (the last attempt stage), which confirms the lease first.
	if v.Verdict == pipeline.NotRun {
		m.log.InfoContext(ctx, "reconciled a lost answer: n8n did not run it; sending it again", "workflow", req.Workflow, "idempotency_key", req.IdempotencyKey)
	}
	return v
}

// reconcileKey is the manager's one reconciler, used by the retry loop,
// takeover, re-submission and replay: it asks n8n whether req's key ran
// in workflow wfID since since (bounded by timeout and the configured
// execution retention) and maps what it found with n8napi.ResultOf (the
// one mapping): Ran with the result the webhook would have answered,
// RanAndFailed with an *n8napi.ExecutionFailedError, Crashed, NotRun, or
// Unresolved with the reason (an execution still running, the match's
// bound, n8n's retention or saved-execution settings). attempts and
// started are the call's, for the result. err is the API's failure, when
// the verdict is Unresolved because of it.
func (m *Manager) reconcileKey(ctx context.Context, req *invocation.Request, tgt *invocation.Target, wfID string, since time.Time,
	settle, timeout time.Duration, attempts int, started time.Time) (pipeline.Reconciled, error) {
	ret := m.cfg.N8N.ExecutionRetention
	opts := &n8napi.ReconcileOptions{Settle: settle, Timeout: timeout,
		Retention: n8napi.Retention{MaxAge: ret.MaxAge.D(), MaxCount: ret.MaxCount}}
	if tgt == nil {
		// The response mode is unknown: the answer cannot be rebuilt.
		tgt = &invocation.Target{Workflow: req.Workflow, ResponseMode: invocation.ResponseModeResponseNode}
	}
	opts.TriggerNode = tgt.TriggerNode
	rc, err := m.api.Reconcile(ctx, wfID, "idempotency-key", req.IdempotencyKey, since, opts)
	if err != nil {
		return pipeline.Reconciled{Verdict: pipeline.Unresolved, Reason: "n8n's executions API failed: " + err.Error()}, err
	}
	log := []any{"workflow", req.Workflow, "idempotency_key", req.IdempotencyKey, "api_calls", rc.Calls, "api_bytes", rc.Bytes, "n8n_clock_offset", rc.Offset}
	switch {
	case rc.Unresolved:
		m.log.InfoContext(ctx, "reconcile unresolved", append(log, "reason", rc.Reason)...)
		return pipeline.Reconciled{Verdict: pipeline.Unresolved, Reason: rc.Reason}, nil
	case rc.Execution == nil:
		m.log.InfoContext(ctx, "reconciled: n8n has no execution of the key", log...)
		return pipeline.Reconciled{Verdict: pipeline.NotRun}, nil
	}
	e := rc.Execution
	m.log.InfoContext(ctx, "reconciled a lost answer with n8n's execution", append(log, "execution_id", e.ID.String(), "status", e.Status)...)
	if e.Status == n8napi.StatusCrashed {
		return pipeline.Reconciled{Verdict: pipeline.Crashed}, nil
	}
	res, rerr := n8napi.ResultOf(e, &n8napi.ResultInput{Request: req, Target: tgt, WorkflowID: wfID, Attempts: attempts,
		Duration: time.Since(started), APICalls: rc.Calls})
	switch {
	case rerr == nil:
		return pipeline.Reconciled{Verdict: pipeline.Ran, Result: res}, nil
	case invocation.CodeOf(rerr) == invocation.CodeUnresolved:
		return pipeline.Reconciled{Verdict: pipeline.Unresolved, Reason: fmt.Sprintf("its execution %s is still %s", e.ID, e.Status)}, nil
	}
	return pipeline.Reconciled{Verdict: pipeline.RanAndFailed, Err: rerr}, nil
}

// apiDown reports whether an API error may pass (n8n restarting): a
// transient error, or a 401 (a restarting n8n refuses valid keys for a
// moment; a wrong key is caught by health and by every other API call),
// within the reconcile bound.
func apiDown(err error) bool {
	var te *invocation.TransportError
	if errors.As(err, &te) {
		return true // n8n's API did not answer in time or at all (a client timeout is no caller's cancel)
	}
	var ae *n8napi.APIError
	if errors.As(err, &ae) && ae.StatusCode == 401 {
		return true
	}
	return n8napi.IsTransient(err) && invocation.ClassOf(err) != invocation.Permanent && !invocation.IsCanceled(err)
}

// firstItem returns the first item of a JSON array of items, null when
// there is none.
func firstItem(items json.RawMessage) json.RawMessage {
	var all []json.RawMessage
	if json.Unmarshal(items, &all) != nil || len(all) == 0 {
		return json.RawMessage("null")
	}
	return all[0]
}
