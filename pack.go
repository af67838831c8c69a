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
// pack whose answer does not confirm every item in order, or that fails
// as a whole, is split in halves and retried, down to single items,
// which take the normal retry and dead-letter path. Delivery is at least
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

// runPack sends one pack; on a pack-level failure it splits it in halves
// and sends each, down to single items.
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
		if len(pk) > 1 && !invocation.IsCanceled(err) {
			half := len(pk) / 2
			m.runPack(ctx, workflow, pk[:half], items, end)
			m.runPack(ctx, workflow, pk[half:], items, end)
			return
		}
		for _, p := range pk {
			end(BatchResult{Index: p.idx, Item: items[p.idx], Err: err})
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
