// Package postgres is the PostgreSQL store of n8n-invoker: the journal,
// the idempotency records, the dead letters and the replay claims in one
// PostgreSQL database that several invoker processes share (fleet mode).
// It keeps the contract of dlq.Backend (the dlq/dlqtest suite runs
// against it unchanged) with leases, fencing tokens and lease times on
// the database's clock, so that processes with skewed clocks agree.
//
// Importing the package registers the backend "postgres" for the
// configuration's store section:
//
//	import _ "github.com/n8n-invoker/n8n-invoker/contrib/postgres"
//
//	store: {backend: postgres, dsn: "${N8N_INVOKER_PG_DSN}"}
//
// It lives in its own module, so that users of the embedded SQLite store
// do not download pgx.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// Backend is the name this store registers under.
const Backend = "postgres"

// DefaultSchema is the schema the store's tables live in.
const DefaultSchema = "n8n_invoker"

func init() {
	if err := dlq.Register(Backend, func(ctx context.Context, o dlq.StoreOptions) (dlq.Backend, error) {
		return Open(ctx, o.DSN, Options{Schema: o.Schema, Retention: o.Retention})
	}); err != nil {
		panic(err)
	}
}

// Options configure the store.
type Options struct {
	// Schema holds the tables (default DefaultSchema); created if needed.
	Schema string
	// Retention is how long completed keys are remembered (default
	// dlq.DefaultRetention).
	Retention time.Duration
	// MaxConns bounds the connection pool (default pgxpool's: the
	// larger of 4 and the number of CPUs).
	MaxConns int32
}

// Store is a dlq.Backend and dlq.Claimer in PostgreSQL. Safe for
// concurrent use by any number of goroutines and processes.
type Store struct {
	pool      *pgxpool.Pool
	schema    string
	retention time.Duration
	q         queries
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Open connects to the database dsn names, creates the schema or migrates
// it to this version (under an advisory lock, so that replicas starting
// at once migrate it once), and checks that it can write. Errors never
// carry the DSN's password.
func Open(ctx context.Context, dsn secret.Secret, o Options) (*Store, error) {
	if dsn.IsZero() {
		return nil, errors.New("postgres store: store.dsn is empty")
	}
	if o.Schema == "" {
		o.Schema = DefaultSchema
	}
	if !schemaName.MatchString(o.Schema) {
		return nil, fmt.Errorf("postgres store: schema %q is not a plain lower-case identifier", o.Schema)
	}
	if o.Retention <= 0 {
		o.Retention = dlq.DefaultRetention
	}
	cfg, err := pgxpool.ParseConfig(dsn.Reveal())
	if err != nil {
		return nil, errors.New("postgres store: store.dsn is not a valid connection string (its text is not shown: it may hold a password)")
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, redact(err, cfg.ConnConfig.Password)
	}
	s := &Store{pool: pool, schema: o.Schema, retention: o.Retention, q: newQueries(o.Schema)}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, redact(err, cfg.ConnConfig.Password)
	}
	return s, nil
}

// redact wraps a connection error, removing the password if a driver
// ever echoes it.
func redact(err error, password string) error {
	msg := err.Error()
	if password != "" {
		msg = strings.ReplaceAll(msg, password, "REDACTED")
	}
	return fmt.Errorf("postgres store: %s", msg)
}

// migrations bring the schema from version i to i+1.
var migrations = []string{
	`CREATE TABLE {s}.dead_letters (
		id bigserial PRIMARY KEY,
		workflow text NOT NULL,
		params bytea,
		idempotency_key text NOT NULL,
		request_id text NOT NULL DEFAULT '',
		attempts integer NOT NULL DEFAULT 0,
		reason text NOT NULL DEFAULT '',
		first_class text NOT NULL DEFAULT '', first_message text NOT NULL DEFAULT '',
		last_class text NOT NULL DEFAULT '', last_message text NOT NULL DEFAULT '',
		execution_id text NOT NULL DEFAULT '',
		created_at timestamptz NOT NULL,
		updated_at timestamptz NOT NULL,
		replays integer NOT NULL DEFAULT 0,
		replayed_at timestamptz
	);
	CREATE INDEX dead_letters_workflow ON {s}.dead_letters (workflow, created_at);
	CREATE INDEX dead_letters_key ON {s}.dead_letters (idempotency_key);
	CREATE TABLE {s}.inflight (
		idempotency_key text PRIMARY KEY,
		workflow text NOT NULL,
		params bytea,
		request_id text NOT NULL DEFAULT '',
		started_at timestamptz NOT NULL,
		owner text NOT NULL,
		token bigint NOT NULL,
		lease_until timestamptz NOT NULL
	);
	CREATE INDEX inflight_lease_until ON {s}.inflight (lease_until);
	CREATE TABLE {s}.completed (
		idempotency_key text PRIMARY KEY,
		result bytea,
		completed_at timestamptz NOT NULL
	);
	CREATE INDEX completed_at ON {s}.completed (completed_at);
	CREATE TABLE {s}.claims (
		entry_id bigint PRIMARY KEY,
		owner text NOT NULL,
		until timestamptz NOT NULL
	);
	CREATE SEQUENCE {s}.lease_tokens;`,
	// 2: durable submissions (the outbox package): an invocation's
	// status and result, by id; River's jobs only carry the id.
	`CREATE TABLE {s}.invocations (
		id text PRIMARY KEY,
		workflow text NOT NULL,
		params bytea,
		path_params bytea,
		idempotency_key text NOT NULL UNIQUE,
		status text NOT NULL,
		result bytea,
		error text NOT NULL DEFAULT '',
		class text NOT NULL DEFAULT '',
		dead_letter bigint,
		created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
		updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
	);
	CREATE INDEX invocations_status ON {s}.invocations (status, created_at);`,
	// 3: how often each was delivered; its workflow for filters.
	`ALTER TABLE {s}.invocations ADD COLUMN deliveries integer NOT NULL DEFAULT 0;
	CREATE INDEX invocations_workflow ON {s}.invocations (workflow, created_at);`,
	// 4: path parameters of invocations in flight and of dead letters,
	// so that a rescue and a replay of a :name webhook can send them.
	`ALTER TABLE {s}.inflight ADD COLUMN path_params jsonb;
	ALTER TABLE {s}.dead_letters ADD COLUMN path_params jsonb;`,
}

func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	// One process migrates; the others wait here, then find it done.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtext($1))", "n8n-invoker migrate "+s.schema); err != nil {
		return err
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtext($1))", "n8n-invoker migrate "+s.schema)
	}()
	if _, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+s.schema+`;
		CREATE TABLE IF NOT EXISTS `+s.schema+`.schema_version (version integer NOT NULL);`); err != nil {
		return fmt.Errorf("cannot create schema %s (privileges?): %w", s.schema, err)
	}
	var version int
	err = conn.QueryRow(ctx, "SELECT version FROM "+s.schema+".schema_version").Scan(&version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := conn.Exec(ctx, "INSERT INTO "+s.schema+".schema_version VALUES (0)"); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	if version > len(migrations) {
		return fmt.Errorf("schema %s is at version %d, newer than this n8n-invoker knows (%d)", s.schema, version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, strings.ReplaceAll(migrations[v], "{s}", s.schema)); err != nil {
				return fmt.Errorf("migration %d: %w", v+1, err)
			}
			_, err := tx.Exec(ctx, "UPDATE "+s.schema+".schema_version SET version = $1", v+1)
			return err
		})
		if err != nil {
			return err
		}
	}
	_, err = conn.Exec(ctx, "DELETE FROM "+s.schema+".completed WHERE completed_at < now() - $1::interval", s.retention)
	return err
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Pool returns the connection pool, for a caller's own transactions.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Schema returns the schema the tables live in.
func (s *Store) Schema() string { return s.schema }

type queries struct {
	put, get, del, purge, count, markReplayed, claim, unclaim            string
	insertInflight, lockInflight, takeInflight, renew, release, complete string
	completed, inflight, list                                            string
}

func newQueries(schema string) queries {
	r := strings.NewReplacer("{s}", schema)
	cols := "id, workflow, params, idempotency_key, request_id, attempts, reason, first_class, first_message, last_class, last_message, execution_id, created_at, updated_at, replays, replayed_at, path_params"
	return queries{
		put: r.Replace(`INSERT INTO {s}.dead_letters (workflow, params, idempotency_key, request_id, attempts, reason,
			first_class, first_message, last_class, last_message, execution_id, created_at, updated_at, path_params)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, clock_timestamp(), clock_timestamp(), $12) RETURNING id`),
		get:   r.Replace("SELECT " + cols + " FROM {s}.dead_letters WHERE id = $1"),
		list:  r.Replace("SELECT " + cols + " FROM {s}.dead_letters WHERE true"),
		del:   r.Replace("DELETE FROM {s}.dead_letters WHERE id = $1"),
		purge: r.Replace("DELETE FROM {s}.dead_letters WHERE id IN (SELECT id FROM {s}.dead_letters WHERE true"),
		count: r.Replace("SELECT count(*) FROM {s}.dead_letters"),
		markReplayed: r.Replace(`UPDATE {s}.dead_letters SET attempts = attempts + $2, last_class = $3, last_message = $4,
			replays = replays + 1, replayed_at = clock_timestamp(), updated_at = clock_timestamp() WHERE id = $1`),
		claim: r.Replace(`INSERT INTO {s}.claims AS c (entry_id, owner, until) VALUES ($1, $2, clock_timestamp() + $3::interval)
			ON CONFLICT (entry_id) DO UPDATE SET owner = excluded.owner, until = excluded.until
			WHERE c.until < clock_timestamp() OR c.owner = excluded.owner`),
		unclaim: r.Replace("DELETE FROM {s}.claims WHERE entry_id = $1 AND owner = $2"),
		insertInflight: r.Replace(`INSERT INTO {s}.inflight (idempotency_key, workflow, params, request_id, started_at, owner, token, lease_until, path_params)
			VALUES ($1, $2, $3, $4, clock_timestamp(), $5, nextval('{s}.lease_tokens'), clock_timestamp() + $6::interval, $7)
			ON CONFLICT (idempotency_key) DO NOTHING RETURNING token, lease_until`),
		lockInflight: r.Replace(`SELECT owner, lease_until, lease_until < clock_timestamp() FROM {s}.inflight
			WHERE idempotency_key = $1 FOR UPDATE`),
		takeInflight: r.Replace(`UPDATE {s}.inflight SET workflow = $2, params = $3, request_id = $4, owner = $5,
			token = nextval('{s}.lease_tokens'), lease_until = clock_timestamp() + $6::interval, path_params = $7
			WHERE idempotency_key = $1 RETURNING token, lease_until`),
		renew: r.Replace(`UPDATE {s}.inflight i SET lease_until = clock_timestamp() + $3::interval
			FROM unnest($1::text[], $2::bigint[]) AS l(k, t) WHERE i.idempotency_key = l.k AND i.token = l.t RETURNING i.idempotency_key`),
		release: r.Replace("DELETE FROM {s}.inflight WHERE idempotency_key = $1 AND token = $2"),
		complete: r.Replace(`INSERT INTO {s}.completed (idempotency_key, result, completed_at) VALUES ($1, $2, clock_timestamp())
			ON CONFLICT (idempotency_key) DO UPDATE SET result = excluded.result, completed_at = excluded.completed_at`),
		completed: r.Replace("SELECT result FROM {s}.completed WHERE idempotency_key = $1 AND completed_at >= clock_timestamp() - $2::interval"),
		inflight:  r.Replace("SELECT idempotency_key, workflow, params, request_id, started_at, owner, token, lease_until, path_params FROM {s}.inflight WHERE true"),
	}
}

func insertEntry(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, sql string, e *dlq.Entry) (int64, error) {
	var id int64
	err := q.QueryRow(ctx, sql, e.Workflow, []byte(e.Params), e.IdempotencyKey, e.RequestID, e.Attempts, e.Reason,
		e.FirstError.Class, e.FirstError.Message, e.LastError.Class, e.LastError.Message, e.ExecutionID, dlq.EncodePathParams(e.PathParams)).Scan(&id)
	return id, err
}

// Put stores an entry and returns its id.
func (s *Store) Put(ctx context.Context, e *dlq.Entry) (int64, error) {
	return insertEntry(ctx, s.pool, s.q.put, e)
}

func scanEntry(row pgx.Row) (*dlq.Entry, error) {
	var e dlq.Entry
	var params, pathParams []byte
	err := row.Scan(&e.ID, &e.Workflow, &params, &e.IdempotencyKey, &e.RequestID, &e.Attempts, &e.Reason,
		&e.FirstError.Class, &e.FirstError.Message, &e.LastError.Class, &e.LastError.Message, &e.ExecutionID,
		&e.CreatedAt, &e.UpdatedAt, &e.Replays, &e.ReplayedAt, &pathParams)
	if err != nil {
		return nil, err
	}
	if e.PathParams, err = dlq.DecodePathParams(pathParams); err != nil {
		return nil, err
	}
	if params != nil {
		e.Params = json.RawMessage(params)
	}
	return &e, nil
}

// Get returns entry id, or dlq.ErrNotFound.
func (s *Store) Get(ctx context.Context, id int64) (*dlq.Entry, error) {
	e, err := scanEntry(s.pool.QueryRow(ctx, s.q.get, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, dlq.ErrNotFound
	}
	return e, err
}

// List returns the entries f selects, oldest first.
func (s *Store) List(ctx context.Context, f dlq.Filter) ([]*dlq.Entry, error) {
	cond, args := where(f)
	q := s.q.list + cond + " ORDER BY id"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*dlq.Entry, error) { return scanEntry(r) })
}

// where returns the conditions f sets (" AND ..." each) and their
// arguments.
func where(f dlq.Filter) (string, []any) {
	q := ""
	var args []any
	arg := func(cond string, v any) {
		args = append(args, v)
		q += fmt.Sprintf(" AND "+cond, len(args))
	}
	if len(f.IDs) > 0 {
		arg("id = ANY($%d)", f.IDs)
	}
	if f.Workflow != "" {
		arg("workflow = $%d", f.Workflow)
	}
	if f.Key != "" {
		arg("idempotency_key = $%d", f.Key)
	}
	if f.Class != "" {
		arg("last_class = $%d", f.Class)
	}
	if f.Reason != "" {
		arg("reason = $%d", f.Reason)
	}
	if !f.Since.IsZero() {
		arg("created_at >= $%d", f.Since)
	}
	if !f.Until.IsZero() {
		arg("created_at < $%d", f.Until)
	}
	return q, args
}

// Count returns the number of entries.
func (s *Store) Count(ctx context.Context) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, s.q.count).Scan(&n)
	return n, err
}

// Delete removes entry id.
func (s *Store) Delete(ctx context.Context, id int64) error {
	tag, err := s.pool.Exec(ctx, s.q.del, id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return dlq.ErrNotFound
	}
	return nil
}

// Purge deletes the entries f selects in one statement and returns how
// many.
func (s *Store) Purge(ctx context.Context, f dlq.Filter) (int, error) {
	cond, args := where(f)
	q := s.q.purge + cond + " ORDER BY id"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	tag, err := s.pool.Exec(ctx, q+")", args...)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

// MarkReplayed records a failed replay.
func (s *Store) MarkReplayed(ctx context.Context, id int64, attempts int, last dlq.ErrorInfo) error {
	tag, err := s.pool.Exec(ctx, s.q.markReplayed, id, attempts, last.Class, last.Message)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return dlq.ErrNotFound
	}
	return nil
}

// Claim takes entry id for owner until ttl passes (dlq.Claimer): of
// several replays claiming one entry at once, one gets it.
func (s *Store) Claim(ctx context.Context, id int64, owner string, ttl time.Duration) (bool, error) {
	tag, err := s.pool.Exec(ctx, s.q.claim, id, owner, ttl)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// Release gives a claim back.
func (s *Store) Release(ctx context.Context, id int64, owner string) error {
	_, err := s.pool.Exec(ctx, s.q.unclaim, id, owner)
	return err
}

// Begin writes an invocation ahead, leased to owner (dlq.Journal.Begin).
func (s *Store) Begin(ctx context.Context, in *dlq.Inflight, owner string, ttl time.Duration) (dlq.Lease, bool, error) {
	l := dlq.Lease{Key: in.IdempotencyKey, Owner: owner}
	taken := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for {
			err := tx.QueryRow(ctx, s.q.insertInflight, in.IdempotencyKey, in.Workflow, []byte(in.Params), in.RequestID, owner, ttl, dlq.EncodePathParams(in.PathParams)).
				Scan(&l.Token, &l.Until)
			if err == nil {
				return nil
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			var cur string
			var until time.Time
			var expired bool
			err = tx.QueryRow(ctx, s.q.lockInflight, in.IdempotencyKey).Scan(&cur, &until, &expired)
			if errors.Is(err, pgx.ErrNoRows) {
				continue // ended between the two statements: insert again
			}
			if err != nil {
				return err
			}
			if !expired && cur != owner && (in.Replaces == "" || cur != in.Replaces) {
				return dlq.Held(in.IdempotencyKey, cur, until)
			}
			taken = true
			return tx.QueryRow(ctx, s.q.takeInflight, in.IdempotencyKey, in.Workflow, []byte(in.Params), in.RequestID, owner, ttl, dlq.EncodePathParams(in.PathParams)).
				Scan(&l.Token, &l.Until)
		}
	})
	if err != nil {
		return dlq.Lease{}, false, err
	}
	return l, taken, nil
}

// Renew extends owner's leases on keys (dlq.Journal.Renew).
func (s *Store) Renew(ctx context.Context, ls []dlq.Lease, ttl time.Duration) ([]string, error) {
	if len(ls) == 0 {
		return nil, nil
	}
	keys, tokens := make([]string, len(ls)), make([]int64, len(ls))
	for i, l := range ls {
		keys[i], tokens[i] = l.Key, l.Token
	}
	rows, err := s.pool.Query(ctx, s.q.renew, keys, tokens, ttl)
	if err != nil {
		return nil, err
	}
	held, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	have := make(map[string]bool, len(held))
	for _, k := range held {
		have[k] = true
	}
	var lost []string
	for _, k := range keys {
		if !have[k] {
			lost = append(lost, k)
		}
	}
	return lost, nil
}

func (s *Store) release(ctx context.Context, tx pgx.Tx, l dlq.Lease) error {
	if l.Token == 0 {
		return nil
	}
	tag, err := tx.Exec(ctx, s.q.release, l.Key, l.Token)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return dlq.ErrLeaseLost
	}
	return nil
}

// Complete records a success under l (dlq.Journal.Complete).
func (s *Store) Complete(ctx context.Context, l dlq.Lease, result json.RawMessage) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.release(ctx, tx, l); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, s.q.complete, l.Key, []byte(result))
		return err
	})
}

// End forgets an in-flight invocation under l, storing e as a dead letter
// when given (dlq.Journal.End).
func (s *Store) End(ctx context.Context, l dlq.Lease, e *dlq.Entry) (int64, error) {
	var id int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.release(ctx, tx, l); err != nil {
			return err
		}
		if e == nil {
			return nil
		}
		var err error
		id, err = insertEntry(ctx, tx, s.q.put, e)
		return err
	})
	return id, err
}

// Completed returns the recorded result of a key that succeeded within
// the retention.
func (s *Store) Completed(ctx context.Context, key string) (json.RawMessage, bool, error) {
	var result []byte
	err := s.pool.QueryRow(ctx, s.q.completed, key, s.retention).Scan(&result)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return json.RawMessage(result), true, nil
}

// Inflight lists invocations in flight (dlq.Journal.Inflight).
func (s *Store) Inflight(ctx context.Context, f dlq.InflightFilter) ([]*dlq.Inflight, error) {
	q := s.q.inflight
	var args []any
	if f.Key != "" {
		args = append(args, f.Key)
		q += fmt.Sprintf(" AND idempotency_key = $%d", len(args))
	}
	if !f.ExpiredAt.IsZero() {
		args = append(args, f.ExpiredAt)
		q += fmt.Sprintf(" AND lease_until < $%d", len(args))
	}
	q += " ORDER BY started_at"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanInflight)
}

func scanInflight(row pgx.CollectableRow) (*dlq.Inflight, error) {
	var in dlq.Inflight
	var params, pathParams []byte
	if err := row.Scan(&in.IdempotencyKey, &in.Workflow, &params, &in.RequestID, &in.StartedAt,
		&in.Lease.Owner, &in.Lease.Token, &in.Lease.Until, &pathParams); err != nil {
		return nil, err
	}
	var err error
	if in.PathParams, err = dlq.DecodePathParams(pathParams); err != nil {
		return nil, err
	}
	if params != nil {
		in.Params = json.RawMessage(params)
	}
	in.Lease.Key = in.IdempotencyKey
	return &in, nil
}

// IsUnavailable reports whether err says the database cannot be reached
// (as opposed to a statement it refused).
func IsUnavailable(err error) bool {
	var pe *pgconn.PgError
	return err != nil && !errors.As(err, &pe)
}
