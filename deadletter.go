package invoker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
	"github.com/n8n-invoker/n8n-invoker/pipeline"
)

// DeadLetters is what the manager needs of a dead-letter queue: the store
// and the write-ahead journal (dlq.SQLite is both).
type DeadLetters interface {
	dlq.Store
	dlq.Journal
}

// WithDLQ sets the dead-letter queue (default: the SQLite store the dlq
// section of the configuration names, when enabled).
func WithDLQ(d DeadLetters) Option {
	return func(m *Manager) error { m.dlq = d; return nil }
}

// DLQ returns the dead-letter queue, nil when none is configured.
func (m *Manager) DLQ() DeadLetters { return m.dlq }

func (m *Manager) openDLQ() error {
	d, st := m.cfg.DLQ, m.cfg.Store
	if m.dlq != nil || !d.Enabled {
		return nil
	}
	b, err := dlq.OpenBackend(context.Background(), st.Backend, dlq.StoreOptions{
		Path: st.Path, DSN: st.DSN, Retention: d.Retention.D(), SyncNormal: st.Sync == "normal"})
	if err != nil {
		return err
	}
	if s, ok := b.(*dlq.SQLite); ok && s.Recovered > 0 {
		m.log.Warn("dead-letter queue: invocations left in flight by a crash are stored for replay", "count", s.Recovered, "path", s.Path())
	}
	m.dlq, m.ownDLQ = b, b
	return nil
}

func (m *Manager) deadLetterClass(err error) bool {
	return slices.Contains(m.cfg.DLQ.On, invocation.ClassOf(err).String())
}

// journaled runs invoke under the write-ahead journal: a key that already
// succeeded returns its recorded result; a failure of a configured class
// becomes a dead letter (returned as *DeadLetteredError). replayOf, when
// not zero, is the entry being replayed: it is removed on success and
// updated on failure instead of adding a new one.
func (m *Manager) journaled(ctx context.Context, req *invocation.Request, explicitKey bool, replayOf int64, replayFailed bool, invoke func() (*invocation.Result, error)) (*invocation.Result, error) {
	if explicitKey || replayOf != 0 {
		raw, ok, err := m.dlq.Completed(ctx, req.IdempotencyKey)
		if err != nil {
			return nil, fmt.Errorf("invoker: reading the idempotency record: %w", err)
		}
		if ok {
			var res invocation.Result
			if err := json.Unmarshal(raw, &res); err != nil {
				return nil, fmt.Errorf("invoker: idempotency record of %q: %w", req.IdempotencyKey, err)
			}
			res.Deduplicated = true
			if replayOf != 0 {
				_ = m.dlq.Delete(ctx, replayOf)
			}
			return &res, nil
		}
	}
	if replayOf != 0 {
		// Replay reconciles first: an entry n8n ran is not sent again.
		if res, err, done := m.reconcileReplay(ctx, req, replayOf, replayFailed); done {
			return res, err
		}
	} else if explicitKey {
		if res, ok := m.reconcile(ctx, req); ok {
			return res, nil
		}
	}
	params, err := m.encodeParams(req)
	if err != nil {
		return nil, err
	}
	if err := m.dlq.Begin(ctx, &dlq.Inflight{IdempotencyKey: req.IdempotencyKey, Workflow: req.Workflow, Params: params, RequestID: req.RequestID}); err != nil {
		return nil, fmt.Errorf("invoker: writing the invocation ahead (not sent): %w", err)
	}
	bg := context.WithoutCancel(ctx) // record the outcome even if ctx ends now
	res, err := invoke()
	switch {
	case err == nil:
		raw, _ := json.Marshal(res)
		if cerr := m.dlq.Complete(bg, req.IdempotencyKey, raw); cerr != nil {
			m.log.Error("dead-letter queue: recording a success failed; a replay after a crash may run it again",
				"workflow", req.Workflow, "idempotency_key", req.IdempotencyKey, "error", cerr.Error())
		}
		if replayOf != 0 {
			_ = m.dlq.Delete(bg, replayOf)
		}
		return res, nil
	case invocation.IsCanceled(err) && invocation.OutcomeOf(err) == invocation.Ambiguous:
		// Sent, then canceled: it may have run. It stays in the journal as
		// in flight (a restart recovers it as "interrupted" and a replay
		// reconciles it with n8n before sending it again); it is not a
		// failure, so it is no dead letter.
		return nil, err
	case invocation.IsCanceled(err) || !m.deadLetterClass(err) || replayOf != 0:
		if _, eerr := m.dlq.End(bg, req.IdempotencyKey, nil); eerr != nil {
			m.log.Error("dead-letter queue: clearing an in-flight record failed", "error", eerr.Error())
		}
		if replayOf != 0 && !invocation.IsCanceled(err) {
			_ = m.dlq.MarkReplayed(bg, replayOf, max(1, invocation.AttemptsOf(err)), errorInfo(err))
		}
		return nil, err
	}
	info := errorInfo(err)
	reason := "exhausted"
	switch {
	case errors.Is(err, pipeline.ErrAmbiguous):
		reason = "ambiguous"
	case errors.Is(err, pipeline.ErrUnresolved):
		reason = "unresolved"
	case errors.Is(err, invocation.ErrCircuitOpen):
		reason = "circuit-open"
	case errors.Is(err, invocation.ErrRetryBudgetExhausted):
		reason = "retry-budget"
	case errors.Is(err, invocation.ErrBulkheadFull):
		reason = "bulkhead"
	case invocation.ClassOf(err) == invocation.Permanent:
		reason = "failed"
	}
	e := &dlq.Entry{
		Workflow: req.Workflow, Params: params, IdempotencyKey: req.IdempotencyKey, RequestID: req.RequestID,
		Attempts: invocation.AttemptsOf(err), Reason: reason, FirstError: info, LastError: info,
	}
	var fe *n8napi.ExecutionFailedError
	if errors.As(err, &fe) {
		e.ExecutionID = fe.ExecutionID
	}
	id, derr := m.dlq.End(bg, req.IdempotencyKey, e)
	if derr != nil {
		m.log.Error("dead-letter queue: storing a failed invocation failed", "workflow", req.Workflow,
			"idempotency_key", req.IdempotencyKey, "error", derr.Error())
		return nil, err
	}
	return nil, &dlq.DeadLetteredError{EntryID: id, Err: err}
}

func errorInfo(err error) dlq.ErrorInfo {
	return dlq.ErrorInfo{Class: invocation.ClassOf(err).String(), Message: err.Error()}
}

func (m *Manager) encodeParams(req *invocation.Request) (json.RawMessage, error) {
	if len(req.Body) > 0 {
		return req.Body, nil
	}
	b, err := json.Marshal(req.Params)
	if err != nil {
		return nil, fmt.Errorf("workflow %q: encoding parameters: %w", req.Workflow, err)
	}
	return b, nil
}

// ReplayReport is what ReplayDeadLetters did.
type ReplayReport struct {
	// Selected is the number of entries the filter selected.
	Selected int `json:"selected"`
	// Succeeded were replayed with success and removed; AlreadyDone had
	// succeeded before (their key's record, or n8n's executions) and were
	// removed without calling n8n; Failed failed again and stay, updated;
	// Skipped were not replayed (a workflow that ran and failed, without
	// ReplayFailed; an entry another replay holds).
	Succeeded   int `json:"succeeded"`
	AlreadyDone int `json:"already_done"`
	Failed      int `json:"failed"`
	Skipped     int `json:"skipped"`
	// Results holds one outcome per entry, in entry order.
	Results []ReplayResult `json:"results"`
}

// ReplayResult is the outcome of one replayed entry.
type ReplayResult struct {
	EntryID int64              `json:"entry_id"`
	Result  *invocation.Result `json:"result,omitempty"`
	Err     error              `json:"-"`
	Error   string             `json:"error,omitempty"`
	// Skipped says why the entry was not replayed.
	Skipped string `json:"skipped,omitempty"`
}

// ReplayOption changes a replay.
type ReplayOption func(*replayOptions)

type replayOptions struct {
	failed      bool
	concurrency int
	progress    func(Progress)
}

// ReplayFailed also replays entries whose workflow ran and failed in n8n
// (reason failed): replaying them runs the failing workflow again.
func ReplayFailed() ReplayOption { return func(o *replayOptions) { o.failed = true } }

// ReplayConcurrency replays up to n entries at once (default
// DefaultMaxConcurrent), on the batch engine (the breaker's pause
// included).
func ReplayConcurrency(n int) ReplayOption { return func(o *replayOptions) { o.concurrency = n } }

// ReplayProgress reports the replay's progress, as WithProgress does for
// a batch.
func ReplayProgress(f func(Progress)) ReplayOption { return func(o *replayOptions) { o.progress = f } }

// MissingEntriesError is a replay of entry ids the queue does not hold.
type MissingEntriesError struct{ IDs []int64 }

// Error returns the message.
func (e *MissingEntriesError) Error() string {
	return fmt.Sprintf("invoker: no dead-letter entries %v (nothing was replayed)", e.IDs)
}

// replayClaim is how long a replay holds an entry it has not finished.
const replayClaim = 10 * time.Minute

// ReplayDeadLetters re-invokes the entries f selects with their original
// parameters and idempotency key, on the batch engine. Each entry is
// claimed first (two replays of one store never replay the same entry)
// and reconciled with n8n's executions before it is sent: an entry n8n
// ran is not run again. A success removes the entry; a failure updates
// its attempts, last error and execution id. Entries whose workflow ran
// and failed are skipped unless ReplayFailed. Ids in f that the queue
// does not hold fail the whole replay with a *MissingEntriesError.
func (m *Manager) ReplayDeadLetters(ctx context.Context, f dlq.Filter, opts ...ReplayOption) (*ReplayReport, error) {
	if m.dlq == nil {
		return nil, errors.New("invoker: no dead-letter queue configured (dlq.enabled)")
	}
	o := &replayOptions{}
	for _, opt := range opts {
		opt(o)
	}
	if !m.enter() {
		return nil, invocation.ErrClosed
	}
	defer m.wg.Done()
	entries, err := m.dlq.List(ctx, f)
	if err != nil {
		return nil, err
	}
	if len(f.IDs) > 0 {
		have := map[int64]bool{}
		for _, e := range entries {
			have[e.ID] = true
		}
		var missing []int64
		for _, id := range f.IDs {
			if !have[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			return nil, &MissingEntriesError{IDs: missing}
		}
	}
	rep := &ReplayReport{Selected: len(entries), Results: make([]ReplayResult, len(entries))}
	claimer, _ := m.dlq.(dlq.Claimer)
	owner := m.newID()
	var items []BatchItem
	var at []int // items[k] replays entries[at[k]]
	for i, e := range entries {
		rep.Results[i].EntryID = e.ID
		if e.Reason == "failed" && !o.failed {
			rep.Results[i].Skipped = "its workflow ran in n8n and failed: replaying runs it again (ReplayFailed, --include-failed)"
			rep.Skipped++
			continue
		}
		if claimer != nil {
			ok, err := claimer.Claim(ctx, e.ID, owner, replayClaim)
			if err != nil {
				return nil, err
			}
			if !ok {
				rep.Results[i].Skipped = "another replay holds it"
				rep.Skipped++
				continue
			}
			defer func() { _ = claimer.Release(context.WithoutCancel(ctx), e.ID, owner) }()
		}
		it := BatchItem{Workflow: e.Workflow, IdempotencyKey: e.IdempotencyKey, replayOf: e.ID, replayFailed: o.failed}
		if len(e.Params) > 0 && string(e.Params) != "null" {
			it.body = e.Params
		}
		items = append(items, it)
		at = append(at, i)
	}
	conc := o.concurrency
	if conc <= 0 {
		conc = DefaultMaxConcurrent
	}
	var mu sync.Mutex // results end on the workers
	m.dispatch(ctx, slices.Values(items), len(items), conc, &batchOptions{progress: o.progress}, nil, func(r BatchResult) {
		mu.Lock()
		defer mu.Unlock()
		rr := &rep.Results[at[r.Index]]
		rr.Result, rr.Err = r.Result, r.Err
		switch {
		case r.Err != nil:
			rr.Error = r.Err.Error()
			rep.Failed++
		case r.Result.Deduplicated || r.Result.Reconciled:
			rep.AlreadyDone++
		default:
			rep.Succeeded++
		}
	})
	return rep, ctx.Err()
}

// reconcileReplay asks n8n whether a dead letter's key ran since the
// entry's first attempts, before the replay sends it: done is true when
// the answer settles the replay (it ran: recorded and removed; it ran and
// failed: updated, not re-run without ReplayFailed; unresolved).
func (m *Manager) reconcileReplay(ctx context.Context, req *invocation.Request, entryID int64, replayFailed bool) (*invocation.Result, error, bool) {
	if m.api == nil {
		return nil, nil, false
	}
	e, err := m.dlq.Get(ctx, entryID)
	if err != nil {
		return nil, nil, false
	}
	wfID, err := m.workflowID(ctx, req.Workflow)
	if err != nil {
		return nil, nil, false
	}
	// The entry's attempts ended when it was stored; they started at most
	// a call's time before.
	since := e.CreatedAt.Add(-replayLookback)
	rc, err := m.api.Reconcile(ctx, wfID, "idempotency-key", req.IdempotencyKey, since,
		&n8napi.ReconcileOptions{Settle: time.Millisecond, Timeout: m.cfg.Invokers.HTTP.ReconcileTimeout.D()})
	switch {
	case err != nil:
		return nil, &pipeline.UnresolvedError{Workflow: req.Workflow, Attempts: 0, Reason: "n8n's executions API failed: " + err.Error(), Last: err}, true
	case rc.Unresolved:
		return nil, &pipeline.UnresolvedError{Workflow: req.Workflow, Reason: "an execution of the key is still running", Last: errors.New("not replayed")}, true
	case rc.Execution == nil || rc.Execution.Status == n8napi.StatusCrashed:
		return nil, nil, false // not run (or crashed): send it
	}
	x := rc.Execution
	if x.Status == n8napi.StatusSuccess {
		res := &invocation.Result{Workflow: req.Workflow, WorkflowID: wfID, RequestID: req.RequestID, ExecutionID: x.ID.String(),
			Status: x.Status, Completed: true, Reconciled: true, APICalls: rc.Calls, Output: json.RawMessage("null")}
		if items := x.Data.LastItems(); items != nil {
			if b, err := json.Marshal(items); err == nil {
				res.Output, res.LastNodeOutput, res.ContentType = b, b, "application/json"
			}
		}
		raw, _ := json.Marshal(res)
		if err := m.dlq.Complete(ctx, req.IdempotencyKey, raw); err == nil {
			_ = m.dlq.Delete(ctx, entryID)
		}
		m.log.InfoContext(ctx, "replay: n8n had run the entry; recorded, not sent again", "entry", entryID, "execution_id", x.ID.String())
		return res, nil, true
	}
	if replayFailed {
		return nil, nil, false // asked for: run the failing workflow again
	}
	fe := &n8napi.ExecutionFailedError{Workflow: req.Workflow, ExecutionID: x.ID.String(), Status: x.Status}
	if x.Data != nil && x.Data.ResultData.Error != nil {
		fe.Message, fe.Node = x.Data.ResultData.Error.Message, x.Data.ResultData.Error.NodeName()
	}
	_ = m.dlq.MarkReplayed(ctx, entryID, 0, errorInfo(fe))
	return nil, fe, true
}

// replayLookback is how far before an entry was stored its attempts may
// have started.
const replayLookback = 15 * time.Minute

// reconcile looks, for a key a crash left in flight (a dead letter with
// reason "interrupted"), whether n8n ran it after all: its executions
// carry the Idempotency-Key header. If one succeeded, the key is recorded
// as completed with that execution's output, the dead letters of the key
// are removed, and n8n is not called again. It needs the API; without
// it, or when nothing is found, the call goes ahead (at least once).
func (m *Manager) reconcile(ctx context.Context, req *invocation.Request) (*invocation.Result, bool) {
	if m.api == nil {
		return nil, false
	}
	entries, err := m.dlq.List(ctx, dlq.Filter{Key: req.IdempotencyKey, Reason: "interrupted"})
	if err != nil || len(entries) == 0 {
		return nil, false
	}
	wfID, err := m.workflowID(ctx, req.Workflow)
	if err != nil {
		return nil, false
	}
	execID, calls, err := m.api.Correlate(ctx, wfID, "idempotency-key", req.IdempotencyKey, 0)
	if err != nil || execID == "" {
		return nil, false
	}
	e, _, err := m.api.Executions.Get(ctx, execID, true)
	if err != nil || e.Status != n8napi.StatusSuccess {
		return nil, false
	}
	res := &invocation.Result{Workflow: req.Workflow, WorkflowID: wfID, RequestID: req.RequestID, ExecutionID: execID,
		Status: e.Status, Completed: true, Deduplicated: true, APICalls: calls + 1, Output: json.RawMessage("null")}
	if out := e.Data.LastOutput(); out != nil {
		if b, err := json.Marshal(out); err == nil {
			res.Output, res.ContentType = b, "application/json"
		}
	}
	raw, _ := json.Marshal(res)
	if err := m.dlq.Complete(ctx, req.IdempotencyKey, raw); err != nil {
		return nil, false
	}
	for _, en := range entries {
		_ = m.dlq.Delete(ctx, en.ID)
	}
	m.log.InfoContext(ctx, "dead-letter queue: an interrupted invocation had run in n8n; recorded, not sent again",
		"workflow", req.Workflow, "idempotency_key", req.IdempotencyKey, "execution_id", execID)
	return res, true
}
