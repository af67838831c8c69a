package invoker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/pack"
	"github.com/n8n-invoker/n8n-invoker/policy"
)

// DefaultMaxConcurrent is the batch concurrency when maxConcurrent is 0.
const DefaultMaxConcurrent = 5

// BatchItem is one item of a batch: {"workflow": ..., "params": ...}
// (the design's "id" is read as the workflow too).
type BatchItem struct {
	// Workflow is the workflow name: a configured alias, or an n8n id or
	// name with n8n.api_key set.
	Workflow string `json:"workflow"`
	// Params are the workflow's parameters.
	Params map[string]any `json:"params"`
	// IdempotencyKey, when set, is sent instead of the request id.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// PathParams fill the :name segments of the webhook's path.
	PathParams map[string]string `json:"path_params,omitempty"`

	body         json.RawMessage // a dead letter's parameters, as stored
	replayOf     int64           // the dead-letter entry a replay item replays
	replayFailed bool
	rescue       bool // Rescue's item: a key another process left in flight
}

// BatchResult is the outcome of one BatchItem: Result or Err is set.
// Items that were not started because ctx was canceled have the
// context's error (ErrBatchAborted after a fail-fast stop).
type BatchResult struct {
	// Index is the item's position in the input.
	Index  int
	Item   BatchItem
	Result *invocation.Result
	Err    error
}

// Progress is a batch's state, reported after every item.
type Progress struct {
	// Total is the number of items, -1 for a stream.
	Total int `json:"total"`
	// Succeeded, Failed and Canceled count the items that ended so.
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Canceled  int `json:"canceled"`
	// DeadLettered counts the failed items stored in the dead-letter
	// queue (they are also in Failed).
	DeadLettered int `json:"dead_lettered"`
	// InFlight is the number of items running.
	InFlight int `json:"in_flight"`
	// Limit is the current concurrency limit (it moves when adaptive).
	Limit int `json:"limit"`
	// Held is the number of items read but not dispatched because the
	// circuit breaker of their workflow is open: they are sent once it
	// lets calls through again.
	Held int `json:"held"`
}

// Done returns the number of items that ended.
func (p Progress) Done() int { return p.Succeeded + p.Failed + p.Canceled }

type batchOptions struct {
	failFast bool
	progress func(Progress)
	adaptive bool
	pack     *pack.Options
}

// BatchOption changes how a batch runs.
type BatchOption func(*batchOptions)

// WithFailFast stops the batch at the first failed item: items not yet
// started end with ErrBatchAborted and items in flight are canceled. The
// default is to continue.
func WithFailFast() BatchOption { return func(o *batchOptions) { o.failFast = true } }

// WithProgress calls f after every item ends, one call at a time.
func WithProgress(f func(Progress)) BatchOption { return func(o *batchOptions) { o.progress = f } }

// WithAdaptiveConcurrency lets the concurrency move between 1 and
// maxConcurrent, finding by itself the point where n8n is busy but
// latency has not yet climbed (see policy.Adaptive).
func WithAdaptiveConcurrency() BatchOption { return func(o *batchOptions) { o.adaptive = true } }

// ExecuteBatch runs items with at most maxConcurrent in flight (0 means
// DefaultMaxConcurrent) and returns one BatchResult per item, in input
// order. A failed item does not stop the others unless WithFailFast is
// given. When ctx is canceled, items not yet started get the context's
// error: none is dropped. The error is non-nil only when the batch could
// not start.
func (m *Manager) ExecuteBatch(ctx context.Context, items []BatchItem, maxConcurrent int, opts ...BatchOption) ([]BatchResult, error) {
	o, err := batchSetup(&maxConcurrent, opts)
	if err != nil {
		return nil, err
	}
	if !m.enter() {
		return nil, invocation.ErrClosed
	}
	defer m.wg.Done()
	results := make([]BatchResult, len(items))
	if o.pack == nil {
		o.pack = m.configuredPacking(items)
	}
	if o.pack != nil {
		m.executePacked(ctx, items, o, results)
		return results, nil
	}
	m.dispatch(ctx, slices.Values(items), len(items), maxConcurrent, o, nil, func(r BatchResult) { results[r.Index] = r })
	return results, nil
}

// ExecuteStream runs a stream of items, as ExecuteBatch does, in constant
// memory: items are read as slots free up and results are yielded as
// they end, not in input order (BatchResult.Index tells the position).
// Every item read is yielded once. Breaking out of the loop cancels the
// items in flight and stops reading.
func (m *Manager) ExecuteStream(ctx context.Context, items iter.Seq[BatchItem], maxConcurrent int, opts ...BatchOption) (iter.Seq[BatchResult], error) {
	o, err := batchSetup(&maxConcurrent, opts)
	if err != nil {
		return nil, err
	}
	if o.pack != nil {
		return nil, fmt.Errorf("invoker: packing needs the whole batch: use ExecuteBatch")
	}
	return func(yield func(BatchResult) bool) {
		if !m.enter() {
			yield(BatchResult{Err: invocation.ErrClosed})
			return
		}
		defer m.wg.Done()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		abandon := make(chan struct{})
		ch := make(chan BatchResult, maxConcurrent)
		go func() {
			defer close(ch)
			m.dispatch(ctx, items, -1, maxConcurrent, o, abandon, func(r BatchResult) { ch <- r })
		}()
		for r := range ch {
			if !yield(r) {
				close(abandon)
				cancel()
				for range ch { // let the dispatcher finish
				}
				return
			}
		}
	}, nil
}

func batchSetup(maxConcurrent *int, opts []BatchOption) (*batchOptions, error) {
	if *maxConcurrent < 0 {
		return nil, fmt.Errorf("invoker: maxConcurrent must not be negative, got %d", *maxConcurrent)
	}
	if *maxConcurrent == 0 {
		*maxConcurrent = DefaultMaxConcurrent
	}
	o := &batchOptions{}
	for _, f := range opts {
		f(o)
	}
	return o, nil
}

// slots bounds a batch's concurrency.
type slots interface {
	Acquire(ctx context.Context) error
	Release(rtt time.Duration, failed bool)
	Limit() int
}

type fixedSlots chan struct{}

func (s fixedSlots) Acquire(ctx context.Context) error {
	select {
	case s <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s fixedSlots) Release(time.Duration, bool) { <-s }
func (s fixedSlots) Limit() int                  { return cap(s) }

// dispatch runs items and emits one result per item read. Reading stops
// early only when abandon is closed.
func (m *Manager) dispatch(ctx context.Context, items iter.Seq[BatchItem], total, maxConcurrent int,
	o *batchOptions, abandon <-chan struct{}, emit func(BatchResult)) {
	// Only a fail-fast batch needs a context of its own to cancel: a
	// cancelable context costs net/http microseconds per request.
	cancel := func(error) {}
	if o.failFast {
		var c context.CancelCauseFunc
		ctx, c = context.WithCancelCause(ctx)
		defer c(nil)
		cancel = c
	}
	var lim slots = make(fixedSlots, maxConcurrent)
	if o.adaptive {
		lim = policy.NewAdaptive(1, maxConcurrent)
	}
	var (
		mu   sync.Mutex
		prog = Progress{Total: total}
		wg   sync.WaitGroup
	)
	end := func(r BatchResult) {
		mu.Lock()
		switch {
		case r.Err == nil:
			prog.Succeeded++
		case invocation.IsCanceled(r.Err):
			prog.Canceled++
		default:
			prog.Failed++
			if errors.Is(r.Err, invocation.ErrDeadLettered) {
				prog.DeadLettered++
			}
		}
		prog.Limit = lim.Limit()
		if o.progress != nil {
			o.progress(prog)
		}
		mu.Unlock()
		emit(r)
	}
	// Items run on long-lived workers, started as needed up to the
	// concurrency: their stacks grow once, not once per item.
	type job = batchJob
	jobs := make(chan job)
	workers := 0
	var paused atomic.Int64 // calls waiting for a breaker, without a slot
	run := func(j job) {
		idx, it := j.idx, j.it
		defer m.tel.BatchInFlight(ctx, -1)
		start := time.Now()
		var co *callOptions
		if it.replayOf != 0 || it.rescue {
			co = &callOptions{replayOf: it.replayOf, replayFailed: it.replayFailed, rescue: it.rescue}
		}
		callCtx := ctx
		var slot *batchSlot
		if m.breakers != nil {
			slot = &batchSlot{lim: lim, paused: &paused}
			slot.held.Store(true)
			callCtx = invocation.WithSlot(ctx, slot)
		}
		res, err := m.execute(callCtx, invocation.Request{Workflow: it.Workflow, Params: it.Params, Body: it.body, PathParams: it.PathParams, IdempotencyKey: it.IdempotencyKey}, co)
		rtt := time.Since(start)
		if slot != nil {
			rtt -= slot.pausedFor
			// The adaptive limit wants the server's latency, not the
			// retries' backoff: use the last attempt's.
			if slot.lastAttempt > 0 {
				rtt = slot.lastAttempt
			}
		}
		switch {
		case err == nil:
		case invocation.IsCanceled(err):
			rtt = 0
			if cause := context.Cause(ctx); cause != nil {
				err = cause
			}
		case o.failFast:
			cancel(invocation.ErrBatchAborted)
		}
		mu.Lock()
		prog.InFlight--
		mu.Unlock()
		end(BatchResult{Index: idx, Item: it, Result: res, Err: err})
		// Free the slot only once the result is handed over: a slow
		// stream consumer then holds the dispatcher back, and memory
		// stays bounded by the concurrency.
		if slot == nil || slot.held.Load() {
			lim.Release(rtt, err != nil && !invocation.IsCanceled(err) && invocation.ClassOf(err) != invocation.Permanent)
		}
	}
	var spawn sync.Mutex
	// start hands j, which has a slot, to a worker.
	start := func(j job) {
		mu.Lock()
		prog.InFlight++
		mu.Unlock()
		m.tel.BatchInFlight(ctx, 1)
		select {
		case jobs <- j:
		default:
			spawn.Lock()
			// Calls paused by an open breaker gave their slot back but
			// keep their worker: allow one more worker for each.
			if workers < maxConcurrent+int(paused.Load()) {
				workers++
				wg.Go(func() {
					for j := range jobs {
						run(j)
					}
				})
			}
			spawn.Unlock()
			jobs <- j
		}
	}
	acquire := func(j job) bool {
		if ctx.Err() != nil || lim.Acquire(ctx) != nil {
			end(BatchResult{Index: j.idx, Item: j.it, Err: context.Cause(ctx)})
			return false
		}
		return true
	}
	submit := func(j job) {
		if acquire(j) {
			start(j)
		}
	}
	h := m.newHolds(ctx, total, maxConcurrent, submit, func(d int) {
		mu.Lock()
		prog.Held += d
		mu.Unlock()
	})
	i := 0
	for it := range items {
		idx := i
		i++
		select {
		case <-abandon:
			h.wait()
			close(jobs)
			wg.Wait()
			return
		default:
		}
		j := job{idx: idx, it: it}
		// The breaker is asked once the item has a slot: that is when it
		// would be sent. A held item gives its slot back.
		for acquire(j) {
			held, full := h.hold(j)
			if !held && !full {
				start(j)
				break
			}
			lim.Release(0, false)
			if held {
				break
			}
			h.waitRoom()
		}
	}
	h.wait()
	close(jobs)
	wg.Wait()
}

// batchSlot is a batch call's concurrency slot, given back while the
// call waits without sending: an open breaker's pause, a retry's
// backoff, a reconcile's wait (invocation.Slot).
type batchSlot struct {
	lim       slots
	paused    *atomic.Int64
	held      atomic.Bool
	since     time.Time
	pausedFor time.Duration
	// lastAttempt is the latency of the call's last attempt.
	lastAttempt time.Duration
}

// ObserveAttempt records an attempt's latency (the breaker stage calls
// it).
func (s *batchSlot) ObserveAttempt(d time.Duration) { s.lastAttempt = d }

func (s *batchSlot) Release() {
	if s.held.Swap(false) {
		s.paused.Add(1)
		s.since = time.Now()
		s.lim.Release(0, false)
	}
}

func (s *batchSlot) Reacquire(ctx context.Context) error {
	if s.held.Load() {
		return nil
	}
	s.paused.Add(-1)
	s.pausedFor += time.Since(s.since)
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.lim.Acquire(ctx); err != nil {
		return err
	}
	s.held.Store(true)
	return nil
}

// holds keeps a batch's items away from workflows whose circuit breaker
// is open: an item read while its workflow's breaker is open is held (not
// sent, no slot taken) and dispatched once the breaker lets calls
// through, while items for other workflows go on. A stream holds at most
// max(256, 16*concurrency) items; past that the dispatcher waits.
type holds struct {
	ctx     context.Context
	m       *Manager
	submit  func(batchJob)
	count   func(int)
	mu      sync.Mutex
	waiting map[string][]batchJob
	n, max  int
	room    chan struct{}
	wg      sync.WaitGroup
}

type batchJob = struct {
	idx int
	it  BatchItem
}

func (m *Manager) newHolds(ctx context.Context, total, concurrency int, submit func(batchJob), count func(int)) *holds {
	limit := total // a batch's items are in memory already
	if total < 0 {
		limit = max(256, 16*concurrency) // a stream's memory stays bounded
	}
	return &holds{ctx: ctx, m: m, submit: submit, count: count, max: limit}
}

// hold reports whether j was held: its workflow's breaker is open, or
// items of that workflow are already held (their order is kept). full
// says it should have been held but no room is left: wait with waitRoom.
func (h *holds) hold(j batchJob) (held, full bool) {
	if h.m.breakers == nil {
		return false, false
	}
	wf := j.it.Workflow
	h.mu.Lock()
	defer h.mu.Unlock()
	_, waiting := h.waiting[wf]
	var wait time.Duration
	var changed <-chan struct{}
	if !waiting {
		wait, changed = h.m.breakers.OpenFor(wf)
		if wait <= 0 {
			return false, false
		}
	}
	if h.n >= h.max {
		if h.room == nil {
			h.room = make(chan struct{})
		}
		return false, true
	}
	if h.waiting == nil {
		h.waiting = map[string][]batchJob{}
	}
	h.waiting[wf] = append(h.waiting[wf], j)
	h.n++
	if !waiting {
		h.wg.Go(func() { h.release(wf, wait, changed) })
	}
	h.count(1)
	return true, false
}

// waitRoom waits until held items are released (each release ends when
// ctx does).
func (h *holds) waitRoom() {
	h.mu.Lock()
	room := h.room
	h.mu.Unlock()
	if room != nil {
		<-room
	}
}

// release waits until wf's breaker lets calls through (or ctx ends) and
// dispatches what was held for it.
func (h *holds) release(wf string, wait time.Duration, changed <-chan struct{}) {
	for wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-changed:
		case <-h.ctx.Done():
		}
		t.Stop()
		if h.ctx.Err() != nil {
			break
		}
		wait, changed = h.m.breakers.OpenFor(wf)
	}
	for {
		h.mu.Lock()
		q := h.waiting[wf]
		if len(q) == 0 {
			delete(h.waiting, wf)
			h.mu.Unlock()
			return
		}
		h.waiting[wf] = nil
		h.n -= len(q)
		if h.room != nil {
			close(h.room)
			h.room = nil
		}
		h.mu.Unlock()
		h.count(-len(q))
		for _, j := range q {
			h.submit(j)
		}
	}
}

// wait returns once every held item was dispatched or ended.
func (h *holds) wait() { h.wg.Wait() }

// configuredPacking returns the packing the configuration asks for when
// every item's workflow is set to pack, nil otherwise.
func (m *Manager) configuredPacking(items []BatchItem) *pack.Options {
	var p *pack.Options
	for _, it := range items {
		w, ok := m.cfg.Workflows[it.Workflow]
		if !ok || !w.Pack.Enabled {
			return nil
		}
		if p == nil {
			p = &pack.Options{MaxItems: w.Pack.MaxItems, MaxBytes: w.Pack.MaxBytes, InFlight: w.Pack.InFlight}
		}
	}
	return p
}

// UnmarshalJSON reads an item, taking the design's "id" as the workflow
// when "workflow" is not given.
func (it *BatchItem) UnmarshalJSON(b []byte) error {
	type plain BatchItem
	var v struct {
		plain
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*it = BatchItem(v.plain)
	if it.Workflow == "" {
		it.Workflow = v.ID
	}
	return nil
}
