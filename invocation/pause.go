package invocation

import "context"

// Slot is the share of a bounded resource a call holds while it runs,
// such as one of a batch's concurrency slots. A stage that is about to
// wait without sending anything (an open circuit breaker's pause) gives
// the slot back with Release, so the batch can run calls to other
// workflows meanwhile, and takes it again with Reacquire before it goes
// on.
type Slot interface {
	// Release gives the slot back.
	Release()
	// Reacquire waits for a slot again, or returns ctx's error (the slot
	// is then not held).
	Reacquire(ctx context.Context) error
}

type slotKey struct{}

// WithSlot returns ctx carrying s.
func WithSlot(ctx context.Context, s Slot) context.Context {
	return context.WithValue(ctx, slotKey{}, s)
}

// SlotFrom returns the slot ctx carries, or nil.
func SlotFrom(ctx context.Context) Slot {
	s, _ := ctx.Value(slotKey{}).(Slot)
	return s
}
