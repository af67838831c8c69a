package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// ErrorInfo is an error as stored: its class and message.
type ErrorInfo struct {
	Class   string `json:"class"`
	Message string `json:"message"`
}

// Entry is one dead-lettered invocation.
type Entry struct {
	ID       int64           `json:"id"`
	Workflow string          `json:"workflow"`
	Params   json.RawMessage `json:"params,omitempty"`
	// PathParams are the values of the webhook path's :name segments.
	PathParams     map[string]string `json:"path_params,omitempty"`
	IdempotencyKey string            `json:"idempotency_key"`
	RequestID      string            `json:"request_id,omitempty"`
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

// Purger is a store that deletes the entries a filter selects at once
// (both built-in stores; `dlq purge` needs it).
type Purger interface {
	Purge(ctx context.Context, f Filter) (int, error)
}

// Inflight is an invocation written ahead of being sent.
type Inflight struct {
	IdempotencyKey string
	Workflow       string
	Params         json.RawMessage
	// PathParams are the values of the webhook path's :name segments:
	// a rescue sends them again.
	PathParams map[string]string
	RequestID  string
	// StartedAt is when it was first written ahead (set by the store;
	// kept when the key changes hands): its attempts started after it.
	StartedAt time.Time
	// Lease is who holds it (set by the store).
	Lease Lease
	// Replaces, given to Begin, is an owner known to be dead (a process
	// of this machine that no longer exists): its live lease is taken
	// over at once instead of being waited out.
	Replaces string
}

// Lease is one process's hold on an invocation in flight: Owner holds Key
// until Until, and renews the lease while the call runs. Token, the
// fencing token, is new (and larger) each time the key changes hands; the
// store refuses an outcome written under a token that is no longer the
// key's (ErrLeaseLost), so a process that lost its lease (paused,
// partitioned) cannot overwrite the new owner's outcome. An expired lease
// is taken over by the next Begin of its key. The zero Token
// holds nothing: Complete then records a result known from n8n, End
// stores a dead letter, neither touching the in-flight records.
type Lease struct {
	Key   string
	Owner string
	Token int64
	Until time.Time
}

// InflightFilter selects invocations in flight; zero fields select all.
type InflightFilter struct {
	Key string
	// ExpiredAt selects leases that ended by then.
	ExpiredAt time.Time
	// Limit bounds the answer (0: no bound).
	Limit int
}

// Journal writes invocations ahead and records how they ended, so that a
// crash loses nothing and a key that succeeded is not fired again. Several
// processes may share one journal: each key in flight is leased to one of
// them.
type Journal interface {
	// Begin records an invocation about to be sent, leased to owner for
	// ttl. When another owner holds a live lease on the key it writes
	// nothing and returns an error of code invocation.CodeKeyHeld (Held). When the key is in flight under
	// an expired lease (its owner died or lost it) or under owner's own
	// (a call of this process that was sent and then canceled), the key
	// is taken over and takenOver is true: an earlier attempt may have
	// run, so reconcile before sending.
	Begin(ctx context.Context, in *Inflight, owner string, ttl time.Duration) (l Lease, takenOver bool, err error)
	// Renew extends the leases ls by ttl (the heartbeat, a fence before
	// a send) and returns the keys of those that are no longer the key's
	// lease: a lease matches on its key and its token, never on the
	// owner alone.
	Renew(ctx context.Context, ls []Lease, ttl time.Duration) (lost []string, err error)
	// Complete records a success under l (with the result to return for
	// a repeated key) and forgets the key as in flight, in one
	// transaction; ErrLeaseLost (nothing written) when l is no longer the
	// key's lease.
	Complete(ctx context.Context, l Lease, result json.RawMessage) error
	// End forgets the key as in flight under l; with e, it becomes a dead
	// letter in the same transaction and its id is returned.
	// ErrLeaseLost (nothing written) when l is no longer the key's lease.
	End(ctx context.Context, l Lease, e *Entry) (int64, error)
	// Completed returns the recorded result of a key that succeeded
	// within the retention.
	Completed(ctx context.Context, key string) (json.RawMessage, bool, error)
	// Inflight lists the invocations in flight f selects, oldest first.
	Inflight(ctx context.Context, f InflightFilter) ([]*Inflight, error)
}

// Held returns the error of a Begin of a key another process holds a
// live lease on (code invocation.CodeKeyHeld), with that process as its
// Owner.
func Held(key, owner string, until time.Time) *invocation.Error {
	return &invocation.Error{Code: invocation.CodeKeyHeld, Key: key, Owner: owner,
		Message: fmt.Sprintf("dlq: idempotency key %q is in flight in another process (%s) until %s", key, owner, until.Format(time.RFC3339Nano))}
}

// ErrLeaseLost is an outcome written under a lease the key no longer has:
// another process took the key over.
var ErrLeaseLost = invocation.ErrLeaseLost

// ErrNotFound is returned for an unknown entry id.
var ErrNotFound = errors.New("dlq: no such entry")

// Reasons of a dead letter: why it is here, from its error's code
// (ReasonOf).
const (
	// ReasonExhausted: every attempt allowed failed without n8n running
	// the workflow (not sent, unavailable, rate limited).
	ReasonExhausted = "exhausted"
	// ReasonAmbiguous: sent, answer lost, nothing to reconcile with: it
	// may have run.
	ReasonAmbiguous = "ambiguous"
	// ReasonUnresolved: a reconcile could not settle whether it ran.
	ReasonUnresolved = "unresolved"
	// ReasonCircuitOpen: the breaker refused it.
	ReasonCircuitOpen = "circuit-open"
	// ReasonRetryBudget: the retry budget refused a retry.
	ReasonRetryBudget = "retry-budget"
	// ReasonBulkhead: the bulkhead refused it.
	ReasonBulkhead = "bulkhead"
	// ReasonFailed: the workflow ran (and failed, or answered what it
	// chose, or unreadably): replaying runs it again.
	ReasonFailed = "failed"
	// ReasonRejected: refused before it ran (a 4xx, auth, an unknown
	// workflow, a bad request): replaying is safe once the cause is fixed.
	ReasonRejected = "rejected"
	// ReasonInterrupted: canceled, or its process lost the key.
	ReasonInterrupted = "interrupted"
)

// reasons is the dead-letter reason of each code.
var reasons = map[invocation.Code]string{
	invocation.CodeOK:               ReasonExhausted,
	invocation.CodeCanceled:         ReasonInterrupted,
	invocation.CodeCanceledInFlight: ReasonInterrupted,
	invocation.CodeNotSent:          ReasonExhausted,
	invocation.CodeUnavailable:      ReasonExhausted,
	invocation.CodeRateLimited:      ReasonExhausted,
	invocation.CodeLost:             ReasonExhausted,
	invocation.CodeAmbiguous:        ReasonAmbiguous,
	invocation.CodeUnresolved:       ReasonUnresolved,
	invocation.CodeUnknown:          ReasonExhausted,
	invocation.CodeRejected:         ReasonRejected,
	invocation.CodeWorkflowFailed:   ReasonFailed,
	invocation.CodeWorkflowAnswered: ReasonFailed,
	invocation.CodeInvalidAnswer:    ReasonFailed,
	invocation.CodeUnknownWorkflow:  ReasonRejected,
	invocation.CodeBadRequest:       ReasonRejected,
	invocation.CodeVetoed:           ReasonRejected,
	invocation.CodeCircuitOpen:      ReasonCircuitOpen,
	invocation.CodeBudgetExhausted:  ReasonRetryBudget,
	invocation.CodeBulkheadFull:     ReasonBulkhead,
	invocation.CodeKeyConflict:      ReasonRejected,
	invocation.CodeKeyHeld:          ReasonInterrupted,
	invocation.CodeLeaseLost:        ReasonInterrupted,
}

// ReasonOf returns the dead-letter reason of an error of code c.
func ReasonOf(c invocation.Code) string {
	if r, ok := reasons[c]; ok {
		return r
	}
	return ReasonExhausted
}

// EncodePathParams is how a store keeps path parameters: a JSON object,
// nil for none.
func EncodePathParams(p map[string]string) []byte {
	if len(p) == 0 {
		return nil
	}
	b, _ := json.Marshal(p)
	return b
}

// DecodePathParams reads what EncodePathParams wrote.
func DecodePathParams(b []byte) (map[string]string, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var p map[string]string
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("dlq: path parameters: %w", err)
	}
	return p, nil
}
