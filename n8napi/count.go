package n8napi

import (
	"context"
	"sync/atomic"
)

// CallCounter counts the API requests made with a context that carries
// it (WithCallCounter): every request on the wire, including pages,
// retries and the resolver's lookups, and the bytes of their answers'
// bodies. A counter added to a context that already carries one counts
// into both. Safe for concurrent use.
type CallCounter struct {
	n, b   atomic.Int64
	parent *CallCounter
}

// Count returns the number of requests counted so far.
func (c *CallCounter) Count() int { return int(c.n.Load()) }

// Bytes returns the bytes of the answers' bodies read so far.
func (c *CallCounter) Bytes() int64 { return c.b.Load() }

type counterKey struct{}

// WithCallCounter returns ctx carrying c. c must be new: it is chained to
// the counter ctx already carries, if any.
func WithCallCounter(ctx context.Context, c *CallCounter) context.Context {
	if p, ok := ctx.Value(counterKey{}).(*CallCounter); ok && p != c {
		c.parent = p
	}
	return context.WithValue(ctx, counterKey{}, c)
}

func countCall(ctx context.Context) {
	for c, _ := ctx.Value(counterKey{}).(*CallCounter); c != nil; c = c.parent {
		c.n.Add(1)
	}
}

func countBytes(ctx context.Context, n int) {
	for c, _ := ctx.Value(counterKey{}).(*CallCounter); c != nil; c = c.parent {
		c.b.Add(int64(n))
	}
}
