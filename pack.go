package invoker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Defaults of packing.
const (
	DefaultPackItems    = 200
	DefaultPackBytes    = 8 << 20 // well under n8n's 16 MiB body limit
	DefaultPackInFlight = 2
)

// PackOptions cut a batch into packs: many items per n8n execution.
type PackOptions struct {
	// MaxItems per pack (default DefaultPackItems).
	MaxItems int
	// MaxBytes of a pack's encoded body (default DefaultPackBytes). n8n
	// refuses bodies over 16 MiB with a misleading 500.
	MaxBytes int
	// InFlight is the number of packs sent at once (default 2: more only
	// adds latency, n8n runs one execution mostly on one event loop).
	InFlight int
}

// WithPacking sends the batch's items many per call to a packed workflow
// (see templates/packed-items.json): the body is {"items": [{"key",
// "params"}, ...]} and the workflow answers an array of the same length
// and order, each {key, ok: true, result} or {key, ok: false, error}. A
// pack whose answer does not confirm every item in order, or that fails
// as a whole, is split in halves and retried, down to single items,
// which take the normal retry and dead-letter path. Delivery is at least
// once per item: an item's key travels with it for the workflow to
// dedupe.
func WithPacking(p PackOptions) BatchOption {
	return func(o *batchOptions) { o.pack = &p }
}

// PackError is a pack whose answer does not confirm its items: wrong
// length, a key out of place, or not a JSON array of item results.
type PackError struct {
	Workflow string
	Items    int
	Reason   string
}

// Error returns the message.
func (e *PackError) Error() string {
	return fmt.Sprintf("workflow %q: packed answer for %d items rejected: %s", e.Workflow, e.Items, e.Reason)
}

// Class returns Unknown: the workflow may have run the items.
func (e *PackError) Class() invocation.Class { return invocation.Unknown }

// ItemError is one item that the packed workflow reported failed
// ({key, ok: false, error}).
type ItemError struct {
	Workflow    string
	Key         string
	Message     string
	ExecutionID string
}

// Error returns the message.
func (e *ItemError) Error() string {
	return fmt.Sprintf("workflow %q: item %q failed in execution %s: %s", e.Workflow, e.Key, e.ExecutionID, e.Message)
}

// Class returns Permanent: the workflow ran the item.
func (e *ItemError) Class() invocation.Class { return invocation.Permanent }

// Is matches ErrWorkflowFailed and ErrPermanent.
func (e *ItemError) Is(target error) bool {
	return target == invocation.ErrWorkflowFailed || target == invocation.ErrPermanent
}

// packItem is one item result of a packed answer.
type packItem struct {
	Key    *string         `json:"key"`
	OK     *bool           `json:"ok"`
	Result json.RawMessage `json:"result"`
	Error  any             `json:"error"`
}

// packed is one item as the batch prepares it.
type packed struct {
	idx   int
	key   string
	entry []byte // {"key":..,"params":..}
}

func (p *PackOptions) fill() {
	if p.MaxItems <= 0 {
		p.MaxItems = DefaultPackItems
	}
	if p.MaxBytes <= 0 {
		p.MaxBytes = DefaultPackBytes
	}
	if p.InFlight <= 0 {
		p.InFlight = DefaultPackInFlight
	}
}

// executePacked runs a batch in packs, per workflow.
func (m *Manager) executePacked(ctx context.Context, items []BatchItem, o *batchOptions, results []BatchResult) {
	opts := *o.pack
	opts.fill()
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
	var body bytes.Buffer
	body.WriteString(`{"items":[`)
	keys := sha256.New()
	for i, p := range pk {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(p.entry)
		keys.Write([]byte(p.key))
		keys.Write([]byte{0})
	}
	body.WriteString(`]}`)
	req := invocation.Request{Workflow: workflow, Body: body.Bytes(), IdempotencyKey: "pack-" + hex.EncodeToString(keys.Sum(nil))[:32]}
	res, err := m.execute(ctx, req, nil)
	var answers []packItem
	if err == nil {
		answers, err = checkPack(workflow, pk, res.Output)
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
			msg := fmt.Sprint(a.Error)
			if s, ok := a.Error.(string); ok {
				msg = s
			}
			end(BatchResult{Index: p.idx, Item: items[p.idx], Err: &ItemError{Workflow: workflow, Key: p.key, Message: msg, ExecutionID: res.ExecutionID}})
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

// checkPack validates a packed answer: an array of the pack's length,
// each element with its own key in its position and an ok flag.
func checkPack(workflow string, pk []packed, out json.RawMessage) ([]packItem, error) {
	var answers []packItem
	if err := json.Unmarshal(out, &answers); err != nil {
		return nil, &PackError{Workflow: workflow, Items: len(pk), Reason: "not a JSON array of item results (is the webhook's response data set to all entries?)"}
	}
	if len(answers) != len(pk) {
		return nil, &PackError{Workflow: workflow, Items: len(pk), Reason: "answer has " + strconv.Itoa(len(answers)) + " items"}
	}
	for i, a := range answers {
		switch {
		case a.Key == nil || a.OK == nil:
			return nil, &PackError{Workflow: workflow, Items: len(pk), Reason: fmt.Sprintf("item %d has no key or no ok", i)}
		case *a.Key != pk[i].key:
			return nil, &PackError{Workflow: workflow, Items: len(pk), Reason: fmt.Sprintf("item %d has key %q, want %q (order changed)", i, *a.Key, pk[i].key)}
		}
	}
	return answers, nil
}
