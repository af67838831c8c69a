package invocation

import (
	"context"
	"time"
)

// Slot is the share of a bounded resource a call holds while it runs,
// such as one of a batch's concurrency slots. A stage that is about to
// wait without sending anything (an open circuit breaker's pause, a
// retry's backoff, a reconcile's wait for n8n) gives
// the slot back with Release, so the batch can run calls to other
// workflows meanwhile, and takes it again with Reacquire before it goes
// on.
type Slot interface {
	// Release gives the slot back.
	Release()
	// Reacquire waits for a slot again, or returns ctx's error (the slot
	// is then not held). It is called once after each Release, also when
	// ctx has ended.
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

// WaitReleased waits d, until wake is closed (wake may be nil) or until
// ctx ends, having given back the Slot ctx carries meanwhile: a call
// waiting to retry does not count against its batch's concurrency. It
// takes the slot again before it returns nil, and returns ctx's error
// when ctx ended.
func WaitReleased(ctx context.Context, d time.Duration, wake <-chan struct{}) error {
	if d <= 0 {
		return waitEnded(ctx)
	}
	s := SlotFrom(ctx)
	if s != nil {
		s.Release()
	}
	t := time.NewTimer(d)
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-wake:
	}
	t.Stop()
	if s != nil {
		if err := s.Reacquire(ctx); err != nil {
			return err
		}
	}
	return waitEnded(ctx)
}
