package invoker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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
		Path: st.Path, DSN: st.DSN, Schema: st.Schema, Retention: d.Retention.D(), SyncNormal: st.Sync == "normal"})
	if err != nil {
		return err
	}
	if s, ok := b.(*dlq.SQLite); ok && s.Recovered > 0 {
		m.log.Warn("journal: invocations a crash left in flight are taken over, reconciled with n8n and only then sent again",
			"count", s.Recovered, "path", s.Path())
	}
	m.dlq, m.ownDLQ = b, b
	return nil
}

func (m *Manager) deadLetterClass(err error) bool {
	return slices.Contains(m.cfg.DLQ.On, invocation.ClassOf(err).String())
}

// journaled runs invoke under the write-ahead journal: a key that already
// succeeded returns its recorded result; a key another process holds
// waits for that process's outcome; a key a dead process left in flight
// is taken over and reconciled with n8n before it is sent again; a
// failure of a configured class becomes a dead letter (returned as
// an error whose DeadLetter is the entry). replayOf, when not zero, is the entry being
// replayed: it is removed on success and updated on failure instead of
// adding a new one. rescue marks a call of Rescue: a key held by a live
// process is skipped, not waited for.
func (m *Manager) journaled(ctx context.Context, c *pipeline.Call, invoke func() (*invocation.Result, error)) (*invocation.Result, error) {
	req, explicitKey, replayOf, replayFailed, rescue := c.Request, c.ExplicitKey, c.ReplayOf, c.ReplayFailed, c.Rescue
	// One sender of a key at a time in this process: a call, a replay
	// and a rescue of one key wait for each other (a rescue skips it).
	if ok, err := m.leases.lock(ctx, req.IdempotencyKey, rescue); err != nil {
		return nil, invocation.NewCanceled(ctx, req.Workflow, 0, false)
	} else if !ok {
		return nil, errRescueHeld
	}
	defer m.leases.unlock(req.IdempotencyKey)
	params, err := m.encodeParams(req)
	if err != nil {
		return nil, err
	}
	hash := requestHash(req, params)
	if explicitKey || replayOf != 0 {
		res, recHash, ok, err := m.recorded(ctx, req.IdempotencyKey)
		switch {
		case errors.Is(err, errRecordedFailure) && replayOf != 0 && replayFailed:
			// Asked to run a workflow that ran and failed again.
		case err != nil:
			if rescue && ok {
				// Its failure is recorded (n8n ran it): end the record, or
				// every rescue finds it forever.
				m.endInflight(ctx, req, params)
			}
			return nil, err
		case ok && explicitKey && replayOf == 0 && recHash != "" && recHash != hash:
			// The same key means the same invocation: its result is not
			// this call's.
			return nil, &invocation.Error{Code: invocation.CodeKeyConflict, Workflow: req.Workflow, Key: req.IdempotencyKey,
				Message: fmt.Sprintf("idempotency key %q succeeded with another workflow or other parameters (nothing was sent)", req.IdempotencyKey)}
		case ok:
			if replayOf != 0 {
				_ = m.dlq.Delete(ctx, replayOf)
			}
			if rescue {
				// Still in flight although it succeeded (a write-ahead
				// applied after the success, whose process died before it
				// heard): end the record, or every rescue finds it forever.
				m.endInflight(ctx, req, params)
			}
			return res, nil
		}
	}
	if explicitKey && replayOf == 0 {
		// A key whose earlier call may have run (a dead letter marked
		// ambiguous or unresolved) is not sent again as a new call.
		if replayOf, err = m.mayHaveRun(ctx, req); err != nil {
			if rescue && (invocation.CodeOf(err) == invocation.CodeAmbiguous || errors.Is(err, errRecordedFailure)) {
				// A dead letter already says it may have run, and nothing can
				// tell: end the record, or every rescue refuses it forever.
				m.endInflight(ctx, req, params)
			}
			return nil, err
		}
	}
	if replayOf != 0 {
		// Replay reconciles first: an entry n8n ran is not sent again.
		if res, err, done := m.reconcileReplay(ctx, req, replayOf, replayFailed); done {
			return res, err
		}
	}
	sent := time.Now()
	lease, taken, waited, done, err := m.begin(ctx, req, params, rescue)
	if err != nil || done != nil {
		return done, err // the other process's recorded result
	}
	bg := context.WithoutCancel(ctx) // record the outcome even if ctx ends now
	m.leases.hold(lease, sent)
	defer m.leases.drop(lease)
	if waited && explicitKey && replayOf == 0 {
		// Another process held the key and let it go without a success:
		// its call may have run (a dead letter marked ambiguous or
		// unresolved, written while this call waited). Decide as for a
		// re-submission, before anything is sent.
		id, merr := m.mayHaveRun(ctx, req)
		if merr != nil {
			if _, eerr := m.dlq.End(bg, lease, nil); eerr != nil {
				m.lostOutcome(req, eerr, "clearing an in-flight record")
			}
			return nil, merr
		}
		if replayOf = id; replayOf != 0 {
			if res, err, done := m.reconcileReplay(ctx, req, replayOf, replayFailed); done {
				if _, eerr := m.dlq.End(bg, lease, nil); eerr != nil {
					m.lostOutcome(req, eerr, "clearing an in-flight record")
				}
				return res, err
			}
		}
	}
	var res *invocation.Result
	settled := false
	if taken {
		// The key was in flight in a process that died (or in a call of
		// this one that was canceled after sending): find out first.
		res, err, settled = m.takenOver(ctx, req, lease)
	}
	if !settled {
		res, err = invoke()
	}
	switch {
	case err == nil:
		raw, _ := json.Marshal(recordedResult{Result: res, RequestHash: hash})
		if cerr := m.dlq.Complete(bg, lease, raw); cerr != nil {
			m.lostOutcome(req, cerr, "recording a success")
		} else {
			c.Committed(bg) // recorded: what destroys evidence may run
		}
		if replayOf != 0 {
			_ = m.dlq.Delete(bg, replayOf)
		}
		return res, nil
	case invocation.IsCanceled(err) && invocation.OutcomeOf(err) == invocation.Ambiguous:
		// Sent, then canceled: it may have run. It stays in the journal as
		// in flight; once its lease expires a rescue (this process's or
		// another's) reconciles it with n8n before sending it again. It is
		// not a failure, so it is no dead letter.
		return nil, err
	case errors.Is(err, dlq.ErrLeaseLost):
		// Another process took the key over and decides it: leave the
		// journal to it and wait for its result.
		return m.awaitNewOwner(ctx, req, err)
	case invocation.IsCanceled(err) || !m.deadLetterClass(err) || replayOf != 0:
		if code := invocation.CodeOf(err); code.Ran() {
			// n8n ran it: the terminal write records the failure with the
			// key, so that the same key (a re-delivery after a crash, a
			// re-submission) returns it instead of running it again.
			raw, _ := json.Marshal(recordedResult{RequestHash: hash, Failure: failureOf(err)})
			if cerr := m.dlq.Complete(bg, lease, raw); cerr != nil {
				m.lostOutcome(req, cerr, "recording a failed run")
			}
		} else if _, eerr := m.dlq.End(bg, lease, nil); eerr != nil {
			m.lostOutcome(req, eerr, "clearing an in-flight record")
		}
		if replayOf != 0 && !invocation.IsCanceled(err) {
			_ = m.dlq.MarkReplayed(bg, replayOf, max(1, invocation.AttemptsOf(err)), errorInfo(err))
		}
		return nil, err
	}
	e := deadLetter(req, params, err)
	id, derr := m.dlq.End(bg, lease, e)
	if derr != nil {
		m.lostOutcome(req, derr, "storing a failed invocation")
		return nil, err
	}
	de := invocation.AsError(err)
	de.DeadLetter = id
	return nil, de
}

// deadLetter is the entry of a failed invocation.
func deadLetter(req *invocation.Request, params json.RawMessage, err error) *dlq.Entry {
	info := errorInfo(err)
	e := &dlq.Entry{
		Workflow: req.Workflow, Params: params, PathParams: req.PathParams, IdempotencyKey: req.IdempotencyKey, RequestID: req.RequestID,
		Attempts: invocation.AttemptsOf(err), Reason: dlq.ReasonOf(invocation.CodeOf(err)), FirstError: info, LastError: info,
	}
	var fe *n8napi.ExecutionFailedError
	if errors.As(err, &fe) {
		e.ExecutionID = fe.ExecutionID
	}
	return e
}

// lostOutcome logs an outcome the journal did not take: a lost lease
// (another process took the key over and decides it) or a store error.
func (m *Manager) lostOutcome(req *invocation.Request, err error, what string) {
	if errors.Is(err, dlq.ErrLeaseLost) {
		m.log.Warn("journal: another process took the key over while this call ran; its outcome is not recorded here",
			"workflow", req.Workflow, "idempotency_key", req.IdempotencyKey, "while", what)
		return
	}
	m.log.Error("journal: "+what+" failed; a rescue may reconcile and run it again",
		"workflow", req.Workflow, "idempotency_key", req.IdempotencyKey, "error", err.Error())
}

// recorded returns the recorded result of a key that succeeded.
func (m *Manager) recorded(ctx context.Context, key string) (*invocation.Result, string, bool, error) {
	raw, ok, err := m.dlq.Completed(ctx, key)
	if err != nil {
		return nil, "", false, fmt.Errorf("invoker: reading the idempotency record: %w", err)
	}
	if !ok {
		return nil, "", false, nil
	}
	rec := recordedResult{Result: &invocation.Result{}}
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, "", false, fmt.Errorf("invoker: idempotency record of %q: %w", key, err)
	}
	if f := rec.Failure; f != nil {
		return nil, rec.RequestHash, true, &invocation.Error{Code: f.Code, Key: key, Attempts: f.Attempts, ExecutionID: f.ExecutionID, Node: f.Node,
			Message: "the key already ran in n8n and failed; not sent again (a new key runs it again): " + f.Message, Err: errRecordedFailure}
	}
	rec.Result.Deduplicated = true
	return rec.Result, rec.RequestHash, true, nil
}

// errRecordedFailure is the cause of a key's recorded failure: n8n ran
// it and it failed.
var errRecordedFailure = errors.New("recorded failure")

// recordedFailure is how the journal records a call that n8n ran and
// that failed.
type recordedFailure struct {
	Code        invocation.Code `json:"code"`
	Message     string          `json:"message"`
	ExecutionID string          `json:"execution_id,omitempty"`
	Node        string          `json:"node,omitempty"`
	Attempts    int             `json:"attempts,omitempty"`
}

func failureOf(err error) *recordedFailure {
	f := &recordedFailure{Code: invocation.CodeOf(err), Message: err.Error(), Attempts: invocation.AttemptsOf(err)}
	var ie *invocation.Error
	if errors.As(err, &ie) {
		f.ExecutionID, f.Node = ie.ExecutionID, ie.Node
	}
	var fe *n8napi.ExecutionFailedError
	if errors.As(err, &fe) {
		f.ExecutionID, f.Node = fe.ExecutionID, fe.Node
	}
	return f
}

// recordedResult is a success as the journal records it: the result,
// and the hash of the request that made it (requestHash), so that the
// same key with another request is a conflict, not this result.
type recordedResult struct {
	*invocation.Result
	RequestHash string `json:"request_hash,omitempty"`
	// Failure is set instead of the result for a call n8n ran and that
	// failed.
	Failure *recordedFailure `json:"failure,omitempty"`
}

// requestHash is the hash of the caller's request as it was given (before
// the hooks): its workflow, its body or parameters (params), and its path
// parameters.
func requestHash(req *invocation.Request, params json.RawMessage) string {
	h := sha256.New()
	h.Write([]byte(req.Workflow))
	h.Write([]byte{0})
	var b bytes.Buffer
	if json.Compact(&b, params) == nil {
		h.Write(b.Bytes())
	} else {
		h.Write(params)
	}
	keys := slices.Sorted(maps.Keys(req.PathParams))
	for _, k := range keys {
		h.Write([]byte{0})
		h.Write([]byte(k + "=" + req.PathParams[k]))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// endInflight ends the in-flight record of a key a rescue found settled
// (it succeeded, or a dead letter holds it): taken over (a rescue finds
// only expired leases) and forgotten, nothing sent.
func (m *Manager) endInflight(ctx context.Context, req *invocation.Request, params json.RawMessage) {
	in := &dlq.Inflight{IdempotencyKey: req.IdempotencyKey, Workflow: req.Workflow, Params: params, RequestID: req.RequestID}
	l, _, err := m.dlq.Begin(ctx, in, m.owner, m.leaseTTL())
	if err != nil {
		return // another process holds it: it decides
	}
	if _, err := m.dlq.End(context.WithoutCancel(ctx), l, nil); err != nil {
		m.lostOutcome(req, err, "clearing the in-flight record of a settled key")
	}
}

// errRescueHeld ends a rescue of a key another live process took first.
var errRescueHeld = errors.New("invoker: another process took the key over")

// begin writes req ahead under a lease of this process. A key another
// live process holds is waited for (bounded): when that process records
// a success, its result is returned (and no lease); when it lets the key
// go otherwise, begin tries again.
// waited is true when another process held the key first.
func (m *Manager) begin(ctx context.Context, req *invocation.Request, params json.RawMessage, rescue bool) (l dlq.Lease, taken, waited bool, done *invocation.Result, err error) {
	in := &dlq.Inflight{IdempotencyKey: req.IdempotencyKey, Workflow: req.Workflow, Params: params, PathParams: req.PathParams, RequestID: req.RequestID}
	wait := m.cfg.Store.HeldWait.D()
	if wait <= 0 {
		wait = DefaultHeldWait
	}
	deadline := time.Now().Add(wait)
	poll := 50 * time.Millisecond
	for {
		lease, taken, err := m.dlq.Begin(ctx, in, m.owner, m.leaseTTL())
		var he *invocation.Error
		switch {
		case err == nil && waited:
			// The other process let the key go: with a success?
			res, _, ok, rerr := m.recorded(ctx, req.IdempotencyKey)
			if rerr != nil || ok {
				_, _ = m.dlq.End(context.WithoutCancel(ctx), lease, nil)
				return dlq.Lease{}, false, false, res, rerr
			}
			return lease, taken, waited, nil, nil
		case err == nil:
			return lease, taken, waited, nil, nil
		case !errors.As(err, &he) || he.Code != invocation.CodeKeyHeld:
			return dlq.Lease{}, false, false, nil, fmt.Errorf("invoker: writing the invocation ahead (not sent): %w", err)
		case deadOwner(he.Owner) && in.Replaces == "":
			in.Replaces = he.Owner // a process of this machine that died: no need to wait its lease out
			continue
		case rescue:
			return dlq.Lease{}, false, false, nil, errRescueHeld
		}
		if res, _, ok, rerr := m.recorded(ctx, req.IdempotencyKey); rerr != nil || ok {
			return dlq.Lease{}, false, false, res, rerr
		}
		if time.Now().After(deadline) {
			return dlq.Lease{}, false, false, nil, &invocation.Error{Code: invocation.CodeKeyHeld, Workflow: req.Workflow, Key: req.IdempotencyKey, Owner: he.Owner,
				Message: fmt.Sprintf("idempotency key %q is in flight in another process (%s), which did not end it within %s (nothing was sent)", req.IdempotencyKey, he.Owner, wait)}
		}
		if err := invocation.Sleep(ctx, poll); err != nil {
			return dlq.Lease{}, false, false, nil, err
		}
		waited = true
		poll = min(time.Second, poll*2)
	}
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
	ambiguous   bool
	concurrency int
	progress    func(Progress)
}

// ReplayFailed also replays entries whose workflow ran and failed in n8n
// (reason failed): replaying them runs the failing workflow again.
func ReplayFailed() ReplayOption { return func(o *replayOptions) { o.failed = true } }

// ReplayAmbiguous also replays, on a manager without n8n's API (nothing
// to reconcile with), entries that may have run (reason ambiguous or
// unresolved): replaying them may run the workflow a second time. With
// the API they are reconciled first and need no option.
func ReplayAmbiguous() ReplayOption { return func(o *replayOptions) { o.ambiguous = true } }

// ReplayConcurrency replays up to n entries at once (default
// DefaultMaxConcurrent), on the batch engine (the breaker's pause
// included).
func ReplayConcurrency(n int) ReplayOption { return func(o *replayOptions) { o.concurrency = n } }

// ReplayProgress reports the replay's progress, as WithProgress does for
// a batch.
func ReplayProgress(f func(Progress)) ReplayOption { return func(o *replayOptions) { o.progress = f } }

// replayClaim is how long a replay holds an entry it has not finished.
const replayClaim = 10 * time.Minute

// ReplayDeadLetters re-invokes the entries f selects with their original
// parameters and idempotency key, on the batch engine. Each entry is
// claimed first (two replays of one store never replay the same entry)
// and reconciled with n8n's executions before it is sent: an entry n8n
// ran is not run again. A success removes the entry; a failure updates
// its attempts, last error and execution id. Entries whose workflow ran
// and failed are skipped unless ReplayFailed. Ids in f that the queue
// does not hold fail the whole replay with an error of code invocation.CodeBadRequest that matches dlq.ErrNotFound.
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
			return nil, &invocation.Error{Code: invocation.CodeBadRequest, Err: dlq.ErrNotFound,
				Message: fmt.Sprintf("no dead-letter entries %v (nothing was replayed)", missing)}
		}
	}
	rep := &ReplayReport{Selected: len(entries), Results: make([]ReplayResult, len(entries))}
	claimer, _ := m.dlq.(dlq.Claimer)
	owner := m.newID()
	var items []BatchItem
	var at []int // items[k] replays entries[at[k]]
	for i, e := range entries {
		rep.Results[i].EntryID = e.ID
		if e.Reason == dlq.ReasonFailed && !o.failed {
			rep.Results[i].Skipped = "its workflow ran in n8n and failed: replaying runs it again (ReplayFailed, --include-failed)"
			rep.Skipped++
			continue
		}
		if (e.Reason == dlq.ReasonAmbiguous || e.Reason == dlq.ReasonUnresolved) && m.api == nil && !o.ambiguous {
			rep.Results[i].Skipped = "it may have run and without n8n.api_key it cannot be reconciled: replaying may run it twice (ReplayAmbiguous, --include-ambiguous)"
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
		it := BatchItem{Workflow: e.Workflow, IdempotencyKey: e.IdempotencyKey, PathParams: e.PathParams, replayOf: e.ID, replayFailed: o.failed}
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
	// The entry's attempts ended when it was stored; they started at most
	// a call's time before.
	res, err, done := m.ranBefore(ctx, req, e.CreatedAt.Add(-replayLookback), replayFailed, max(1, e.Attempts), time.Now())
	switch {
	case !done:
	case err == nil:
		raw, _ := json.Marshal(res)
		if err := m.dlq.Complete(ctx, dlq.Lease{Key: req.IdempotencyKey}, raw); err == nil {
			_ = m.dlq.Delete(ctx, entryID)
		}
		m.log.InfoContext(ctx, "replay: n8n had run the entry; recorded, not sent again", "entry", entryID, "execution_id", res.ExecutionID)
	case errors.Is(err, invocation.ErrWorkflowFailed):
		_ = m.dlq.MarkReplayed(ctx, entryID, 0, errorInfo(err))
	}
	return res, err, done
}

// ranBefore asks n8n whether req's key ran since since, through the
// manager's one reconciler (reconcileKey): done is true when the answer
// settles it, with the result of the execution that succeeded, an
// *n8napi.ExecutionFailedError for one that failed (unless sendFailed),
// or an error of code invocation.CodeUnresolved (an execution still
// running or waiting, n8n's API failing, or a key n8n may have pruned or
// never saved). Not found, or crashed: not done, send it. attempts and
// started are the invocation's, for a reconciled result.
func (m *Manager) ranBefore(ctx context.Context, req *invocation.Request, since time.Time, sendFailed bool, attempts int, started time.Time) (*invocation.Result, error, bool) {
	wfID, err := m.reconcileWorkflowID(ctx, req.Workflow)
	if err != nil {
		// Without the workflow's id its executions cannot be looked up:
		// never send on a guess.
		if invocation.CodeOf(err) == invocation.CodeUnknownWorkflow && m.cfg.Invokers.HTTP.RetryAmbiguous {
			return nil, nil, false
		}
		return nil, unresolvedErr(req, "cannot look up its executions in n8n (workflow id: "+err.Error()+")", errNotSentAgain), true
	}
	var tgt *invocation.Target
	if m.targets != nil {
		tgt, _ = m.targets.Resolve(ctx, req.Workflow) // nil: the answer is not rebuilt
	}
	v, err := m.reconcileKey(ctx, req, tgt, wfID, since, time.Millisecond, m.cfg.Invokers.HTTP.ReconcileTimeout.D(), attempts, started)
	switch v.Verdict {
	case pipeline.Ran:
		return v.Result, nil, true
	case pipeline.RanAndFailed:
		if sendFailed {
			return nil, nil, false // asked for: run the failing workflow again
		}
		return nil, v.Err, true
	case pipeline.Unresolved:
		if err == nil {
			err = errNotSentAgain
		}
		return nil, unresolvedErr(req, v.Reason, err), true
	}
	return nil, nil, false // not run (or crashed): send it
}

// reconcileWorkflowID resolves the workflow's id for a reconcile, trying
// a lookup that fails for a passing reason (n8n's API unreachable, 5xx)
// three times.
func (m *Manager) reconcileWorkflowID(ctx context.Context, workflow string) (string, error) {
	var err error
	for try, wait := 0, 250*time.Millisecond; try < 3; try, wait = try+1, wait*2 {
		var id string
		if id, err = m.workflowID(ctx, workflow); err == nil {
			return id, nil
		}
		if invocation.CodeOf(err) == invocation.CodeUnknownWorkflow || ctx.Err() != nil {
			return "", err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", ctx.Err()
		case <-t.C:
		}
	}
	return "", err
}

// takenOver settles, before anything is sent, a key this call took over
// from a process that died with it in flight: its recorded result, n8n's
// execution of it (reconcile by Idempotency-Key since the invocation was
// first written ahead), or, without an API key, an error of code invocation.CodeAmbiguous unless
// retry_ambiguous. settled is false when it should be sent.
func (m *Manager) takenOver(ctx context.Context, req *invocation.Request, lease dlq.Lease) (*invocation.Result, error, bool) {
	if res, _, ok, err := m.recorded(ctx, req.IdempotencyKey); err != nil || ok {
		return res, err, true
	}
	m.log.InfoContext(ctx, "journal: took over an invocation a process left in flight; reconciling before sending",
		"workflow", req.Workflow, "idempotency_key", req.IdempotencyKey, "token", lease.Token)
	if m.api == nil {
		if m.cfg.Invokers.HTTP.RetryAmbiguous {
			return nil, nil, false
		}
		return nil, &invocation.Error{Code: invocation.CodeAmbiguous, Workflow: req.Workflow,
			Message: "its process ended while it was in flight, and without n8n.api_key it cannot be reconciled (not re-sent; retry_ambiguous re-sends)"}, true
	}
	since, started := time.Now().Add(-replayLookback), time.Now()
	if in, err := m.dlq.Inflight(ctx, dlq.InflightFilter{Key: req.IdempotencyKey}); err == nil && len(in) == 1 {
		// The store's clock wrote StartedAt (PostgreSQL's, not this
		// process's): a margin for the two; n8n's own offset is measured.
		since, started = in[0].StartedAt.Add(-n8napi.DefaultReconcileSkew), in[0].StartedAt
	}
	// The process that died made at least one attempt; how many is not
	// journaled.
	return m.ranBefore(ctx, req, since, false, 1, started)
}

// replayLookback is how far before an entry was stored its attempts may
// have started.
const replayLookback = 15 * time.Minute

// errNotSentAgain is the cause of an unresolved reconcile that made no
// attempt.
var errNotSentAgain = errors.New("not sent again")

// unresolvedErr is the error of a reconcile that could not settle
// whether n8n ran req.
func unresolvedErr(req *invocation.Request, reason string, cause error) *invocation.Error {
	return &invocation.Error{Code: invocation.CodeUnresolved, Workflow: req.Workflow, Message: "unresolved: " + reason, Err: cause}
}

// mayHaveRun looks for a dead letter of req's key whose call may have run
// (reason ambiguous or unresolved). With n8n's API the call becomes a
// replay of that entry (reconciled before anything is sent); without it,
// or when retry_ambiguous is off and nothing can tell, it is refused with
// code invocation.CodeAmbiguous and the entry, nothing sent. It returns
// the entry to replay, 0 when there is none.
func (m *Manager) mayHaveRun(ctx context.Context, req *invocation.Request) (int64, error) {
	es, err := m.dlq.List(ctx, dlq.Filter{Key: req.IdempotencyKey, Limit: 10})
	if err != nil {
		return 0, fmt.Errorf("invoker: reading the dead letters of the key (not sent): %w", err)
	}
	for _, e := range es {
		if e.Reason == dlq.ReasonFailed {
			return 0, &invocation.Error{Code: invocation.CodeWorkflowFailed, Workflow: req.Workflow, Key: req.IdempotencyKey, DeadLetter: e.ID,
				ExecutionID: e.ExecutionID, Err: errRecordedFailure,
				Message: fmt.Sprintf("idempotency key %q already ran in n8n and failed; not sent again: replay the dead letter with ReplayFailed (--include-failed) to run it again", req.IdempotencyKey)}
		}
		if e.Reason != dlq.ReasonAmbiguous && e.Reason != dlq.ReasonUnresolved {
			continue
		}
		if m.api == nil && !m.cfg.Invokers.HTTP.RetryAmbiguous {
			return 0, &invocation.Error{Code: invocation.CodeAmbiguous, Workflow: req.Workflow, Key: req.IdempotencyKey, DeadLetter: e.ID,
				Message: fmt.Sprintf("an earlier call of idempotency key %q may have run (%s) and without n8n.api_key nothing can tell; "+
					"not sent again: replay the dead letter to decide", req.IdempotencyKey, e.Reason)}
		}
		return e.ID, nil
	}
	return 0, nil
}
