package invoker

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/pipeline"
)

// inflight is a call in flight under an explicit idempotency key.
type inflight struct {
	workflow string
	params   []byte
	done     chan struct{}
	res      *invocation.Result
	err      error
}

// keys holds the calls in flight by idempotency key.
type keys struct {
	mu sync.Mutex
	m  map[string]*inflight
}

// dedupeStage makes one key one execution within the process: a call
// whose explicit idempotency key is in flight waits for that call's
// result (marked Deduplicated) instead of sending again; one with the
// same key and other parameters is an error of code invocation.CodeKeyConflict.
func (m *Manager) dedupeStage(ctx context.Context, c *pipeline.Call, next pipeline.CallHandler) (*invocation.Result, error) {
	if !c.ExplicitKey || c.ReplayOf != 0 {
		return next(ctx, c)
	}
	req := c.Request
	params, err := m.encodeParams(req)
	if err != nil {
		return nil, err
	}
	k := &m.inflight
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*inflight{}
	}
	if other, ok := k.m[req.IdempotencyKey]; ok {
		k.mu.Unlock()
		if other.workflow != req.Workflow || !bytes.Equal(other.params, params) {
			return nil, &invocation.Error{Code: invocation.CodeKeyConflict, Workflow: req.Workflow, Key: req.IdempotencyKey,
				Message: fmt.Sprintf("idempotency key %q is in use by a call with other parameters (nothing was sent)", req.IdempotencyKey)}
		}
		select {
		case <-other.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if other.err != nil {
			if invocation.IsCanceled(other.err) && ctx.Err() == nil {
				return m.dedupeStage(ctx, c, next) // its caller gave up, this one did not
			}
			return nil, other.err
		}
		res := *other.res
		res.Deduplicated = true
		return &res, nil
	}
	f := &inflight{workflow: req.Workflow, params: params, done: make(chan struct{})}
	k.m[req.IdempotencyKey] = f
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		delete(k.m, req.IdempotencyKey)
		k.mu.Unlock()
		close(f.done)
	}()
	f.res, f.err = next(ctx, c)
	return f.res, f.err
}
