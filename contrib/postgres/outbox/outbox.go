// Package outbox is durable submission on the PostgreSQL store (the
// transactional outbox): Enqueue returns once an invocation is stored,
// EnqueueTx stores it in the caller's own transaction, so that a
// service's business write and its n8n trigger commit together or not at
// all, and workers deliver stored invocations through the manager's whole
// pipeline (journal and lease, reconcile, retries, breaker pause,
// dead-lettering).
//
// The queue is River (riverpgxv5) in the store's schema. One source of
// truth: the store's invocations table holds each invocation's status
// and result, and the journal and dead letters stay the store's; a River
// job carries only the invocation's id. Each job is one delivery (the
// pipeline does the retrying: a failed call ends the job, recorded as
// failed or dead-lettered); River runs a job again only when its worker
// died or shut down mid-call, and the journal's lease and reconcile decide
// then whether n8n already ran it.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/contrib/postgres"
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	ob "github.com/n8n-invoker/n8n-invoker/outbox"
)

// Statuses are the outbox package's (this is its engine on PostgreSQL);
// so are its types: Options, Invocation, Filter and Conflict.
const (
	Queued       = ob.Queued
	Running      = ob.Running
	Succeeded    = ob.Succeeded
	Failed       = ob.Failed
	DeadLettered = ob.DeadLettered
)

// Backend is the store backend this engine serves (outbox.Open picks it).
const Backend = postgres.Backend

// ErrNotFound is returned for an invocation id the store does not have.
var ErrNotFound = ob.ErrNotFound

func init() {
	if err := ob.Register(Backend, func(ctx context.Context, m *invoker.Manager, o ob.Options) (ob.Queue, error) {
		store, ok := m.DLQ().(*postgres.Store)
		if !ok {
			return nil, fmt.Errorf("outbox: the manager's store is %T, not the PostgreSQL store", m.DLQ())
		}
		return New(ctx, store, m, o)
	}); err != nil {
		panic(err)
	}
}

// Outbox stores invocations and delivers them.
type Outbox struct {
	store   *postgres.Store
	m       *invoker.Manager
	client  *river.Client[pgx.Tx]
	queue   string
	table   string
	workers bool
}

var (
	_ ob.Queue     = (*Outbox)(nil)
	_ ob.Submitter = (*Outbox)(nil)
)

type deliverArgs struct {
	ID string `json:"id"`
}

func (deliverArgs) Kind() string { return "n8n_invoker_deliver" }

type worker struct {
	river.WorkerDefaults[deliverArgs]
	o *Outbox
}

// New migrates River's tables into the store's schema (once, under the
// store's lock) and returns an outbox whose workers deliver through m.
func New(ctx context.Context, store *postgres.Store, m *invoker.Manager, o ob.Options) (*Outbox, error) {
	if store == nil || m == nil {
		return nil, errors.New("outbox: a store and a manager are required")
	}
	if o.Queue == "" {
		o.Queue = ob.DefaultQueue
	}
	if o.Workers == 0 {
		o.Workers = ob.DefaultWorkers
	}
	if o.JobTimeout <= 0 {
		o.JobTimeout = ob.DefaultJobTimeout
	}
	driver := riverpgxv5.New(store.Pool())
	if err := migrate(ctx, store, driver); err != nil {
		return nil, err
	}
	out := &Outbox{store: store, m: m, queue: o.Queue, table: store.Schema() + ".invocations", workers: o.Workers > 0}
	// River rescues a job only once its timeout has passed (a job
	// without one is never rescued); the rescuer looks every 30 s.
	// River fetches at most once per FetchCooldown (100 ms by default,
	// which caps a process at MaxWorkers jobs per 100 ms: 94/s measured
	// with 10 workers); 10 ms lets a process deliver as fast as n8n
	// answers. Options.Poll is the fallback poll when a notification is
	// missed (default 1 s here: River is told of new jobs by
	// LISTEN/NOTIFY).
	poll := time.Second
	if o.Poll > 0 {
		poll = max(o.Poll, 10*time.Millisecond)
	}
	cfg := &river.Config{Schema: store.Schema(), JobTimeout: o.JobTimeout, RescueStuckJobsAfter: o.JobTimeout,
		FetchCooldown: 10 * time.Millisecond, FetchPollInterval: poll}
	if out.workers {
		workers := river.NewWorkers()
		if err := river.AddWorkerSafely(workers, &worker{o: out}); err != nil {
			return nil, err
		}
		cfg.Workers = workers
		cfg.Queues = map[string]river.QueueConfig{o.Queue: {MaxWorkers: o.Workers}}
	}
	c, err := river.NewClient(driver, cfg)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	out.client = c
	return out, nil
}

func migrate(ctx context.Context, store *postgres.Store, driver *riverpgxv5.Driver) error {
	conn, err := store.Pool().Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	lock := "n8n-invoker river " + store.Schema()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtext($1))", lock); err != nil {
		return err
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtext($1))", lock)
	}()
	mig, err := rivermigrate.New(driver, &rivermigrate.Config{Schema: store.Schema()})
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if _, err := mig.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("outbox: migrating River's tables: %w", err)
	}
	return nil
}

// Start starts this process's workers (none with outbox.Options.Workers < 0).
func (o *Outbox) Start(ctx context.Context) error {
	if !o.workers {
		return nil
	}
	return o.client.Start(ctx)
}

// Stop stops the workers, letting deliveries in flight finish until ctx
// ends (a delivery cut short stays journaled and is delivered again,
// after a reconcile).
func (o *Outbox) Stop(ctx context.Context) error {
	if !o.workers {
		return nil
	}
	return o.client.Stop(ctx)
}

// Enqueue stores req in a transaction of its own and returns its id once
// it is committed.
func (o *Outbox) Enqueue(ctx context.Context, req *invocation.Request) (string, error) {
	id, _, err := o.Submit(ctx, req)
	return id, err
}

// Submit is Enqueue that also reports whether req was stored now
// (outbox.Submitter).
func (o *Outbox) Submit(ctx context.Context, req *invocation.Request) (id string, created bool, err error) {
	err = pgx.BeginFunc(ctx, o.store.Pool(), func(tx pgx.Tx) error {
		var err error
		id, created, err = o.enqueueTx(ctx, tx, req)
		return err
	})
	return id, created, err
}

// EnqueueTx stores req in the caller's transaction tx: it is delivered
// once tx commits, and never if tx rolls back. A request without an
// idempotency key gets the invocation's id as its key; a key already
// stored with the same workflow and parameters returns the stored
// invocation's id (nothing new is stored), with others an error of code invocation.CodeKeyConflict.
func (o *Outbox) EnqueueTx(ctx context.Context, tx pgx.Tx, req *invocation.Request) (string, error) {
	id, _, err := o.enqueueTx(ctx, tx, req)
	return id, err
}

func (o *Outbox) enqueueTx(ctx context.Context, tx pgx.Tx, req *invocation.Request) (string, bool, error) {
	id := ob.NewID()
	key, params, pathParams, err := ob.Encode(req, id)
	if err != nil {
		return "", false, err
	}
	if err := ob.CheckWorkflow(ctx, o.m, req.Workflow); err != nil {
		return "", false, err
	}
	var got string
	err = tx.QueryRow(ctx, "INSERT INTO "+o.table+` (id, workflow, params, path_params, idempotency_key, status)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id`,
		id, req.Workflow, []byte(params), []byte(pathParams), key, Queued).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		var wf string
		var stored, storedPath []byte
		if err := tx.QueryRow(ctx, "SELECT id, workflow, params, path_params FROM "+o.table+" WHERE idempotency_key = $1", key).Scan(&got, &wf, &stored, &storedPath); err != nil {
			return "", false, err
		}
		if wf != req.Workflow || !ob.SameJSON(stored, params) || !ob.SameJSON(storedPath, pathParams) {
			return "", false, ob.Conflict(key, got)
		}
		return got, false, nil
	}
	if err != nil {
		return "", false, err
	}
	if _, err := o.client.InsertTx(ctx, tx, deliverArgs{ID: id}, &river.InsertOpts{Queue: o.queue, MaxAttempts: riverMaxAttempts}); err != nil {
		return "", false, fmt.Errorf("outbox: queueing: %w", err)
	}
	return id, true, nil
}

// Get returns invocation id, or ErrNotFound.
func (o *Outbox) Get(ctx context.Context, id string) (*ob.Invocation, error) {
	var inv ob.Invocation
	var result []byte
	var dead *int64
	err := o.store.Pool().QueryRow(ctx, "SELECT id, workflow, idempotency_key, status, result, error, class, dead_letter, deliveries, created_at, updated_at FROM "+
		o.table+" WHERE id = $1", id).Scan(&inv.ID, &inv.Workflow, &inv.IdempotencyKey, &inv.Status, &result, &inv.Error, &inv.Class, &dead, &inv.Deliveries, &inv.CreatedAt, &inv.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if dead != nil {
		inv.DeadLetter = *dead
	}
	if len(result) > 0 {
		inv.Result = &invocation.Result{}
		if err := json.Unmarshal(result, inv.Result); err != nil {
			return nil, fmt.Errorf("outbox: stored result of %s: %w", id, err)
		}
	}
	return &inv, nil
}

// Await waits until invocation id has ended (polling the store, so that
// any process's workers may deliver it) and returns it.
func (o *Outbox) Await(ctx context.Context, id string) (*ob.Invocation, error) {
	return ob.AwaitPoll(ctx, func(ctx context.Context) (*ob.Invocation, error) { return o.Get(ctx, id) })
}

// Work delivers one stored invocation through the manager's pipeline and
// records its outcome. A failed call is recorded and ends the job: the
// pipeline did the retrying.
func (w *worker) Work(ctx context.Context, job *river.Job[deliverArgs]) error {
	o := w.o
	var wf, key string
	var params, pathParams []byte
	var status string
	var deliveries int
	err := o.store.Pool().QueryRow(ctx, "SELECT workflow, idempotency_key, params, path_params, status, deliveries FROM "+o.table+" WHERE id = $1",
		job.Args.ID).Scan(&wf, &key, &params, &pathParams, &status, &deliveries)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // purged
	}
	if err != nil {
		return err
	}
	if status == Succeeded || status == Failed || status == DeadLettered {
		return nil
	}
	if deliveries >= ob.MaxDeliveries {
		// The project counts deliveries, not River: at the bound the
		// invocation ends in a terminal state with the job, never left
		// queued behind a discarded job.
		return o.setStatus(context.WithoutCancel(ctx), job.Args.ID, Failed, nil, &invocation.Error{Code: invocation.CodeUnresolved, Workflow: wf, Key: key,
			Message: fmt.Sprintf("outbox: delivered %d times without an end (its workers died or were cut mid-call); not delivered again", deliveries)})
	}
	if _, err := o.store.Pool().Exec(ctx, "UPDATE "+o.table+" SET status = $2, deliveries = deliveries + 1, updated_at = clock_timestamp() WHERE id = $1",
		job.Args.ID, Running); err != nil {
		return err
	}
	req := ob.Decode(wf, key, params, pathParams)
	// The request id names the delivery: the invocation and River's
	// attempt (a rescue of it keeps it).
	req.RequestID = fmt.Sprintf("%s.%d", job.Args.ID, job.Attempt)
	res, err := o.m.Execute(ctx, req)
	if err != nil && ctx.Err() != nil {
		// Shut down or cut by the job timeout mid-call: the journal keeps
		// it; the job is snoozed (not an attempt of River's) and the next
		// delivery reconciles before any re-send.
		_ = o.setStatus(context.WithoutCancel(ctx), job.Args.ID, Queued, nil, nil)
		return river.JobSnooze(time.Second)
	}
	return o.setStatus(context.WithoutCancel(ctx), job.Args.ID, "", res, err)
}

// setStatus records status, or the outcome of a call when status is "".
func (o *Outbox) setStatus(ctx context.Context, id, status string, res *invocation.Result, callErr error) error {
	var result []byte
	var info dlq.ErrorInfo
	var dead *int64
	switch {
	case status == "":
		var entry int64
		status, result, info, entry = ob.Outcome(res, callErr)
		if entry > 0 {
			dead = &entry
		}
	case callErr != nil:
		info = dlq.ErrorInfo{Class: invocation.ClassOf(callErr).String(), Message: callErr.Error()}
	}
	_, err := o.store.Pool().Exec(ctx, "UPDATE "+o.table+` SET status = $2, result = COALESCE($3, result), error = $4, class = $5,
		dead_letter = COALESCE($6, dead_letter), updated_at = clock_timestamp() WHERE id = $1`, id, status, result, info.Message, info.Class, dead)
	return err
}

// List returns invocations, newest first.
func (o *Outbox) List(ctx context.Context, f ob.Filter) ([]*ob.Invocation, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	q := "SELECT id FROM " + o.table + " WHERE true"
	args := []any{}
	if f.Status != "" {
		args = append(args, f.Status)
		q += fmt.Sprintf(" AND status = $%d", len(args))
	}
	if f.Workflow != "" {
		args = append(args, f.Workflow)
		q += fmt.Sprintf(" AND workflow = $%d", len(args))
	}
	q += fmt.Sprintf(" ORDER BY created_at DESC, id DESC LIMIT %d", f.Limit)
	rows, err := o.store.Pool().Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	out := make([]*ob.Invocation, 0, len(ids))
	for _, id := range ids {
		inv, err := o.Get(ctx, id)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if inv != nil {
			out = append(out, inv)
		}
	}
	return out, nil
}

// riverMaxAttempts is River's bound on a job's errored runs: above the
// outbox's own count of deliveries (ob.MaxDeliveries), which ends the
// invocation in a terminal state first, so that River never discards a
// job whose invocation is still queued.
const riverMaxAttempts = ob.MaxDeliveries + 10
