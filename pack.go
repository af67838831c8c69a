package invoker

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/pack"
)

// WithPacking sends the batch's items many per call to a packed workflow
// (see templates/packed-items.json): the body is {"items": [{"key",
// "params"}, ...]} and the workflow answers an array of the same length
// and order, each {key, ok: true, result} or {key, ok: false, error}. A
// pack that n8n did not run (nothing sent, unavailable, rate limited) is
// split in halves and sent again, down to single items, which take the
// normal retry and dead-letter path; a pack that ran or may have run (an
// answer that does not confirm every item in order, "Error in workflow",
// an unreadable or lost answer) is never split or sent again: each of its
// items gets a typed *invocation.Error with the item's key and the pack's
// execution id. Delivery is at least
// once per item: an item's key travels with it for the workflow to
// dedupe.
func WithPacking(p pack.Options) BatchOption {
	return func(o *batchOptions) { o.pack = &p }
}

// packed is one item as the batch prepares it.
type packed struct {
	idx   int
	key   string
	entry []byte // {"key":..,"params":..}
}

// executePacked runs a batch in packs, per workflow.
func (m *Manager) executePacked(ctx context.Context, items []BatchItem, o *batchOptions, results []BatchResult) {
	opts := *o.pack
	opts.Fill()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu   sync.Mutex
		prog = Progress{Total: len(items), Limit: opts.InFlight}
	)
	end := func(r BatchResult) {
		mu.Lock()
		defer mu.Unlock()
		results[r.Index] = r
		switch {
		case r.Err == nil:
			prog.Succeeded++
		case invocation.IsCanceled(r.Err):
			prog.Canceled++
		default:
			prog.Failed++
			if o.failFast {
				cancel(invocation.ErrBatchAborted)
			}
		}
		if o.progress != nil {
			o.progress(prog)
		}
	}
	// Group by workflow, cut into packs by count and size.
	order := []string{}
	groups := map[string][]packed{}
	for i, it := range items {
		key := it.IdempotencyKey
		if key == "" {
			key = m.newID()
		}
		entry, err := json.Marshal(struct {
			Key    string         `json:"key"`
			Params map[string]any `json:"params"`
		}{key, it.Params})
		if err != nil {
			end(BatchResult{Index: i, Item: it, Err: fmt.Errorf("workflow %q: encoding item: %w", it.Workflow, err)})
			continue
		}
		if _, ok := groups[it.Workflow]; !ok {
			order = append(order, it.Workflow)
		}
		groups[it.Workflow] = append(groups[it.Workflow], packed{idx: i, key: key, entry: entry})
	}
	var packs []struct {
		workflow string
		items    []packed
	}
	for _, wf := range order {
		var cur []packed
		size := 0
		for _, p := range groups[wf] {
			if len(cur) > 0 && (len(cur) >= opts.MaxItems || size+len(p.entry)+1 > opts.MaxBytes-16) {
				packs = append(packs, struct {
					workflow string
					items    []packed
				}{wf, cur})
				cur, size = nil, 0
			}
			cur = append(cur, p)
			size += len(p.entry) + 1
		}
		if len(cur) > 0 {
			packs = append(packs, struct {
				workflow string
				items    []packed
			}{wf, cur})
		}
	}
	sem := make(chan struct{}, opts.InFlight)
	var wg sync.WaitGroup
	for _, p := range packs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			for _, it := range p.items {
				end(BatchResult{Index: it.idx, Item: items[it.idx], Err: context.Cause(ctx)})
			}
			continue
		}
		mu.Lock()
		prog.InFlight += len(p.items)
		mu.Unlock()
		wg.Go(func() {
			defer func() { <-sem }()
			m.runPack(ctx, p.workflow, p.items, items, func(r BatchResult) {
				mu.Lock()
				prog.InFlight--
				mu.Unlock()
				end(r)
			})
		})
	}
	wg.Wait()
}

// runPack sends one pack. A pack that did not run (notRun) is split in
// halves and each sent, down to single items; a pack that ran or may have
// run (a 2xx of the wrong shape, "Error in workflow", an unreadable or a
// lost answer) is never sent again: each of its items gets the pack's
// error, typed with the item's key and the pack's execution id.
func (m *Manager) runPack(ctx context.Context, workflow string, pk []packed, items []BatchItem, end func(BatchResult)) {
	its := make([]pack.Item, len(pk))
	for i, p := range pk {
		its[i] = pack.Item{Key: p.key, Entry: p.entry}
	}
	body, key := pack.Body(its)
	req := invocation.Request{Workflow: workflow, Body: body, IdempotencyKey: key}
	res, err := m.execute(ctx, req, nil)
	var answers []pack.Answer
	if err == nil {
		answers, err = pack.Check(workflow, its, res.Output)
	}
	if err != nil {
		if invocation.IsCanceled(err) {
			if cause := context.Cause(ctx); cause != nil {
				err = cause
			}
		}
		if len(pk) > 1 && !invocation.IsCanceled(err) && notRun(err) {
			half := len(pk) / 2
			m.runPack(ctx, workflow, pk[:half], items, end)
			m.runPack(ctx, workflow, pk[half:], items, end)
			return
		}
		execID := ""
		if res != nil {
			execID = res.ExecutionID
		}
		for _, p := range pk {
			end(BatchResult{Index: p.idx, Item: items[p.idx], Err: itemError(err, p.key, execID)})
		}
		return
	}
	for i, p := range pk {
		a := answers[i]
		if !*a.OK {
			end(BatchResult{Index: p.idx, Item: items[p.idx], Err: pack.ItemFailed(workflow, p.key, a.Message(), res.ExecutionID)})
			continue
		}
		r := *res
		r.Output = a.Result
		if len(r.Output) == 0 {
			r.Output = json.RawMessage("null")
		}
		end(BatchResult{Index: p.idx, Item: items[p.idx], Result: &r})
	}
}

// notRun reports whether a pack's error says that n8n did not run it: an
// outcome of NotSent, or n8n's answer that it did not (unavailable, rate
// limited). Only such a pack may be split and sent again.
func notRun(err error) bool {
	c := invocation.CodeOf(err)
	return c.Outcome() == invocation.NotSent || c == invocation.CodeUnavailable || c == invocation.CodeRateLimited
}

// itemError is the error of one item of a pack that ended with err: an
// *invocation.Error of err's code with the item's key and, when the
// answer had one, the pack's execution id.
func itemError(err error, key, executionID string) error {
	if invocation.IsCanceled(err) && invocation.CodeOf(err) == invocation.CodeUnknown {
		return err // a batch's own cancellation cause (ErrBatchAborted)
	}
	e := invocation.AsError(err)
	e.Key = key
	if e.ExecutionID == "" {
		e.ExecutionID = executionID
	}
	return e
}
