package outbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Local is durable submission on a store that queues submissions itself
// (the embedded SQLite store): its workers claim queued invocations under
// a lease they renew while they deliver, so that several processes on one
// store file share the work, and a worker that died leaves claims that
// expire and are claimed again (then the journal reconciles before any
// re-send).
//
// Why not River's SQLite driver: it would put River and database/sql
// plumbing of its own into the library's module, which every user
// downloads, for a queue that one SQLite file (one machine, one writer at
// a time) needs only a claim and a lease for; the store already has both
// for its journal.
type Local struct {
	store dlq.Submissions
	m     *invoker.Manager
	o     Options
	owner string
	lease time.Duration
	wake  chan struct{}

	mu      sync.Mutex
	held    map[string]int
	running bool
	stopC   chan struct{} // closed: claim no more
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

var (
	_ Queue     = (*Local)(nil)
	_ Submitter = (*Local)(nil)
)

// NewLocal returns the queue of store, delivering through m.
func NewLocal(store dlq.Submissions, m *invoker.Manager, o Options) (*Local, error) {
	if store == nil || m == nil {
		return nil, errors.New("outbox: a store and a manager are required")
	}
	if o.JobTimeout < 0 || o.Poll < 0 {
		return nil, errors.New("outbox: negative job timeout or poll interval")
	}
	lease := m.Config().Store.Lease.D()
	if lease <= 0 {
		lease = invoker.DefaultLease
	}
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &Local{store: store, m: m, o: o.withDefaults(), lease: lease, wake: make(chan struct{}, 1),
		owner: fmt.Sprintf("outbox %s:%d/%s", host, os.Getpid(), hex.EncodeToString(b)), held: map[string]int{}}, nil
}

// Enqueue stores req (Queue.Enqueue).
func (l *Local) Enqueue(ctx context.Context, req *invocation.Request) (string, error) {
	id, _, err := l.Submit(ctx, req)
	return id, err
}

// Submit is Enqueue that also reports whether req was stored now (false:
// its idempotency key was stored before, with the same parameters).
func (l *Local) Submit(ctx context.Context, req *invocation.Request) (id string, created bool, err error) {
	id = NewID()
	key, params, pathParams, err := Encode(req, id)
	if err != nil {
		return "", false, err
	}
	if err := CheckWorkflow(ctx, l.m, req.Workflow); err != nil {
		return "", false, err
	}
	stored, created, err := l.store.Submit(ctx, &dlq.Submission{ID: id, Workflow: req.Workflow, Params: params, PathParams: pathParams, IdempotencyKey: key})
	if err != nil {
		return "", false, err
	}
	if !created && (stored.Workflow != req.Workflow || !SameJSON(stored.Params, params) || !SameJSON(stored.PathParams, pathParams)) {
		return "", false, Conflict(key, stored.ID)
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return stored.ID, created, nil
}

// Get returns invocation id (Queue.Get).
func (l *Local) Get(ctx context.Context, id string) (*Invocation, error) {
	s, err := l.store.Submission(ctx, id)
	if errors.Is(err, dlq.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return fromSubmission(s)
}

func fromSubmission(s *dlq.Submission) (*Invocation, error) {
	inv := &Invocation{ID: s.ID, Workflow: s.Workflow, IdempotencyKey: s.IdempotencyKey, Status: s.Status, Error: s.Error.Message,
		Class: s.Error.Class, DeadLetter: s.DeadLetter, Deliveries: s.Deliveries, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}
	if len(s.Result) > 0 {
		inv.Result = &invocation.Result{}
		if err := json.Unmarshal(s.Result, inv.Result); err != nil {
			return nil, fmt.Errorf("outbox: stored result of %s: %w", s.ID, err)
		}
	}
	return inv, nil
}

// Await waits until invocation id has ended (Queue.Await).
func (l *Local) Await(ctx context.Context, id string) (*Invocation, error) {
	return AwaitPoll(ctx, func(ctx context.Context) (*Invocation, error) { return l.Get(ctx, id) })
}

// List returns invocations, newest first (Queue.List).
func (l *Local) List(ctx context.Context, f Filter) ([]*Invocation, error) {
	subs, err := l.store.ListSubmissions(ctx, dlq.SubmissionFilter{Status: f.Status, Workflow: f.Workflow, Limit: f.Limit})
	if err != nil {
		return nil, err
	}
	out := make([]*Invocation, 0, len(subs))
	for _, s := range subs {
		inv, err := fromSubmission(s)
		if err != nil {
			return nil, err
		}
		out = append(out, inv)
	}
	return out, nil
}

// Start starts the workers and the heartbeat of their claims
// (Queue.Start).
func (l *Local) Start(ctx context.Context) error {
	if l.o.Workers < 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running {
		return errors.New("outbox: already started")
	}
	l.running = true
	l.stopC = make(chan struct{})
	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel = cancel
	l.wg.Add(l.o.Workers + 1)
	for range l.o.Workers {
		go l.loop(work)
	}
	go l.heartbeat(work)
	return nil
}

// Stop stops claiming, lets deliveries in flight finish until ctx ends,
// then cuts them short: they are given back to the queue (Queue.Stop).
func (l *Local) Stop(ctx context.Context) error {
	l.mu.Lock()
	if !l.running {
		l.mu.Unlock()
		return nil
	}
	l.running = false
	close(l.stopC)
	l.mu.Unlock()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		l.cancel()
		return nil
	case <-ctx.Done():
		l.cancel()
		<-done
		return ctx.Err()
	}
}

func (l *Local) loop(ctx context.Context) {
	defer l.wg.Done()
	for {
		select {
		case <-l.stopC:
			return
		default:
		}
		s, err := l.store.ClaimSubmission(ctx, l.owner, l.lease)
		if err == nil && s != nil {
			l.deliver(ctx, s)
			continue
		}
		if err != nil && ctx.Err() == nil {
			l.m.Logger().Warn("outbox: claiming a queued invocation failed", "error", err.Error())
		}
		t := time.NewTimer(l.o.Poll)
		select {
		case <-l.stopC:
			t.Stop()
			return
		case <-l.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// heartbeat renews the claims of deliveries in flight.
func (l *Local) heartbeat(ctx context.Context) {
	defer l.wg.Done()
	t := time.NewTicker(l.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stopC:
			return
		case <-t.C:
			l.mu.Lock()
			ids := make([]string, 0, len(l.held))
			for id := range l.held {
				ids = append(ids, id)
			}
			l.mu.Unlock()
			if err := l.store.RenewSubmissions(ctx, l.owner, ids, l.lease); err != nil && ctx.Err() == nil {
				l.m.Logger().Warn("outbox: renewing claims failed; another worker may deliver them (after a reconcile)", "error", err.Error())
			}
		}
	}
}

func (l *Local) deliver(ctx context.Context, s *dlq.Submission) {
	l.mu.Lock()
	l.held[s.ID]++
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		if l.held[s.ID]--; l.held[s.ID] <= 0 {
			delete(l.held, s.ID)
		}
		l.mu.Unlock()
	}()
	end := &dlq.Submission{ID: s.ID}
	if s.Deliveries > MaxDeliveries {
		end.Status, end.Error = Failed, dlq.ErrorInfo{Class: invocation.Unknown.String(),
			Message: fmt.Sprintf("outbox: delivered %d times without an end (its workers died or stopped mid-call)", s.Deliveries-1)}
		l.finish(end)
		return
	}
	dctx, cancel := context.WithTimeout(ctx, l.o.JobTimeout)
	res, err := l.m.Execute(dctx, Decode(s.Workflow, s.IdempotencyKey, s.Params, s.PathParams))
	cut := dctx.Err() != nil
	cancel()
	if err != nil && cut {
		// Stopped or cut by the job timeout mid-call: the journal keeps
		// the key; the next delivery reconciles before any re-send.
		end.Status = Queued
		l.finish(end)
		return
	}
	end.Status, end.Result, end.Error, end.DeadLetter = Outcome(res, err)
	l.finish(end)
}

func (l *Local) finish(end *dlq.Submission) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := l.store.FinishSubmission(ctx, l.owner, end)
	switch {
	case errors.Is(err, dlq.ErrLeaseLost):
		l.m.Logger().Warn("outbox: another worker claimed the invocation meanwhile; its outcome stands", "invocation", end.ID)
	case err != nil:
		l.m.Logger().Warn("outbox: recording an outcome failed; the invocation will be delivered again (its result is in the journal)",
			"invocation", end.ID, "error", err.Error())
	}
}
