package sim

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/n8n-invoker/n8n-invoker/dlq"
)

// Store is an in-memory model of the journal contract (dlq.Backend, with
// dlq.Claimer and dlq.Purger): dead letters, the write-ahead journal with
// leases and fencing tokens, the idempotency records and replay claims,
// each operation atomic under one lock, time from time.Now (the bubble's
// fake clock in a simulation). The store conformance suite (dlqtest)
// checks it with the same operation sequences as SQLite and PostgreSQL.
// For one process's view, with its crashes and pauses, use Handle.
type Store struct {
	// Retention is how long completed keys are remembered
	// (dlq.DefaultRetention when zero).
	Retention time.Duration

	mu       sync.Mutex
	entries  map[int64]*dlq.Entry
	nextID   int64
	inflight map[string]*dlq.Inflight
	token    int64
	done     map[string]completed
	claims   map[int64]claim
}

type completed struct {
	result json.RawMessage
	at     time.Time
}

type claim struct {
	owner string
	until time.Time
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{entries: map[int64]*dlq.Entry{}, inflight: map[string]*dlq.Inflight{}, done: map[string]completed{}, claims: map[int64]claim{}}
}

var _ interface {
	dlq.Backend
	dlq.Claimer
	dlq.Purger
} = (*Store)(nil)

func cloneRaw(b json.RawMessage) json.RawMessage {
	if b == nil {
		return nil
	}
	return bytes.Clone(b)
}

func cloneEntry(e *dlq.Entry) *dlq.Entry {
	c := *e
	c.Params = cloneRaw(e.Params)
	c.PathParams = maps.Clone(e.PathParams)
	if e.ReplayedAt != nil {
		t := *e.ReplayedAt
		c.ReplayedAt = &t
	}
	return &c
}

// Close does nothing: the store lives as long as the simulation.
func (s *Store) Close() error { return nil }

// Put stores an entry and returns its id (dlq.Writer).
func (s *Store) Put(_ context.Context, e *dlq.Entry) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.putLocked(e), nil
}

func (s *Store) putLocked(e *dlq.Entry) int64 {
	now := time.Now()
	if e.CreatedAt.IsZero() {
		e.CreatedAt = now
	}
	e.UpdatedAt = now
	s.nextID++
	e.ID = s.nextID
	c := cloneEntry(e)
	c.Replays, c.ReplayedAt = 0, nil
	s.entries[c.ID] = c
	return c.ID
}

// Get returns the entry with id, or dlq.ErrNotFound (dlq.Reader).
func (s *Store) Get(_ context.Context, id int64) (*dlq.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[id]
	if !ok {
		return nil, dlq.ErrNotFound
	}
	return cloneEntry(e), nil
}

// List returns the entries f selects, oldest first (dlq.Reader).
func (s *Store) List(_ context.Context, f dlq.Filter) ([]*dlq.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listLocked(f), nil
}

func (s *Store) listLocked(f dlq.Filter) []*dlq.Entry {
	var out []*dlq.Entry
	for _, e := range s.entries {
		switch {
		case len(f.IDs) > 0 && !slices.Contains(f.IDs, e.ID),
			f.Workflow != "" && e.Workflow != f.Workflow,
			f.Key != "" && e.IdempotencyKey != f.Key,
			f.Class != "" && e.LastError.Class != f.Class,
			f.Reason != "" && e.Reason != f.Reason,
			!f.Since.IsZero() && e.CreatedAt.Before(f.Since),
			!f.Until.IsZero() && !e.CreatedAt.Before(f.Until):
			continue
		}
		out = append(out, cloneEntry(e))
	}
	slices.SortFunc(out, func(a, b *dlq.Entry) int { return cmp.Compare(a.ID, b.ID) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out
}

// Count returns the number of entries.
func (s *Store) Count(context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries), nil
}

// Delete removes an entry (dlq.Writer).
func (s *Store) Delete(_ context.Context, id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[id]; !ok {
		return dlq.ErrNotFound
	}
	delete(s.entries, id)
	return nil
}

// MarkReplayed records a failed replay (dlq.Writer).
func (s *Store) MarkReplayed(_ context.Context, id int64, attempts int, last dlq.ErrorInfo) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[id]
	if !ok {
		return dlq.ErrNotFound
	}
	now := time.Now()
	e.Attempts += attempts
	e.LastError = last
	e.Replays++
	e.ReplayedAt, e.UpdatedAt = &now, now
	return nil
}

// Purge deletes the entries f selects and returns how many (dlq.Purger).
func (s *Store) Purge(_ context.Context, f dlq.Filter) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	es := s.listLocked(f)
	for _, e := range es {
		delete(s.entries, e.ID)
	}
	return len(es), nil
}

// Claim takes entry id for owner until ttl passes (dlq.Claimer).
func (s *Store) Claim(_ context.Context, id int64, owner string, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if c, ok := s.claims[id]; ok && !c.until.Before(now) && c.owner != owner {
		return false, nil
	}
	s.claims[id] = claim{owner: owner, until: now.Add(ttl)}
	return true, nil
}

// Release gives a claim back (dlq.Claimer).
func (s *Store) Release(_ context.Context, id int64, owner string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.claims[id]; ok && c.owner == owner {
		delete(s.claims, id)
	}
	return nil
}

// Begin writes an invocation ahead, leased to owner (dlq.Journal).
func (s *Store) Begin(_ context.Context, in *dlq.Inflight, owner string, ttl time.Duration) (dlq.Lease, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	cur, ok := s.inflight[in.IdempotencyKey]
	taken := false
	if ok {
		if !cur.Lease.Until.Before(now) && cur.Lease.Owner != owner && (in.Replaces == "" || cur.Lease.Owner != in.Replaces) {
			return dlq.Lease{}, false, dlq.Held(in.IdempotencyKey, cur.Lease.Owner, cur.Lease.Until)
		}
		taken = true
	}
	s.token++
	l := dlq.Lease{Key: in.IdempotencyKey, Owner: owner, Token: s.token, Until: now.Add(ttl)}
	started := now
	if ok {
		started = cur.StartedAt // kept when the key changes hands
	}
	s.inflight[in.IdempotencyKey] = &dlq.Inflight{IdempotencyKey: in.IdempotencyKey, Workflow: in.Workflow, Params: cloneRaw(in.Params),
		PathParams: maps.Clone(in.PathParams), RequestID: in.RequestID, StartedAt: started, Lease: l}
	return l, taken, nil
}

// Renew extends the leases ls that are still their keys' (matched on key
// and token) and returns the keys of the others (dlq.Journal).
func (s *Store) Renew(_ context.Context, ls []dlq.Lease, ttl time.Duration) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	until := time.Now().Add(ttl)
	var lost []string
	for _, l := range ls {
		cur, ok := s.inflight[l.Key]
		if !ok || cur.Lease.Token != l.Token {
			lost = append(lost, l.Key)
			continue
		}
		cur.Lease.Until = until
	}
	return lost, nil
}

// releaseLocked forgets the key in flight under l: dlq.ErrLeaseLost when
// it has another token or is gone. The zero token holds nothing.
func (s *Store) releaseLocked(l dlq.Lease) error {
	if l.Token == 0 {
		return nil
	}
	cur, ok := s.inflight[l.Key]
	if !ok || cur.Lease.Token != l.Token {
		return dlq.ErrLeaseLost
	}
	delete(s.inflight, l.Key)
	return nil
}

// Complete records a success under l (dlq.Journal).
func (s *Store) Complete(_ context.Context, l dlq.Lease, result json.RawMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.releaseLocked(l); err != nil {
		return err
	}
	s.done[l.Key] = completed{result: cloneRaw(result), at: time.Now()}
	return nil
}

// End forgets the key in flight under l, with e as a dead letter in the
// same step (dlq.Journal).
func (s *Store) End(_ context.Context, l dlq.Lease, e *dlq.Entry) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.releaseLocked(l); err != nil {
		return 0, err
	}
	if e == nil {
		return 0, nil
	}
	return s.putLocked(e), nil
}

// Completed returns the recorded result of a key that succeeded within
// the retention (dlq.Journal).
func (s *Store) Completed(_ context.Context, key string) (json.RawMessage, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.done[key]
	ret := s.Retention
	if ret <= 0 {
		ret = dlq.DefaultRetention
	}
	if !ok || c.at.Before(time.Now().Add(-ret)) {
		return nil, false, nil
	}
	return cloneRaw(c.result), true, nil
}

// Inflight lists the invocations in flight f selects, oldest first
// (dlq.Journal).
func (s *Store) Inflight(_ context.Context, f dlq.InflightFilter) ([]*dlq.Inflight, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*dlq.Inflight
	for _, in := range s.inflight {
		if (f.Key != "" && in.IdempotencyKey != f.Key) || (!f.ExpiredAt.IsZero() && !in.Lease.Until.Before(f.ExpiredAt)) {
			continue
		}
		c := *in
		c.Params = cloneRaw(in.Params)
		c.PathParams = maps.Clone(in.PathParams)
		out = append(out, &c)
	}
	slices.SortFunc(out, func(a, b *dlq.Inflight) int {
		return cmp.Or(a.StartedAt.Compare(b.StartedAt), cmp.Compare(a.IdempotencyKey, b.IdempotencyKey))
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// Handle is one process's view of the store: every operation first waits
// out the process's pause, and none is accepted once it crashed; the
// operation that crashes it may be applied and still reported failed.
type Handle struct {
	s *Store
	p *Proc
}

// Handle returns p's view of the store.
func (s *Store) Handle(p *Proc) *Handle { return &Handle{s: s, p: p} }

var _ interface {
	dlq.Backend
	dlq.Claimer
	dlq.Purger
} = (*Handle)(nil)

// op runs f as one store operation of the process.
func (h *Handle) op(f func() error) error {
	if _, err := h.p.gate(); err != nil {
		return err
	}
	crash, applied := h.p.storeOp()
	if crash && !applied {
		return ErrCrashed
	}
	err := f()
	if crash {
		return ErrCrashed // applied, then cut: the caller never hears
	}
	return err
}

// Close does nothing.
func (h *Handle) Close() error { return nil }

// Put is Store.Put for the process.
func (h *Handle) Put(ctx context.Context, e *dlq.Entry) (id int64, err error) {
	err = h.op(func() (err error) { id, err = h.s.Put(ctx, e); return })
	return id, err
}

// Get is Store.Get for the process.
func (h *Handle) Get(ctx context.Context, id int64) (e *dlq.Entry, err error) {
	err = h.op(func() (err error) { e, err = h.s.Get(ctx, id); return })
	return e, err
}

// List is Store.List for the process.
func (h *Handle) List(ctx context.Context, f dlq.Filter) (es []*dlq.Entry, err error) {
	err = h.op(func() (err error) { es, err = h.s.List(ctx, f); return })
	return es, err
}

// Count is Store.Count for the process.
func (h *Handle) Count(ctx context.Context) (n int, err error) {
	err = h.op(func() (err error) { n, err = h.s.Count(ctx); return })
	return n, err
}

// Delete is Store.Delete for the process.
func (h *Handle) Delete(ctx context.Context, id int64) error {
	return h.op(func() error { return h.s.Delete(ctx, id) })
}

// MarkReplayed is Store.MarkReplayed for the process.
func (h *Handle) MarkReplayed(ctx context.Context, id int64, attempts int, last dlq.ErrorInfo) error {
	return h.op(func() error { return h.s.MarkReplayed(ctx, id, attempts, last) })
}

// Purge is Store.Purge for the process.
func (h *Handle) Purge(ctx context.Context, f dlq.Filter) (n int, err error) {
	err = h.op(func() (err error) { n, err = h.s.Purge(ctx, f); return })
	return n, err
}

// Claim is Store.Claim for the process.
func (h *Handle) Claim(ctx context.Context, id int64, owner string, ttl time.Duration) (ok bool, err error) {
	err = h.op(func() (err error) { ok, err = h.s.Claim(ctx, id, owner, ttl); return })
	return ok, err
}

// Release is Store.Release for the process.
func (h *Handle) Release(ctx context.Context, id int64, owner string) error {
	return h.op(func() error { return h.s.Release(ctx, id, owner) })
}

// Begin is Store.Begin for the process.
func (h *Handle) Begin(ctx context.Context, in *dlq.Inflight, owner string, ttl time.Duration) (l dlq.Lease, taken bool, err error) {
	err = h.op(func() (err error) { l, taken, err = h.s.Begin(ctx, in, owner, ttl); return })
	return l, taken, err
}

// Renew is Store.Renew for the process.
func (h *Handle) Renew(ctx context.Context, ls []dlq.Lease, ttl time.Duration) (lost []string, err error) {
	err = h.op(func() (err error) { lost, err = h.s.Renew(ctx, ls, ttl); return })
	return lost, err
}

// Complete is Store.Complete for the process.
func (h *Handle) Complete(ctx context.Context, l dlq.Lease, result json.RawMessage) error {
	return h.op(func() error { return h.s.Complete(ctx, l, result) })
}

// End is Store.End for the process.
func (h *Handle) End(ctx context.Context, l dlq.Lease, e *dlq.Entry) (id int64, err error) {
	err = h.op(func() (err error) { id, err = h.s.End(ctx, l, e); return })
	return id, err
}

// Completed is Store.Completed for the process.
func (h *Handle) Completed(ctx context.Context, key string) (r json.RawMessage, ok bool, err error) {
	err = h.op(func() (err error) { r, ok, err = h.s.Completed(ctx, key); return })
	return r, ok, err
}

// Inflight is Store.Inflight for the process.
func (h *Handle) Inflight(ctx context.Context, f dlq.InflightFilter) (in []*dlq.Inflight, err error) {
	err = h.op(func() (err error) { in, err = h.s.Inflight(ctx, f); return })
	return in, err
}
