package dlq

import (
	"fmt"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// DeadLetteredError is an invocation that failed and was stored in the
// dead-letter queue, to be replayed later with the same idempotency key.
type DeadLetteredError struct {
	// EntryID is the queue entry's id.
	EntryID int64
	// Err is the failure that sent it there.
	Err error
}

// Error returns the message.
func (e *DeadLetteredError) Error() string {
	return fmt.Sprintf("%v (stored in the dead-letter queue as entry %d)", e.Err, e.EntryID)
}

// Unwrap returns the failure.
func (e *DeadLetteredError) Unwrap() error { return e.Err }

// Is matches invocation.ErrDeadLettered.
func (e *DeadLetteredError) Is(target error) bool { return target == invocation.ErrDeadLettered }
