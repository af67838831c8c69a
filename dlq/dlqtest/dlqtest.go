// Package dlqtest is the conformance suite of dlq.Backend: a store of
// another module (PostgreSQL, say) runs it unchanged, as the embedded
// SQLite store does, to show that it keeps the contract the manager
// relies on: dead letters, the write-ahead journal, leases with fencing
// tokens, and replay claims.
package dlqtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Open returns a new, empty backend for one test; the suite closes it.
type Open func(t *testing.T) dlq.Backend

// Options change the suite.
type Options struct {
	// Reopen, when set, opens a second handle to the store the last
	// Open made (another process on the same store).
	Reopen func(t *testing.T) dlq.Backend
}

// Run runs the suite against backends open makes.
func Run(t *testing.T, open Open, o Options) {
	t.Helper()
	tests := []struct {
		name string
		f    func(t *testing.T, b dlq.Backend)
	}{
		{"Entries", entries},
		{"Journal", journal},
		{"LeaseHeldAndTakenOver", leaseHeld},
		{"LeaseFencing", fencing},
		{"Renew", renew},
		{"TakeOverOnce", takeOverOnce},
		{"BeginOnce", beginOnce},
		{"Claims", claims},
		{"Purge", purge},
		{"TokensGrow", tokensGrow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := open(t)
			t.Cleanup(func() { _ = b.Close() })
			tt.f(t, b)
		})
	}
	if o.Reopen != nil {
		t.Run("TwoHandles", func(t *testing.T) {
			b := open(t)
			t.Cleanup(func() { _ = b.Close() })
			b2 := o.Reopen(t)
			t.Cleanup(func() { _ = b2.Close() })
			twoHandles(t, b, b2)
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func entries(t *testing.T, s dlq.Backend) {
	ctx := t.Context()
	e := &dlq.Entry{Workflow: "w1", Params: json.RawMessage(`{"a":1}`), IdempotencyKey: "k1", RequestID: "r1", Attempts: 4,
		Reason: "exhausted", FirstError: dlq.ErrorInfo{Class: "transient", Message: "503"}, LastError: dlq.ErrorInfo{Class: "transient", Message: "503"},
		ExecutionID: "77", PathParams: map[string]string{"orderId": "a b/ü", "line": ""}}
	id, err := s.Put(ctx, e)
	if err != nil || id == 0 {
		t.Fatalf("put: %d %v", id, err)
	}
	_, err = s.Put(ctx, &dlq.Entry{Workflow: "w2", IdempotencyKey: "k2", Reason: "circuit-open", LastError: dlq.ErrorInfo{Class: "transient", Message: "open"}})
	must(t, err)
	_, err = s.Put(ctx, &dlq.Entry{Workflow: "w1", IdempotencyKey: "k3", Reason: "failed", LastError: dlq.ErrorInfo{Class: "permanent", Message: "boom"}})
	must(t, err)
	got, err := s.Get(ctx, id)
	if err != nil || got.Workflow != "w1" || string(got.Params) != `{"a":1}` || got.Attempts != 4 || got.LastError.Message != "503" ||
		got.CreatedAt.IsZero() || got.ExecutionID != "77" || got.RequestID != "r1" || !maps.Equal(got.PathParams, e.PathParams) {
		t.Fatalf("get: %+v %v", got, err)
	}
	for _, tt := range []struct {
		f    dlq.Filter
		want int
	}{
		{dlq.Filter{}, 3}, {dlq.Filter{Workflow: "w1"}, 2}, {dlq.Filter{Class: "permanent"}, 1}, {dlq.Filter{Reason: "circuit-open"}, 1},
		{dlq.Filter{IDs: []int64{id}}, 1}, {dlq.Filter{Limit: 2}, 2}, {dlq.Filter{Since: time.Now().Add(time.Hour)}, 0},
		{dlq.Filter{Key: "k2"}, 1}, {dlq.Filter{Until: time.Now().Add(-time.Hour)}, 0},
	} {
		l, err := s.List(ctx, tt.f)
		if err != nil || len(l) != tt.want {
			t.Errorf("List(%+v) = %d entries, %v; want %d", tt.f, len(l), err, tt.want)
		}
	}
	must(t, s.MarkReplayed(ctx, id, 2, dlq.ErrorInfo{Class: "transient", Message: "502 again"}))
	got, _ = s.Get(ctx, id)
	if got.Attempts != 6 || got.Replays != 1 || got.ReplayedAt == nil || got.LastError.Message != "502 again" || got.FirstError.Message != "503" {
		t.Errorf("after replay: %+v", got)
	}
	must(t, s.Delete(ctx, id))
	if _, err := s.Get(ctx, id); !errors.Is(err, dlq.ErrNotFound) {
		t.Errorf("deleted entry: %v", err)
	}
	if err := s.MarkReplayed(ctx, id, 1, dlq.ErrorInfo{}); !errors.Is(err, dlq.ErrNotFound) {
		t.Errorf("MarkReplayed of a deleted entry: %v", err)
	}
}

const ttl = time.Minute

func journal(t *testing.T, s dlq.Backend) {
	ctx := t.Context()
	leases := map[string]dlq.Lease{}
	for _, k := range []string{"done", "failed", "crashed"} {
		l, taken, err := s.Begin(ctx, &dlq.Inflight{IdempotencyKey: k, Workflow: "w", Params: json.RawMessage(`{"k":"` + k + `"}`), RequestID: "r-" + k,
			PathParams: map[string]string{"id": k}}, "p1", ttl)
		if err != nil || taken || l.Token == 0 || l.Owner != "p1" || l.Key != k {
			t.Fatalf("begin %s: %+v %v %v", k, l, taken, err)
		}
		leases[k] = l
	}
	must(t, s.Complete(ctx, leases["done"], json.RawMessage(`{"status":200}`)))
	id, err := s.End(ctx, leases["failed"], &dlq.Entry{Workflow: "w", IdempotencyKey: "failed", Reason: "exhausted"})
	if err != nil || id == 0 {
		t.Fatalf("end: %d %v", id, err)
	}
	if r, ok, err := s.Completed(ctx, "done"); !ok || err != nil || string(r) != `{"status":200}` {
		t.Errorf("completed: %s %v %v", r, ok, err)
	}
	if _, ok, _ := s.Completed(ctx, "crashed"); ok {
		t.Error("an in-flight key counts as completed")
	}
	in, err := s.Inflight(ctx, dlq.InflightFilter{})
	if err != nil || len(in) != 1 || in[0].IdempotencyKey != "crashed" || string(in[0].Params) != `{"k":"crashed"}` ||
		in[0].RequestID != "r-crashed" || in[0].Lease.Token != leases["crashed"].Token || in[0].StartedAt.IsZero() || in[0].PathParams["id"] != "crashed" {
		t.Fatalf("in flight: %+v %v", in, err)
	}
	if in, _ := s.Inflight(ctx, dlq.InflightFilter{ExpiredAt: time.Now()}); len(in) != 0 {
		t.Errorf("a live lease counts as expired: %+v", in)
	}
	if in, _ := s.Inflight(ctx, dlq.InflightFilter{ExpiredAt: time.Now().Add(2 * ttl)}); len(in) != 1 {
		t.Errorf("an expired lease is not listed: %+v", in)
	}
	// A result known from n8n (no lease) is recorded, in flight or not.
	must(t, s.Complete(ctx, dlq.Lease{Key: "reconciled"}, json.RawMessage(`{"x":1}`)))
	if _, ok, _ := s.Completed(ctx, "reconciled"); !ok {
		t.Error("a result recorded without a lease is not kept")
	}
}

func leaseHeld(t *testing.T, s dlq.Backend) {
	ctx := t.Context()
	in := &dlq.Inflight{IdempotencyKey: "k", Workflow: "w"}
	l1, _, err := s.Begin(ctx, in, "p1", 300*time.Millisecond)
	must(t, err)
	var held *invocation.Error
	if _, _, err := s.Begin(ctx, in, "p2", ttl); !errors.As(err, &held) || held.Code != invocation.CodeKeyHeld || held.Owner != "p1" || held.Key != "k" {
		t.Fatalf("a second owner's Begin of a live lease: %v", err)
	}
	// The owner itself may take its own key again (a call it canceled).
	l1b, taken, err := s.Begin(ctx, in, "p1", 300*time.Millisecond)
	if err != nil || !taken || l1b.Token <= l1.Token {
		t.Fatalf("the owner's own Begin: %+v %v %v", l1b, taken, err)
	}
	// A dead owner's live lease is taken over when Begin names it.
	if _, taken, err := s.Begin(ctx, &dlq.Inflight{IdempotencyKey: "k", Workflow: "w", Replaces: "someone-else"}, "p3", ttl); err == nil || taken {
		t.Fatalf("Begin replacing another owner took a live lease: %v", err)
	}
	l3, taken, err := s.Begin(ctx, &dlq.Inflight{IdempotencyKey: "k", Workflow: "w", Replaces: "p1"}, "p3", 300*time.Millisecond)
	if err != nil || !taken || l3.Token <= l1b.Token {
		t.Fatalf("Begin replacing the dead owner: %+v %v %v", l3, taken, err)
	}
	l1b = l3
	time.Sleep(400 * time.Millisecond)
	l2, taken, err := s.Begin(ctx, in, "p2", ttl)
	if err != nil || !taken || l2.Token <= l1b.Token || l2.Owner != "p2" {
		t.Fatalf("Begin after the lease expired: %+v %v %v", l2, taken, err)
	}
	first, _ := s.Inflight(ctx, dlq.InflightFilter{Key: "k"})
	if len(first) != 1 || first[0].Lease.Owner != "p2" {
		t.Fatalf("in flight after takeover: %+v", first)
	}
}

func fencing(t *testing.T, s dlq.Backend) {
	ctx := t.Context()
	in := &dlq.Inflight{IdempotencyKey: "k", Workflow: "w"}
	old, _, err := s.Begin(ctx, in, "paused", 200*time.Millisecond)
	must(t, err)
	time.Sleep(300 * time.Millisecond)
	cur, _, err := s.Begin(ctx, in, "new", ttl)
	must(t, err)
	// The paused process wakes up: its outcome is refused.
	if err := s.Complete(ctx, old, json.RawMessage(`{"from":"paused"}`)); !errors.Is(err, dlq.ErrLeaseLost) {
		t.Errorf("Complete under a lost lease: %v", err)
	}
	if _, ok, _ := s.Completed(ctx, "k"); ok {
		t.Error("a lost lease's Complete recorded a result")
	}
	if _, err := s.End(ctx, old, &dlq.Entry{Workflow: "w", IdempotencyKey: "k", Reason: "exhausted"}); !errors.Is(err, dlq.ErrLeaseLost) {
		t.Errorf("End under a lost lease: %v", err)
	}
	if n, _ := s.List(ctx, dlq.Filter{Key: "k"}); len(n) != 0 {
		t.Error("a lost lease's End stored a dead letter")
	}
	must(t, s.Complete(ctx, cur, json.RawMessage(`{"from":"new"}`)))
	if r, ok, _ := s.Completed(ctx, "k"); !ok || string(r) != `{"from":"new"}` {
		t.Errorf("the new owner's result: %s %v", r, ok)
	}
	// A later key of the same name does not revive the old token.
	again, _, err := s.Begin(ctx, in, "third", ttl)
	must(t, err)
	if err := s.Complete(ctx, old, nil); !errors.Is(err, dlq.ErrLeaseLost) || again.Token <= cur.Token {
		t.Errorf("an old token after the key came back: %v (tokens %d, %d)", err, cur.Token, again.Token)
	}
}

func renew(t *testing.T, s dlq.Backend) {
	ctx := t.Context()
	a, _, err := s.Begin(ctx, &dlq.Inflight{IdempotencyKey: "a", Workflow: "w"}, "p1", 300*time.Millisecond)
	must(t, err)
	b, _, err := s.Begin(ctx, &dlq.Inflight{IdempotencyKey: "b", Workflow: "w"}, "p1", 300*time.Millisecond)
	must(t, err)
	lost, err := s.Renew(ctx, []dlq.Lease{a, b, {Key: "never", Owner: "p1", Token: 1}}, ttl)
	if err != nil || len(lost) != 1 || lost[0] != "never" {
		t.Fatalf("renew: %v %v", lost, err)
	}
	time.Sleep(400 * time.Millisecond)
	if _, _, err := s.Begin(ctx, &dlq.Inflight{IdempotencyKey: "a", Workflow: "w"}, "p2", ttl); err == nil {
		t.Fatal("a renewed lease was taken")
	}
	// p2 takes b over once p1 stops renewing it: p1's lease on b is lost.
	must(t, s.Complete(ctx, a, nil))
	if lost, _ := s.Renew(ctx, []dlq.Lease{{Key: "b", Owner: "p2", Token: b.Token + 1000}}, ttl); len(lost) != 1 {
		t.Errorf("a token that is not the key's renewed it: lost %v", lost)
	}
	// The same owner taking its own key again gets a new token: a lease
	// matches on (key, token), so the old one is lost, never renewed
	// under the owner alone.
	b2, taken, err := s.Begin(ctx, &dlq.Inflight{IdempotencyKey: "b", Workflow: "w"}, "p1", ttl)
	must(t, err)
	if !taken || b2.Token == b.Token {
		t.Fatalf("the owner's Begin of its own key: taken %v, token %d (was %d)", taken, b2.Token, b.Token)
	}
	if lost, _ := s.Renew(ctx, []dlq.Lease{b}, ttl); len(lost) != 1 {
		t.Errorf("the old token of the same owner renewed the key: lost %v", lost)
	}
	if lost, _ := s.Renew(ctx, []dlq.Lease{b2}, ttl); len(lost) != 0 {
		t.Errorf("the key's lease was not renewed: lost %v", lost)
	}
}

func takeOverOnce(t *testing.T, s dlq.Backend) {
	ctx := t.Context()
	in := &dlq.Inflight{IdempotencyKey: "k", Workflow: "w"}
	l, _, err := s.Begin(ctx, in, "dead", 100*time.Millisecond)
	must(t, err)
	time.Sleep(200 * time.Millisecond)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []dlq.Lease
	for i := range 8 {
		wg.Go(func() {
			nl, taken, err := s.Begin(ctx, in, fmt.Sprintf("p%d", i), ttl)
			var he *invocation.Error
			switch {
			case err == nil && taken:
				mu.Lock()
				won = append(won, nl)
				mu.Unlock()
			case errors.As(err, &he):
			default:
				t.Errorf("Begin of an expired key: %v, taken over %v", err, taken)
			}
		})
	}
	wg.Wait()
	if len(won) != 1 {
		t.Fatalf("%d processes took one key over", len(won))
	}
	in2, _ := s.Inflight(ctx, dlq.InflightFilter{Key: "k"})
	if len(in2) != 1 || in2[0].Lease.Token != won[0].Token || in2[0].Lease.Owner != won[0].Owner {
		t.Errorf("in flight after takeover: %+v, winner %+v", in2, won[0])
	}
	if err := s.Complete(ctx, l, nil); !errors.Is(err, dlq.ErrLeaseLost) {
		t.Errorf("the dead owner's Complete: %v", err)
	}
}

func beginOnce(t *testing.T, s dlq.Backend) {
	ctx := t.Context()
	var wg sync.WaitGroup
	var mu sync.Mutex
	began, held := 0, 0
	for i := range 8 {
		wg.Go(func() {
			_, _, err := s.Begin(ctx, &dlq.Inflight{IdempotencyKey: "k", Workflow: "w"}, fmt.Sprintf("p%d", i), ttl)
			mu.Lock()
			defer mu.Unlock()
			var he *invocation.Error
			switch {
			case err == nil:
				began++
			case errors.As(err, &he):
				held++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if began != 1 || held != 7 {
		t.Errorf("8 owners began one key: %d began, %d found it held", began, held)
	}
}

func claims(t *testing.T, s dlq.Backend) {
	c, ok := s.(dlq.Claimer)
	if !ok {
		t.Skip("not a Claimer")
	}
	ctx := t.Context()
	id, err := s.Put(ctx, &dlq.Entry{Workflow: "w", IdempotencyKey: "k", Reason: "exhausted"})
	must(t, err)
	var wg sync.WaitGroup
	var got sync.Map
	for i := range 8 {
		wg.Go(func() {
			ok, err := c.Claim(ctx, id, fmt.Sprintf("p%d", i), ttl)
			if err != nil {
				t.Error(err)
			}
			if ok {
				got.Store(i, true)
			}
		})
	}
	wg.Wait()
	n, winner := 0, -1
	got.Range(func(k, _ any) bool { n++; winner = k.(int); return true })
	if n != 1 {
		t.Fatalf("%d replays claimed one entry", n)
	}
	must(t, c.Release(ctx, id, fmt.Sprintf("p%d", winner)))
	if ok, err := c.Claim(ctx, id, "later", ttl); !ok || err != nil {
		t.Errorf("claim after release: %v %v", ok, err)
	}
}

func tokensGrow(t *testing.T, s dlq.Backend) {
	ctx := t.Context()
	var last int64
	for i := range 20 {
		l, _, err := s.Begin(ctx, &dlq.Inflight{IdempotencyKey: fmt.Sprint("k", i%3), Workflow: "w"}, fmt.Sprint("p", i), 0)
		must(t, err)
		if l.Token <= last {
			t.Fatalf("token %d after %d", l.Token, last)
		}
		last = l.Token
	}
}

// twoHandles: two processes on one store see each other's leases,
// results and claims.
func twoHandles(t *testing.T, a, b dlq.Backend) {
	ctx := t.Context()
	l, _, err := a.Begin(ctx, &dlq.Inflight{IdempotencyKey: "k", Workflow: "w"}, "pa", ttl)
	must(t, err)
	var he *invocation.Error
	if _, _, err := b.Begin(ctx, &dlq.Inflight{IdempotencyKey: "k", Workflow: "w"}, "pb", ttl); !errors.As(err, &he) {
		t.Fatalf("the other process's Begin: %v", err)
	}
	must(t, a.Complete(ctx, l, json.RawMessage(`{"ok":true}`)))
	if r, ok, err := b.Completed(ctx, "k"); !ok || err != nil || string(r) != `{"ok":true}` {
		t.Errorf("the other process reads the result: %s %v %v", r, ok, err)
	}
}

// Bench measures journaled invocations (Begin then Complete, the store's
// share of every call with the dead-letter queue on) on backends open
// makes: one caller at a time, and 8 callers at once (a process's batch,
// or several processes on one server store). Both report invocations/s.
func Bench(b *testing.B, open func(b *testing.B) dlq.Backend) {
	params := json.RawMessage(`{"email":"user@example.com","plan":"premium"}`)
	for _, callers := range []int{1, 8} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			s := open(b)
			defer s.Close()
			var next atomic.Int64
			b.SetParallelism(callers)
			if callers == 1 {
				for b.Loop() {
					journalOne(b, s, next.Add(1), params)
				}
			} else {
				// RunParallel runs GOMAXPROCS*parallelism goroutines.
				b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						journalOne(b, s, next.Add(1), params)
					}
				})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "invocations/s")
		})
	}
}

func journalOne(b *testing.B, s dlq.Backend, i int64, params json.RawMessage) {
	ctx := b.Context()
	l, _, err := s.Begin(ctx, &dlq.Inflight{IdempotencyKey: fmt.Sprint("k", i), Workflow: "w", Params: params}, "bench", time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Complete(ctx, l, params); err != nil {
		b.Fatal(err)
	}
}

func purge(t *testing.T, s dlq.Backend) {
	p, ok := s.(dlq.Purger)
	if !ok {
		t.Fatal("the store cannot purge (dlq.Purger)")
	}
	ctx := t.Context()
	for i := range 5 {
		wf := "a"
		if i%2 == 1 {
			wf = "b"
		}
		if _, err := s.Put(ctx, &dlq.Entry{Workflow: wf, IdempotencyKey: fmt.Sprint("p", i), Reason: "exhausted"}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := p.Purge(ctx, dlq.Filter{Workflow: "a", Limit: 2}); err != nil || n != 2 {
		t.Fatalf("Purge(workflow a, limit 2) = %d, %v; want 2", n, err)
	}
	if n, err := p.Purge(ctx, dlq.Filter{Workflow: "b"}); err != nil || n != 2 {
		t.Fatalf("Purge(workflow b) = %d, %v; want 2", n, err)
	}
	left, err := s.List(ctx, dlq.Filter{})
	if err != nil || len(left) != 1 || left[0].IdempotencyKey != "p4" {
		t.Fatalf("left %v, %v; want the newest of a (p4)", left, err)
	}
	if n, err := p.Purge(ctx, dlq.Filter{}); err != nil || n != 1 {
		t.Fatalf("Purge(all) = %d, %v", n, err)
	}
}
