package dlq

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Statuses of a Submission.
const (
	SubmissionQueued       = "queued"
	SubmissionRunning      = "running"
	SubmissionSucceeded    = "succeeded"
	SubmissionFailed       = "failed"
	SubmissionDeadLettered = "dead_lettered"
)

// Submission is an invocation stored for later delivery (durable
// submission, the outbox): what to call, and what became of it. The
// store's submissions are authoritative for an invocation's status and
// result; the journal and the dead letters stay as for any call.
type Submission struct {
	ID             string          `json:"id"`
	Workflow       string          `json:"workflow"`
	Params         json.RawMessage `json:"params,omitempty"`
	PathParams     json.RawMessage `json:"path_params,omitempty"`
	IdempotencyKey string          `json:"idempotency_key"`
	Status         string          `json:"status"`
	Result         json.RawMessage `json:"result,omitempty"`
	Error          ErrorInfo       `json:"error"`
	// DeadLetter is the dead-letter entry of a dead-lettered one.
	DeadLetter int64 `json:"dead_letter,omitempty"`
	// Deliveries counts the deliveries started (more than one only after
	// a worker died or stopped mid-call).
	Deliveries int       `json:"deliveries"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Done reports whether the submission has ended.
func (s *Submission) Done() bool {
	return s.Status == SubmissionSucceeded || s.Status == SubmissionFailed || s.Status == SubmissionDeadLettered
}

// SubmissionFilter selects submissions; zero fields select all.
type SubmissionFilter struct {
	Status   string
	Workflow string
	// Limit bounds the answer (0: 100).
	Limit int
}

// Submissions is a store that queues submissions itself (the SQLite
// store; the PostgreSQL store's outbox queues on River instead). A worker
// claims a queued submission under a lease that it renews while it
// delivers; a worker that dies leaves a lease that expires, and another
// worker claims the submission again (the journal's lease and reconcile
// keep n8n from running it twice).
type Submissions interface {
	// Submit stores s (s.ID set by the caller). When its idempotency key
	// is already stored it stores nothing and returns the stored one
	// with created false.
	Submit(ctx context.Context, s *Submission) (stored *Submission, created bool, err error)
	// ClaimSubmission claims the oldest queued submission (or one whose
	// worker's lease expired) for owner until ttl from now: nil when
	// there is none.
	ClaimSubmission(ctx context.Context, owner string, ttl time.Duration) (*Submission, error)
	// RenewSubmissions extends owner's claims on ids.
	RenewSubmissions(ctx context.Context, owner string, ids []string, ttl time.Duration) error
	// FinishSubmission records the end of owner's delivery: status,
	// result, error, dead letter (status queued gives it back, for a
	// worker that stops mid-call). ErrLeaseLost when owner no longer
	// holds the claim.
	FinishSubmission(ctx context.Context, owner string, s *Submission) error
	// Submission returns one, or ErrNotFound.
	Submission(ctx context.Context, id string) (*Submission, error)
	// ListSubmissions returns the newest first.
	ListSubmissions(ctx context.Context, f SubmissionFilter) ([]*Submission, error)
}

var _ Submissions = (*SQLite)(nil)

const submissionColumns = `id, workflow, params, path_params, idempotency_key, status, result, error_class, error_message,
	dead_letter, deliveries, created_at, updated_at`

func scanSubmission(row interface{ Scan(...any) error }) (*Submission, error) {
	var s Submission
	var params, pathParams, result []byte
	var dead sql.NullInt64
	var created, updated int64
	if err := row.Scan(&s.ID, &s.Workflow, &params, &pathParams, &s.IdempotencyKey, &s.Status, &result,
		&s.Error.Class, &s.Error.Message, &dead, &s.Deliveries, &created, &updated); err != nil {
		return nil, err
	}
	s.Params, s.PathParams, s.Result = params, pathParams, result
	s.DeadLetter = dead.Int64
	s.CreatedAt, s.UpdatedAt = time.Unix(0, created), time.Unix(0, updated)
	return &s, nil
}

func nullable(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return []byte(b)
}

// Submit stores a submission (Submissions.Submit).
func (s *SQLite) Submit(ctx context.Context, sub *Submission) (*Submission, bool, error) {
	if sub == nil || sub.ID == "" || sub.Workflow == "" || sub.IdempotencyKey == "" {
		return nil, false, errors.New("dlq: a submission needs an id, a workflow and an idempotency key")
	}
	var stored *Submission
	created := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		now := time.Now().UnixNano()
		res, err := tx.ExecContext(ctx, `INSERT INTO submissions (id, workflow, params, path_params, idempotency_key, status, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(idempotency_key) DO NOTHING`,
			sub.ID, sub.Workflow, nullable(sub.Params), nullable(sub.PathParams), sub.IdempotencyKey, SubmissionQueued, now, now)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		created = n == 1
		stored, err = scanSubmission(tx.QueryRowContext(ctx, "SELECT "+submissionColumns+" FROM submissions WHERE idempotency_key = ?", sub.IdempotencyKey))
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("dlq: submit: %w", err)
	}
	return stored, created, nil
}

// ClaimSubmission claims the oldest due submission (Submissions.ClaimSubmission).
func (s *SQLite) ClaimSubmission(ctx context.Context, owner string, ttl time.Duration) (*Submission, error) {
	var got *Submission
	err := s.tx(ctx, func(tx *sql.Tx) error {
		now := time.Now().UnixNano()
		var id string
		err := tx.QueryRowContext(ctx, `SELECT id FROM submissions
			WHERE status = ? OR (status = ? AND lease_until < ?) ORDER BY created_at, id LIMIT 1`,
			SubmissionQueued, SubmissionRunning, now).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE submissions SET status = ?, owner = ?, lease_until = ?, deliveries = deliveries + 1,
			updated_at = ? WHERE id = ?`, SubmissionRunning, owner, now+ttl.Nanoseconds(), now, id); err != nil {
			return err
		}
		got, err = scanSubmission(tx.QueryRowContext(ctx, "SELECT "+submissionColumns+" FROM submissions WHERE id = ?", id))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dlq: claim submission: %w", err)
	}
	return got, nil
}

// RenewSubmissions extends owner's claims (Submissions.RenewSubmissions).
func (s *SQLite) RenewSubmissions(ctx context.Context, owner string, ids []string, ttl time.Duration) error {
	if len(ids) == 0 {
		return nil
	}
	args := []any{time.Now().Add(ttl).UnixNano(), owner, SubmissionRunning}
	for _, id := range ids {
		args = append(args, id)
	}
	_, err := s.db.ExecContext(ctx, "UPDATE submissions SET lease_until = ? WHERE owner = ? AND status = ? AND id IN (?"+
		strings.Repeat(",?", len(ids)-1)+")", args...)
	if err != nil {
		return fmt.Errorf("dlq: renew submissions: %w", err)
	}
	return nil
}

// FinishSubmission records a delivery's end (Submissions.FinishSubmission).
func (s *SQLite) FinishSubmission(ctx context.Context, owner string, sub *Submission) error {
	var dead any
	if sub.DeadLetter > 0 {
		dead = sub.DeadLetter
	}
	res, err := s.db.ExecContext(ctx, `UPDATE submissions SET status = ?, result = COALESCE(?, result), error_class = ?, error_message = ?,
		dead_letter = COALESCE(?, dead_letter), owner = '', lease_until = 0, updated_at = ?
		WHERE id = ? AND owner = ? AND status = ?`,
		sub.Status, nullable(sub.Result), sub.Error.Class, sub.Error.Message, dead, time.Now().UnixNano(), sub.ID, owner, SubmissionRunning)
	if err != nil {
		return fmt.Errorf("dlq: finish submission: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrLeaseLost
	}
	return nil
}

// Submission returns one submission (Submissions.Submission).
func (s *SQLite) Submission(ctx context.Context, id string) (*Submission, error) {
	sub, err := scanSubmission(s.db.QueryRowContext(ctx, "SELECT "+submissionColumns+" FROM submissions WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("dlq: submission %s: %w", id, err)
	}
	return sub, nil
}

// ListSubmissions returns submissions, newest first (Submissions.ListSubmissions).
func (s *SQLite) ListSubmissions(ctx context.Context, f SubmissionFilter) ([]*Submission, error) {
	q := "SELECT " + submissionColumns + " FROM submissions WHERE 1 = 1"
	var args []any
	if f.Status != "" {
		q += " AND status = ?"
		args = append(args, f.Status)
	}
	if f.Workflow != "" {
		q += " AND workflow = ?"
		args = append(args, f.Workflow)
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	q += fmt.Sprintf(" ORDER BY created_at DESC, id DESC LIMIT %d", f.Limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("dlq: list submissions: %w", err)
	}
	defer rows.Close()
	var out []*Submission
	for rows.Next() {
		sub, err := scanSubmission(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, sub)
	}
	return out, rows.Err()
}
