package invoker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
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
	type job struct {
		idx int
		it  BatchItem
	}
	jobs := make(chan job)
	workers := 0
	run := func(j job) {
		idx, it := j.idx, j.it
		defer m.tel.BatchInFlight(ctx, -1)
		start := time.Now()
		var co *callOptions
		if it.replayOf != 0 {
			co = &callOptions{replayOf: it.replayOf, replayFailed: it.replayFailed}
		}
		res, err := m.execute(ctx, invocation.Request{Workflow: it.Workflow, Params: it.Params, Body: it.body, PathParams: it.PathParams, IdempotencyKey: it.IdempotencyKey}, co)
		rtt := time.Since(start)
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
		lim.Release(rtt, err != nil && !invocation.IsCanceled(err) && invocation.ClassOf(err) != invocation.Permanent)
	}
	i := 0
	for it := range items {
		idx := i
		i++
		select {
		case <-abandon:
			close(jobs)
			wg.Wait()
			return
		default:
		}
		if ctx.Err() != nil || lim.Acquire(ctx) != nil {
			end(BatchResult{Index: idx, Item: it, Err: context.Cause(ctx)})
			continue
		}
		mu.Lock()
		prog.InFlight++
		mu.Unlock()
		m.tel.BatchInFlight(ctx, 1)
		j := job{idx: idx, it: it}
		select {
		case jobs <- j:
		default:
			if workers < maxConcurrent {
				workers++
				wg.Go(func() {
					for j := range jobs {
						run(j)
					}
				})
			}
			jobs <- j
		}
	}
	close(jobs)
	wg.Wait()
}

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
