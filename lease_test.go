package invoker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// sharedStoreManager is a manager of one "process" on the SQLite file at
// db, with the default store settings unless extra says otherwise.
func sharedStoreManager(t *testing.T, db string, tr invocation.Transport, extra string) *invoker.Manager {
	t.Helper()
	cfg := parseConfig(t, fmt.Sprintf("n8n: {base_url: 'http://n8n.test'}\nworkflows: {w: {path: w}}\ndlq: {enabled: true}\nstore: {path: %q%s}\n", db, extra))
	m, err := invoker.New(cfg, invoker.WithTransport(tr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func slowOK(d time.Duration, attempts *atomic.Int64) invocation.TransportFunc {
	return func(ctx context.Context, a *invocation.Attempt) (*invocation.Result, error) {
		attempts.Add(1)
		if err := invocation.Sleep(ctx, d); err != nil {
			return nil, err
		}
		return &invocation.Result{Workflow: a.Request.Workflow, StatusCode: 200, Output: []byte(`{"ok":true}`), Completed: true}, nil
	}
}

// TestOneKeyTwoProcesses: two managers on one store (two processes)
// submit one key at once: n8n gets it once, and the second gets the
// first's result.
func TestOneKeyTwoProcesses(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "dlq.db")
	var attempts atomic.Int64
	a := sharedStoreManager(t, db, slowOK(300*time.Millisecond, &attempts), "")
	b := sharedStoreManager(t, db, slowOK(300*time.Millisecond, &attempts), "")
	var wg sync.WaitGroup
	results := make([]*invocation.Result, 2)
	errs := make([]error, 2)
	for i, m := range []*invoker.Manager{a, b} {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 50 * time.Millisecond)
			results[i], errs[i] = m.Execute(t.Context(), &invocation.Request{Workflow: "w", IdempotencyKey: "order-1", Params: map[string]any{"id": 1}})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("process %d: %v", i, err)
		}
	}
	if n := attempts.Load(); n != 1 {
		t.Errorf("n8n got the key %d times", n)
	}
	if results[0].Deduplicated || !results[1].Deduplicated || string(results[1].Output) != `{"ok":true}` {
		t.Errorf("results: first deduplicated %v, second deduplicated %v (%s)", results[0].Deduplicated, results[1].Deduplicated, results[1].Output)
	}
}

// TestHeldKeyWaitIsBounded: a key another live process holds is waited
// for within store.held_wait, then an error of code key-held, nothing sent.
func TestHeldKeyWaitIsBounded(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "dlq.db")
	var attempts atomic.Int64
	m := sharedStoreManager(t, db, slowOK(0, &attempts), ", held_wait: 300ms")
	store := m.DLQ()
	if _, _, err := store.Begin(t.Context(), &dlq.Inflight{IdempotencyKey: "k", Workflow: "w"}, "elsewhere/ns:1/x", time.Minute); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := m.Execute(t.Context(), &invocation.Request{Workflow: "w", IdempotencyKey: "k"})
	var he *invocation.Error
	if !errors.As(err, &he) || he.Code != invocation.CodeKeyHeld || he.Owner != "elsewhere/ns:1/x" || invocation.OutcomeOf(err) != invocation.NotSent {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Errorf("waited %s", d)
	}
	if attempts.Load() != 0 {
		t.Error("a held key was sent")
	}
	// The other process ends it with a success meanwhile: its result.
	l, _, err := store.Begin(t.Context(), &dlq.Inflight{IdempotencyKey: "k2", Workflow: "w"}, "elsewhere/ns:1/x", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(100*time.Millisecond, func() {
		_ = store.Complete(context.Background(), l, json.RawMessage(`{"workflow":"w","output":{"from":"elsewhere"}}`))
	})
	res, err := m.Execute(t.Context(), &invocation.Request{Workflow: "w", IdempotencyKey: "k2"})
	if err != nil || !res.Deduplicated || string(res.Output) != `{"from":"elsewhere"}` || attempts.Load() != 0 {
		t.Fatalf("the other process's result: %+v %v", res, err)
	}
}

// TestRescueTakesOverAnExpiredLease: an invocation a process on another
// machine left in flight is taken over once its lease expires. Without an
// API key it cannot be reconciled: by default it is not sent (an
// ambiguous dead letter); with retry_ambiguous it is.
func TestRescueTakesOverAnExpiredLease(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		extra        string
		wantAttempts int64
		wantReason   string
	}{
		{"default", "", 0, "ambiguous"},
		{"retry_ambiguous", "\ninvokers: {http: {retry_ambiguous: true}}", 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := filepath.Join(t.TempDir(), "dlq.db")
			var attempts atomic.Int64
			cfg := parseConfig(t, fmt.Sprintf("n8n: {base_url: 'http://n8n.test'}\nworkflows: {w: {path: w}}\ndlq: {enabled: true}\nstore: {path: %q}%s\n", db, tc.extra))
			m, err := invoker.New(cfg, invoker.WithTransport(slowOK(0, &attempts)))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
			if _, _, err := m.DLQ().Begin(t.Context(), &dlq.Inflight{IdempotencyKey: "k", Workflow: "w", Params: json.RawMessage(`{"id":7}`)},
				"elsewhere/ns:1/x", 50*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			rep, err := m.Rescue(t.Context())
			if err != nil || rep.Found != 0 {
				t.Fatalf("a live lease was rescued: %+v %v", rep, err)
			}
			time.Sleep(100 * time.Millisecond)
			rep, err = m.Rescue(t.Context())
			if err != nil || rep.Found != 1 {
				t.Fatalf("rescue: %+v %v", rep, err)
			}
			if attempts.Load() != tc.wantAttempts {
				t.Errorf("%d attempts, want %d", attempts.Load(), tc.wantAttempts)
			}
			dead, _ := m.DLQ().List(t.Context(), dlq.Filter{Key: "k"})
			switch {
			case tc.wantReason == "" && (len(dead) != 0 || rep.Succeeded != 1):
				t.Errorf("report %+v, dead letters %+v", rep, dead)
			case tc.wantReason != "" && (len(dead) != 1 || dead[0].Reason != tc.wantReason || string(dead[0].Params) != `{"id":7}` || rep.Failed != 1):
				t.Errorf("report %+v, dead letters %+v", rep, dead)
			}
			if in, _ := m.DLQ().Inflight(t.Context(), dlq.InflightFilter{}); len(in) != 0 {
				t.Errorf("still in flight: %+v", in)
			}
		})
	}
}

// TestLostLeaseDoesNotOverwrite: while a call runs, another process takes
// its key over and records its own outcome; the first call's success is
// returned to its caller but does not replace the new owner's record.
func TestLostLeaseDoesNotOverwrite(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "dlq.db")
	release := make(chan struct{})
	tr := invocation.TransportFunc(func(ctx context.Context, a *invocation.Attempt) (*invocation.Result, error) {
		<-release
		return &invocation.Result{Workflow: "w", StatusCode: 200, Output: []byte(`{"from":"paused"}`), Completed: true}, nil
	})
	m := sharedStoreManager(t, db, tr, "")
	done := make(chan error, 1)
	go func() {
		_, err := m.Execute(context.Background(), &invocation.Request{Workflow: "w", IdempotencyKey: "k"})
		done <- err
	}()
	store := m.DLQ()
	var in []*dlq.Inflight
	for range 100 {
		if in, _ = store.Inflight(t.Context(), dlq.InflightFilter{Key: "k"}); len(in) == 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(in) != 1 {
		t.Fatal("the call was not written ahead")
	}
	// Another process decides the paused one is gone and takes over.
	l, taken, err := store.Begin(t.Context(), &dlq.Inflight{IdempotencyKey: "k", Workflow: "w", Replaces: in[0].Lease.Owner}, "new-owner", time.Minute)
	if err != nil || !taken {
		t.Fatalf("takeover: %v %v", taken, err)
	}
	if err := store.Complete(t.Context(), l, json.RawMessage(`{"workflow":"w","output":{"from":"new"}}`)); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the paused call: %v", err)
	}
	raw, ok, _ := store.Completed(t.Context(), "k")
	var rec invocation.Result
	_ = json.Unmarshal(raw, &rec)
	if !ok || string(rec.Output) != `{"from":"new"}` {
		t.Errorf("the record after the paused call ended: %s", raw)
	}
}

// TestTakeOverNeverSendsBlind: a key taken over from a dead process is
// reconciled with n8n first; when n8n's API cannot even say which
// workflow it is (down, 503), nothing is sent and the key ends in a
// typed, unresolved state (a dead letter) instead of a guess.
func TestTakeOverNeverSendsBlind(t *testing.T) {
	t.Parallel()
	var apiCalls atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apiCalls.Add(1)
		http.Error(w, `{"message":"down"}`, http.StatusServiceUnavailable)
	}))
	defer api.Close()
	db := filepath.Join(t.TempDir(), "dlq.db")
	var attempts atomic.Int64
	cfg := parseConfig(t, fmt.Sprintf("n8n: {base_url: %q, api_key: k}\nworkflows: {w: {path: w}}\ndlq: {enabled: true}\nstore: {path: %q}\n", api.URL, db))
	m, err := invoker.New(cfg, invoker.WithTransport(slowOK(0, &attempts)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	if _, _, err := m.DLQ().Begin(t.Context(), &dlq.Inflight{IdempotencyKey: "k", Workflow: "w"}, "elsewhere/ns:1/x", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	rep, err := m.Rescue(t.Context())
	if err != nil || rep.Found != 1 {
		t.Fatalf("rescue: %+v %v", rep, err)
	}
	if attempts.Load() != 0 {
		t.Errorf("sent %d times without reconciling", attempts.Load())
	}
	if apiCalls.Load() < 3 {
		t.Errorf("the workflow lookup was tried %d times, want 3", apiCalls.Load())
	}
	dead, _ := m.DLQ().List(t.Context(), dlq.Filter{Key: "k"})
	if len(dead) != 1 || rep.Failed != 1 {
		t.Fatalf("report %+v, dead letters %+v", rep, dead)
	}
	if !strings.Contains(dead[0].LastError.Message, "cannot look up its executions") {
		t.Errorf("dead letter says %q", dead[0].LastError.Message)
	}
}

// TestLeaseLostBeforeResend: a process whose key another process took
// over while it reconciled a lost answer does not send it again (the
// fence before a re-send): it returns the new owner's result, or, when
// none comes within store.held_wait, a typed error of code lease-lost; n8n got
// one attempt either way and no dead letter is stored.
func TestLeaseLostBeforeResend(t *testing.T) {
	t.Parallel()
	for _, completes := range []bool{true, false} {
		t.Run(fmt.Sprintf("new owner completes %v", completes), func(t *testing.T) {
			t.Parallel()
			db := filepath.Join(t.TempDir(), "dlq.db")
			var m *invoker.Manager
			var once sync.Once
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// While this process reconciles, another one takes the key over.
				once.Do(func() {
					store := m.DLQ()
					in, _ := store.Inflight(context.Background(), dlq.InflightFilter{Key: "k"})
					if len(in) != 1 {
						t.Error("the call is not in flight")
						return
					}
					l, _, err := store.Begin(context.Background(), &dlq.Inflight{IdempotencyKey: "k", Workflow: "w", Replaces: in[0].Lease.Owner}, "new-owner", time.Minute)
					if err != nil {
						t.Error(err)
						return
					}
					if completes {
						_ = store.Complete(context.Background(), l, json.RawMessage(`{"workflow":"w","output":{"from":"new"}}`))
					}
				})
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"data":[],"nextCursor":null}`))
			}))
			defer api.Close()
			var attempts atomic.Int64
			tr := invocation.TransportFunc(func(ctx context.Context, a *invocation.Attempt) (*invocation.Result, error) {
				attempts.Add(1)
				return nil, &invocation.TransportError{Workflow: "w", ErrClass: invocation.Transient, TimedOut: true, Sent: true, Err: errors.New("answer lost")}
			})
			cfg := parseConfig(t, fmt.Sprintf("n8n: {base_url: %q, api_key: k}\nworkflows: {w: {path: w, id: wf1}}\ndlq: {enabled: true}\nstore: {path: %q, held_wait: 1s}\n", api.URL, db))
			var err error
			if m, err = invoker.New(cfg, invoker.WithTransport(tr)); err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
			res, err := m.Execute(t.Context(), &invocation.Request{Workflow: "w", IdempotencyKey: "k"})
			if attempts.Load() != 1 {
				t.Errorf("n8n got %d attempts, want 1 (no re-send after the lease was lost)", attempts.Load())
			}
			switch {
			case completes && (err != nil || string(res.Output) != `{"from":"new"}`):
				t.Errorf("got %v, %v; want the new owner's result", res, err)
			case !completes && invocation.CodeOf(err) != invocation.CodeLeaseLost:
				t.Errorf("got %v, %v; want code lease-lost", res, err)
			case !completes && (!errors.Is(err, dlq.ErrLeaseLost) || invocation.ClassOf(err) != invocation.Transient):
				t.Errorf("%v: want Is(dlq.ErrLeaseLost), transient", err)
			}
			if dead, _ := m.DLQ().List(t.Context(), dlq.Filter{}); len(dead) != 0 {
				t.Errorf("dead letters: %+v", dead)
			}
		})
	}
}
