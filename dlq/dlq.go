package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// ErrorInfo is an error as stored: its class and message.
type ErrorInfo struct {
	Class   string `json:"class"`
	Message string `json:"message"`
}

// Entry is one dead-lettered invocation.
type Entry struct {
	ID             int64           `json:"id"`
	Workflow       string          `json:"workflow"`
	Params         json.RawMessage `json:"params,omitempty"`
	IdempotencyKey string          `json:"idempotency_key"`
	RequestID      string          `json:"request_id,omitempty"`
	// Attempts counts every attempt made, replays included.
	Attempts int `json:"attempts"`
	// Reason says why it is here: exhausted, circuit-open, interrupted, ...
	Reason      string     `json:"reason"`
	FirstError  ErrorInfo  `json:"first_error"`
	LastError   ErrorInfo  `json:"last_error"`
	ExecutionID string     `json:"execution_id,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	Replays     int        `json:"replays"`
	ReplayedAt  *time.Time `json:"replayed_at,omitempty"`
}

// Filter selects entries; zero fields select all.
type Filter struct {
	IDs      []int64
	Workflow string
	// Key matches the idempotency key.
	Key string
	// Class matches the last error's class.
	Class  string
	Reason string
	Since  time.Time
	Until  time.Time
	// Limit bounds the answer (0: no bound).
	Limit int
}

// Reader reads dead letters.
type Reader interface {
	List(ctx context.Context, f Filter) ([]*Entry, error)
	Get(ctx context.Context, id int64) (*Entry, error)
}

// Writer stores and removes dead letters.
type Writer interface {
	Put(ctx context.Context, e *Entry) (int64, error)
	Delete(ctx context.Context, id int64) error
	// MarkReplayed records a replay that failed again: attempts added,
	// the last error, and the replay count and time.
	MarkReplayed(ctx context.Context, id int64, attempts int, last ErrorInfo) error
}

// Store is a dead-letter store.
type Store interface {
	Reader
	Writer
}

// Claimer is a store whose entries a replay can claim, so that two
// processes sharing it never replay the same entry.
type Claimer interface {
	Claim(ctx context.Context, id int64, owner string, ttl time.Duration) (bool, error)
	Release(ctx context.Context, id int64, owner string) error
}

// Inflight is an invocation written ahead of being sent.
type Inflight struct {
	IdempotencyKey string
	Workflow       string
	Params         json.RawMessage
	RequestID      string
}

// Journal writes invocations ahead and records how they ended, so that a
// crash loses nothing and a key that succeeded is not fired again.
type Journal interface {
	// Begin records an invocation about to be sent.
	Begin(ctx context.Context, in *Inflight) error
	// Complete records its success (with the result to return for a
	// repeated key) and forgets it as in flight.
	Complete(ctx context.Context, key string, result json.RawMessage) error
	// End forgets it as in flight; with e, it becomes a dead letter (in
	// the same transaction) and its id is returned.
	End(ctx context.Context, key string, e *Entry) (int64, error)
	// Completed returns the recorded result of a key that succeeded
	// within the retention.
	Completed(ctx context.Context, key string) (json.RawMessage, bool, error)
}

// ErrNotFound is returned for an unknown entry id.
var ErrNotFound = errors.New("dlq: no such entry")
