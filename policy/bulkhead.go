package policy

import (
	"context"
	"sync"
	"time"
)

// Bulkhead bounds the calls in flight per key (per workflow), so that one
// slow workflow cannot take every connection. Safe for concurrent use.
type Bulkhead struct {
	max     int
	maxWait time.Duration
	mu      sync.Mutex
	slots   map[string]chan struct{}
}

// NewBulkhead allows maxInFlight calls per key. A call that finds no slot
// waits up to maxWait (0: as long as its context allows) and then fails
// with a error of code invocation.CodeBulkheadFull.
func NewBulkhead(maxInFlight int, maxWait time.Duration) *Bulkhead {
	return &Bulkhead{max: maxInFlight, maxWait: maxWait, slots: map[string]chan struct{}{}}
}

// Acquire takes a slot for key and returns its release function.
func (b *Bulkhead) Acquire(ctx context.Context, key string) (release func(), err error) {
	b.mu.Lock()
	ch, ok := b.slots[key]
	if !ok {
		ch = make(chan struct{}, b.max)
		b.slots[key] = ch
	}
	b.mu.Unlock()
	release = func() { <-ch }
	select {
	case ch <- struct{}{}:
		return release, nil
	default:
	}
	var timeout <-chan time.Time
	if b.maxWait > 0 {
		t := time.NewTimer(b.maxWait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case ch <- struct{}{}:
		return release, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-timeout:
		return nil, bulkheadFull(key, b.max)
	}
}

// InFlight returns the calls in flight for key.
func (b *Bulkhead) InFlight(key string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.slots[key])
}
