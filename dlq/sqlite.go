package dlq

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver
)

// migrations bring the schema from version i to i+1 (PRAGMA user_version).
var migrations = []string{
	`CREATE TABLE dead_letters (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		workflow TEXT NOT NULL,
		params BLOB,
		idempotency_key TEXT NOT NULL,
		request_id TEXT,
		attempts INTEGER NOT NULL DEFAULT 0,
		reason TEXT NOT NULL DEFAULT '',
		first_class TEXT, first_message TEXT,
		last_class TEXT, last_message TEXT,
		execution_id TEXT,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL,
		replays INTEGER NOT NULL DEFAULT 0,
		replayed_at INTEGER
	);
	CREATE INDEX dead_letters_workflow ON dead_letters(workflow, created_at);
	CREATE INDEX dead_letters_key ON dead_letters(idempotency_key);
	CREATE TABLE inflight (
		idempotency_key TEXT PRIMARY KEY,
		workflow TEXT NOT NULL,
		params BLOB,
		request_id TEXT,
		started_at INTEGER NOT NULL
	);
	CREATE TABLE completed (
		idempotency_key TEXT PRIMARY KEY,
		result BLOB,
		completed_at INTEGER NOT NULL
	);
	CREATE INDEX completed_at ON completed(completed_at);`,
	// 2: replay claims, so that two processes on one file never replay
	// the same entry.
	`CREATE TABLE claims (
		entry_id INTEGER PRIMARY KEY,
		owner TEXT NOT NULL,
		until INTEGER NOT NULL
	)`,
	// 3: leases on keys in flight, with fencing tokens, so that several
	// processes share one journal. Records of older versions become
	// expired leases (taken over and reconciled like a dead process's).
	`ALTER TABLE inflight ADD COLUMN owner TEXT NOT NULL DEFAULT '';
	ALTER TABLE inflight ADD COLUMN token INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE inflight ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
	UPDATE inflight SET token = -rowid;
	CREATE INDEX inflight_lease_until ON inflight(lease_until);
	CREATE TABLE lease_tokens (id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER)`,
	// 4: durable submission (the outbox): invocations stored for
	// delivery by workers, claimed under a lease.
	`CREATE TABLE submissions (
		id TEXT PRIMARY KEY,
		workflow TEXT NOT NULL,
		params BLOB,
		path_params BLOB,
		idempotency_key TEXT NOT NULL UNIQUE,
		status TEXT NOT NULL,
		result BLOB,
		error_class TEXT NOT NULL DEFAULT '',
		error_message TEXT NOT NULL DEFAULT '',
		dead_letter INTEGER,
		deliveries INTEGER NOT NULL DEFAULT 0,
		owner TEXT NOT NULL DEFAULT '',
		lease_until INTEGER NOT NULL DEFAULT 0,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL
	);
	CREATE INDEX submissions_due ON submissions(status, created_at);
	CREATE INDEX submissions_created ON submissions(created_at)`,
	// 5: path parameters of invocations in flight and of dead letters,
	// so that a rescue and a replay of a :name webhook can send them.
	`ALTER TABLE inflight ADD COLUMN path_params BLOB;
	ALTER TABLE dead_letters ADD COLUMN path_params BLOB`,
}

// Options configure a SQLite store.
type Options struct {
	// Retention is how long completed keys are remembered and replayed
	// entries kept (default 7 days).
	Retention time.Duration
	// SyncNormal trades durability on power loss for speed (WAL with
	// synchronous=NORMAL); a process crash loses nothing either way. The
	// default is synchronous=FULL.
	SyncNormal bool
}

// DefaultRetention is how long completed keys are remembered.
const DefaultRetention = 7 * 24 * time.Hour

// SQLite is a Store and Journal in an SQLite file. Safe for concurrent
// use; other processes may read the file at the same time.
type SQLite struct {
	db        *sql.DB
	path      string
	retention time.Duration
	// Recovered is the number of invocations found in flight at Open
	// under an expired lease: their process ended mid-call. A manager
	// takes them over, reconciles them with n8n and only then sends them
	// again (invoker.Manager.Rescue).
	Recovered int
}

// DefaultPath returns the default store path:
// $XDG_STATE_HOME/n8n-invoker/dlq.db, else ~/.local/state/n8n-invoker/dlq.db.
func DefaultPath() string {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "n8n-invoker-dlq.db"
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "n8n-invoker", "dlq.db")
}

// Open opens (creating if needed) the store at path, migrates its schema,
// checks that it is intact and writable, and counts the invocations a
// crash left in flight (Recovered).
func Open(ctx context.Context, path string, o Options) (*SQLite, error) {
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("dlq: %s: %w", path, err)
	}
	sync := "FULL"
	if o.SyncNormal {
		sync = "NORMAL"
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+sync+")")
	q.Add("_pragma", "foreign_keys(ON)")
	// Write transactions take the lock at BEGIN: two processes that read
	// a lease and then write it would otherwise deadlock on the upgrade.
	q.Add("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("dlq: %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer; other processes read through WAL
	s := &SQLite{db: db, path: path, retention: o.Retention}
	if err := s.init(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("dlq: %s: %w", path, err)
	}
	return s, nil
}

func (s *SQLite) init(ctx context.Context) error {
	var check string
	if err := s.db.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&check); err != nil {
		return fmt.Errorf("not a usable SQLite database: %w", err)
	}
	if check != "ok" {
		return fmt.Errorf("database is corrupt: %s", check)
	}
	var version int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return err
	}
	if version > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this n8n-invoker knows (%d)", version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		if err := s.tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
				return fmt.Errorf("migration %d: %w", v+1, err)
			}
			_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1))
			return err
		}); err != nil {
			return err
		}
	}
	// Writable? Count what a crash left in flight and purge old records
	// in one go.
	return s.tx(ctx, func(tx *sql.Tx) error {
		now := time.Now()
		if _, err := tx.ExecContext(ctx, "DELETE FROM lease_tokens WHERE at < ?", now.Add(-time.Hour).UnixNano()); err != nil {
			return fmt.Errorf("cannot write (read-only or locked?): %w", err)
		}
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM inflight WHERE lease_until < ?", now.UnixNano()).Scan(&s.Recovered); err != nil {
			return err
		}
		cut := now.Add(-s.retention).UnixNano()
		_, err := tx.ExecContext(ctx, "DELETE FROM completed WHERE completed_at < ?", cut)
		return err
	})
}

func (s *SQLite) tx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Path returns the file's path.
func (s *SQLite) Path() string { return s.path }

// Close closes the database.
func (s *SQLite) Close() error { return s.db.Close() }

// Put stores an entry and returns its id.
func (s *SQLite) Put(ctx context.Context, e *Entry) (int64, error) {
	var id int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		id, err = insertEntry(ctx, tx, e)
		return err
	})
	return id, err
}

func insertEntry(ctx context.Context, tx *sql.Tx, e *Entry) (int64, error) {
	now := time.Now()
	if e.CreatedAt.IsZero() {
		e.CreatedAt = now
	}
	e.UpdatedAt = now
	res, err := tx.ExecContext(ctx, `INSERT INTO dead_letters
		(workflow, params, idempotency_key, request_id, attempts, reason, first_class, first_message,
		 last_class, last_message, execution_id, created_at, updated_at, path_params)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Workflow, []byte(e.Params), e.IdempotencyKey, e.RequestID, e.Attempts, e.Reason,
		e.FirstError.Class, e.FirstError.Message, e.LastError.Class, e.LastError.Message, e.ExecutionID,
		e.CreatedAt.UnixNano(), e.UpdatedAt.UnixNano(), EncodePathParams(e.PathParams))
	if err != nil {
		return 0, err
	}
	e.ID, err = res.LastInsertId()
	return e.ID, err
}

const entryColumns = `id, workflow, params, idempotency_key, request_id, attempts, reason, first_class, first_message,
	last_class, last_message, execution_id, created_at, updated_at, replays, replayed_at, path_params`

func scanEntry(row interface{ Scan(...any) error }) (*Entry, error) {
	var (
		e                Entry
		params           []byte
		reqID, execID    sql.NullString
		fc, fm, lc, lm   sql.NullString
		created, updated int64
		replayedAt       sql.NullInt64
		pathParams       []byte
	)
	if err := row.Scan(&e.ID, &e.Workflow, &params, &e.IdempotencyKey, &reqID, &e.Attempts, &e.Reason,
		&fc, &fm, &lc, &lm, &execID, &created, &updated, &e.Replays, &replayedAt, &pathParams); err != nil {
		return nil, err
	}
	var err error
	if e.PathParams, err = DecodePathParams(pathParams); err != nil {
		return nil, err
	}
	if len(params) > 0 {
		e.Params = json.RawMessage(params)
	}
	e.RequestID, e.ExecutionID = reqID.String, execID.String
	e.FirstError, e.LastError = ErrorInfo{fc.String, fm.String}, ErrorInfo{lc.String, lm.String}
	e.CreatedAt, e.UpdatedAt = time.Unix(0, created), time.Unix(0, updated)
	if replayedAt.Valid {
		t := time.Unix(0, replayedAt.Int64)
		e.ReplayedAt = &t
	}
	return &e, nil
}

// Get returns the entry with id, or ErrNotFound.
func (s *SQLite) Get(ctx context.Context, id int64) (*Entry, error) {
	e, err := scanEntry(s.db.QueryRowContext(ctx, "SELECT "+entryColumns+" FROM dead_letters WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return e, err
}

// List returns the entries f selects, oldest first.
func (s *SQLite) List(ctx context.Context, f Filter) ([]*Entry, error) {
	var where []string
	var args []any
	if len(f.IDs) > 0 {
		ph := strings.TrimSuffix(strings.Repeat("?,", len(f.IDs)), ",")
		where = append(where, "id IN ("+ph+")")
		for _, id := range f.IDs {
			args = append(args, id)
		}
	}
	add := func(cond string, v any) { where = append(where, cond); args = append(args, v) }
	if f.Workflow != "" {
		add("workflow = ?", f.Workflow)
	}
	if f.Key != "" {
		add("idempotency_key = ?", f.Key)
	}
	if f.Class != "" {
		add("last_class = ?", f.Class)
	}
	if f.Reason != "" {
		add("reason = ?", f.Reason)
	}
	if !f.Since.IsZero() {
		add("created_at >= ?", f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		add("created_at < ?", f.Until.UnixNano())
	}
	q := "SELECT " + entryColumns + " FROM dead_letters"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Count returns the number of entries (the queue's depth).
func (s *SQLite) Count(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM dead_letters").Scan(&n)
	return n, err
}

// Delete removes an entry.
func (s *SQLite) Delete(ctx context.Context, id int64) error {
	res, err := s.db.ExecContext(ctx, "DELETE FROM dead_letters WHERE id = ?", id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// Claim takes entry id for owner until ttl passes: it reports false when
// another owner holds a claim that has not expired. A replay claims each
// entry first, so two processes on one file never replay the same entry.
func (s *SQLite) Claim(ctx context.Context, id int64, owner string, ttl time.Duration) (bool, error) {
	now := time.Now()
	res, err := s.db.ExecContext(ctx, `INSERT INTO claims (entry_id, owner, until) VALUES (?, ?, ?)
		ON CONFLICT(entry_id) DO UPDATE SET owner = excluded.owner, until = excluded.until
		WHERE claims.until < ? OR claims.owner = excluded.owner`, id, owner, now.Add(ttl).UnixNano(), now.UnixNano())
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// Release gives a claim back.
func (s *SQLite) Release(ctx context.Context, id int64, owner string) error {
	_, err := s.db.ExecContext(ctx, "DELETE FROM claims WHERE entry_id = ? AND owner = ?", id, owner)
	return err
}

// MarkReplayed records a failed replay.
func (s *SQLite) MarkReplayed(ctx context.Context, id int64, attempts int, last ErrorInfo) error {
	now := time.Now().UnixNano()
	res, err := s.db.ExecContext(ctx, `UPDATE dead_letters SET attempts = attempts + ?, last_class = ?, last_message = ?,
		replays = replays + 1, replayed_at = ?, updated_at = ? WHERE id = ?`, attempts, last.Class, last.Message, now, now, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// newToken returns a fencing token larger than every token before.
func newToken(ctx context.Context, tx *sql.Tx, now time.Time) (int64, error) {
	res, err := tx.ExecContext(ctx, "INSERT INTO lease_tokens (at) VALUES (?)", now.UnixNano())
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// Begin writes an invocation ahead, leased to owner (Journal.Begin).
func (s *SQLite) Begin(ctx context.Context, in *Inflight, owner string, ttl time.Duration) (Lease, bool, error) {
	var l Lease
	var taken bool
	err := s.tx(ctx, func(tx *sql.Tx) error {
		now := time.Now()
		var cur Lease
		var until int64
		err := tx.QueryRowContext(ctx, "SELECT owner, token, lease_until FROM inflight WHERE idempotency_key = ?",
			in.IdempotencyKey).Scan(&cur.Owner, &cur.Token, &until)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case until >= now.UnixNano() && cur.Owner != owner && (in.Replaces == "" || cur.Owner != in.Replaces):
			return Held(in.IdempotencyKey, cur.Owner, time.Unix(0, until))
		default:
			taken = true
		}
		token, err := newToken(ctx, tx, now)
		if err != nil {
			return err
		}
		l = Lease{Key: in.IdempotencyKey, Owner: owner, Token: token, Until: now.Add(ttl)}
		_, err = tx.ExecContext(ctx, `INSERT INTO inflight (idempotency_key, workflow, params, request_id, started_at, owner, token, lease_until, path_params)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(idempotency_key) DO UPDATE SET workflow = excluded.workflow, params = excluded.params,
				request_id = excluded.request_id, owner = excluded.owner, token = excluded.token, lease_until = excluded.lease_until,
				path_params = excluded.path_params`,
			in.IdempotencyKey, in.Workflow, []byte(in.Params), in.RequestID, now.UnixNano(), owner, token, l.Until.UnixNano(), EncodePathParams(in.PathParams))
		return err
	})
	return l, taken, err
}

// Renew extends owner's leases on keys (Journal.Renew).
func (s *SQLite) Renew(ctx context.Context, ls []Lease, ttl time.Duration) ([]string, error) {
	if len(ls) == 0 {
		return nil, nil
	}
	held := map[string]bool{}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		until := time.Now().Add(ttl).UnixNano()
		for chunk := range slices.Chunk(ls, 400) {
			args := []any{until}
			for _, l := range chunk {
				args = append(args, l.Key, l.Token)
			}
			rows, err := tx.QueryContext(ctx, `UPDATE inflight SET lease_until = ? WHERE (idempotency_key, token) IN (VALUES (?, ?)`+
				strings.Repeat(", (?, ?)", len(chunk)-1)+`) RETURNING idempotency_key`, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var k string
				if err := rows.Scan(&k); err != nil {
					rows.Close()
					return err
				}
				held[k] = true
			}
			if err := rows.Close(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var lost []string
	for _, l := range ls {
		if !held[l.Key] {
			lost = append(lost, l.Key)
		}
	}
	return lost, nil
}

// release deletes the key's in-flight record under l: ErrLeaseLost when
// the record has another token (or is gone).
func release(ctx context.Context, tx *sql.Tx, l Lease) error {
	if l.Token == 0 {
		return nil
	}
	res, err := tx.ExecContext(ctx, "DELETE FROM inflight WHERE idempotency_key = ? AND token = ?", l.Key, l.Token)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrLeaseLost
	}
	return nil
}

// Complete records a success under l (Journal.Complete).
func (s *SQLite) Complete(ctx context.Context, l Lease, result json.RawMessage) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := release(ctx, tx, l); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO completed (idempotency_key, result, completed_at) VALUES (?, ?, ?)
			ON CONFLICT(idempotency_key) DO UPDATE SET result = excluded.result, completed_at = excluded.completed_at`,
			l.Key, []byte(result), time.Now().UnixNano())
		return err
	})
}

// End forgets an in-flight invocation under l, storing e as a dead letter
// when given (Journal.End).
func (s *SQLite) End(ctx context.Context, l Lease, e *Entry) (int64, error) {
	var id int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := release(ctx, tx, l); err != nil {
			return err
		}
		if e == nil {
			return nil
		}
		var err error
		id, err = insertEntry(ctx, tx, e)
		return err
	})
	return id, err
}

// Inflight lists invocations in flight (Journal.Inflight).
func (s *SQLite) Inflight(ctx context.Context, f InflightFilter) ([]*Inflight, error) {
	q := "SELECT idempotency_key, workflow, params, request_id, started_at, owner, token, lease_until, path_params FROM inflight WHERE 1=1"
	var args []any
	if f.Key != "" {
		q += " AND idempotency_key = ?"
		args = append(args, f.Key)
	}
	if !f.ExpiredAt.IsZero() {
		q += " AND lease_until < ?"
		args = append(args, f.ExpiredAt.UnixNano())
	}
	q += " ORDER BY started_at"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Inflight
	for rows.Next() {
		var in Inflight
		var params, pathParams []byte
		var reqID sql.NullString
		var started, until int64
		if err := rows.Scan(&in.IdempotencyKey, &in.Workflow, &params, &reqID, &started, &in.Lease.Owner, &in.Lease.Token, &until, &pathParams); err != nil {
			return nil, err
		}
		if in.PathParams, err = DecodePathParams(pathParams); err != nil {
			return nil, err
		}
		in.Params, in.RequestID = params, reqID.String
		in.StartedAt, in.Lease.Until, in.Lease.Key = time.Unix(0, started), time.Unix(0, until), in.IdempotencyKey
		out = append(out, &in)
	}
	return out, rows.Err()
}

// Completed returns the recorded result of a key that succeeded within
// the retention.
func (s *SQLite) Completed(ctx context.Context, key string) (json.RawMessage, bool, error) {
	var result []byte
	err := s.db.QueryRowContext(ctx, "SELECT result FROM completed WHERE idempotency_key = ? AND completed_at >= ?",
		key, time.Now().Add(-s.retention).UnixNano()).Scan(&result)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return json.RawMessage(result), true, nil
}

// Purge deletes the entries f selects and returns how many.
func (s *SQLite) Purge(ctx context.Context, f Filter) (int, error) {
	entries, err := s.List(ctx, f)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if err := s.Delete(ctx, e.ID); err == nil {
			n++
		}
	}
	return n, nil
}
