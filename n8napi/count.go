package n8napi

import (
	"context"
	"sync/atomic"
)

// CallCounter counts the API requests made with a context that carries
// it (WithCallCounter): every request on the wire, including pages,
// retries and the resolver's lookups. Safe for concurrent use.
type CallCounter struct{ n atomic.Int64 }

// Count returns the number of requests counted so far.
func (c *CallCounter) Count() int { return int(c.n.Load()) }

type counterKey struct{}

// WithCallCounter returns ctx carrying c.
func WithCallCounter(ctx context.Context, c *CallCounter) context.Context {
	return context.WithValue(ctx, counterKey{}, c)
}

func countCall(ctx context.Context) {
	if c, ok := ctx.Value(counterKey{}).(*CallCounter); ok {
		c.n.Add(1)
	}
}
