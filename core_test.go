package invoker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/hooks"
	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// TestOneSenderPerKeyInAProcess: two dead letters of one key replayed at
// once by one process, and a replay overlapping a live call of the key,
// send the key once (issue 25, point 1: Begin hands a live lease to its
// own owner and replays skip the in-process dedupe).
func TestOneSenderPerKeyInAProcess(t *testing.T) {
	t.Parallel()
	for _, overlap := range []string{"two replays", "a replay and a call"} {
		t.Run(overlap, func(t *testing.T) {
			t.Parallel()
			var sends atomic.Int64
			release := make(chan struct{})
			f := &fakeInvoker{fn: func(ctx context.Context, req *invocation.Request) (*invocation.Result, error) {
				sends.Add(1)
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				return okResult(ctx, req)
			}}
			// n8n's API knows no execution of the key: a takeover's
			// reconcile says "not run".
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"data":[],"nextCursor":null}`))
			}))
			defer api.Close()
			cfg := parseConfig(t, fmt.Sprintf("n8n: {base_url: %q, api_key: k}\nworkflows: {w: {path: w, id: wf1}}\ndlq: {enabled: true}\nstore: {path: %q}\n",
				api.URL, filepath.Join(t.TempDir(), "dlq.db")))
			m, err := invoker.New(cfg, invoker.WithTransport(f))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
			store := m.DLQ()
			ctx := t.Context()
			for range 2 {
				if _, err := store.Put(ctx, &dlq.Entry{Workflow: "w", IdempotencyKey: "k", Params: json.RawMessage(`{}`), Reason: dlq.ReasonExhausted}); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan error, 2)
			if overlap == "two replays" {
				go func() {
					_, err := m.ReplayDeadLetters(ctx, dlq.Filter{Key: "k"}, invoker.ReplayConcurrency(2))
					done <- err
					done <- nil
				}()
			} else {
				go func() { _, err := m.Execute(ctx, &invocation.Request{Workflow: "w", IdempotencyKey: "k"}); done <- err }()
				waitFor(t, func() bool { return sends.Load() == 1 })
				go func() {
					_, err := m.ReplayDeadLetters(ctx, dlq.Filter{Key: "k"}, invoker.ReplayConcurrency(2))
					done <- err
				}()
			}
			waitFor(t, func() bool { return sends.Load() >= 1 })
			time.Sleep(200 * time.Millisecond) // a second sender, if any, gets its chance
			close(release)
			for range 2 {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			if n := sends.Load(); n != 1 {
				t.Errorf("the key was sent %d times, want 1", n)
			}
		})
	}
}

// TestResubmittedAmbiguousKeyIsNotSentAgain: a key whose call was
// dead-lettered as ambiguous (sent, answer lost, no API key) is not sent
// again when the same call comes with the same key (issue 25: it ran
// twice); it ends with code ambiguous and the dead letter's id.
func TestResubmittedAmbiguousKeyIsNotSentAgain(t *testing.T) {
	t.Parallel()
	var sends atomic.Int64
	f := &fakeInvoker{fn: func(ctx context.Context, req *invocation.Request) (*invocation.Result, error) {
		sends.Add(1)
		return nil, &invocation.TransportError{Workflow: req.Workflow, ErrClass: invocation.Transient, TimedOut: true, Sent: true, Err: errors.New("answer lost")}
	}}
	m, _ := dlqManager(t, f, "transient", "unknown")
	ctx := t.Context()
	_, err := m.Execute(ctx, &invocation.Request{Workflow: "w", Params: map[string]any{"a": 1}, IdempotencyKey: "k"})
	first := invocation.DeadLetterOf(err)
	if invocation.CodeOf(err) != invocation.CodeAmbiguous || first == 0 || sends.Load() != 1 {
		t.Fatalf("first call: %v (sends %d)", err, sends.Load())
	}
	_, err = m.Execute(ctx, &invocation.Request{Workflow: "w", Params: map[string]any{"a": 1}, IdempotencyKey: "k"})
	if invocation.CodeOf(err) != invocation.CodeAmbiguous || invocation.DeadLetterOf(err) != first || invocation.OutcomeOf(err) != invocation.Ambiguous {
		t.Errorf("the same call again: %v", err)
	}
	if n := sends.Load(); n != 1 {
		t.Errorf("the key was sent %d times, want 1", n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFenceBeforeTheFirstSend: a call whose key another process took over
// before its first attempt (while a pre-execution hook held it past two
// thirds of the lease) does not send at all: the fence before the
// transport finds its lease lost (issue 25, point 2: the fence ran only
// after a reconcile).
func TestFenceBeforeTheFirstSend(t *testing.T) {
	t.Parallel()
	var sends atomic.Int64
	f := &fakeInvoker{fn: func(ctx context.Context, req *invocation.Request) (*invocation.Result, error) {
		sends.Add(1)
		return okResult(ctx, req)
	}}
	cfg := parseConfig(t, fmt.Sprintf("n8n: {base_url: 'http://127.0.0.1:1'}\nworkflows: {w: {path: w}}\ndlq: {enabled: true}\nstore: {path: %q, lease: 1s, held_wait: 1s}\n",
		filepath.Join(t.TempDir(), "dlq.db")))
	m, err := invoker.New(cfg, invoker.WithTransport(f))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	store := m.DLQ()
	// The pre-execution hook runs after the write-ahead: while it holds
	// the call, another process takes the key over.
	_ = m.RegisterHook(hooks.StagePreExecution, hooks.Func(func(ctx context.Context, ec *hooks.ExecutionContext) error {
		in, _ := store.Inflight(ctx, dlq.InflightFilter{Key: "k"})
		if len(in) != 1 {
			return errors.New("the call is not in flight")
		}
		if _, _, err := store.Begin(ctx, &dlq.Inflight{IdempotencyKey: "k", Workflow: "w", Replaces: in[0].Lease.Owner}, "other", time.Minute); err != nil {
			return err
		}
		time.Sleep(800 * time.Millisecond) // past two thirds of the lease: the process was paused
		return nil
	}))
	_, err = m.Execute(t.Context(), &invocation.Request{Workflow: "w", IdempotencyKey: "k"})
	if invocation.CodeOf(err) != invocation.CodeLeaseLost || !errors.Is(err, dlq.ErrLeaseLost) {
		t.Errorf("err = %v, want code lease-lost", err)
	}
	if n := sends.Load(); n != 0 {
		t.Errorf("sent %d times after the lease was lost, want 0", n)
	}
}

// TestCanceledWhileWaitingLeavesNothingInFlight: a call canceled while it
// waits before sending (a backoff, a Retry-After, the rate limiter, an
// open breaker, a bulkhead slot) ends as canceled with nothing in flight
// in the journal and no dead letter: no rescue sends it later (issue 25,
// point 8).
func TestCanceledWhileWaitingLeavesNothingInFlight(t *testing.T) {
	t.Parallel()
	refused := func(req *invocation.Request) error {
		return &invocation.TransportError{Workflow: req.Workflow, ErrClass: invocation.Transient, Err: errors.New("connection refused")}
	}
	tests := []struct {
		name string
		http string // invokers.http settings
		// warm runs before the call that is canceled (to fill the
		// limiter, open the breaker, take the bulkhead's slot).
		warm   func(t *testing.T, m *invoker.Manager)
		answer func(req *invocation.Request, n int64) (*invocation.Result, error)
	}{
		{"backoff", "{max_retries: 3, backoff_factor: 30}", nil, func(req *invocation.Request, _ int64) (*invocation.Result, error) {
			return nil, &invocation.HTTPError{Workflow: req.Workflow, StatusCode: 503, ErrClass: invocation.Transient}
		}},
		{"retry-after", "{max_retries: 3}", nil, func(req *invocation.Request, _ int64) (*invocation.Result, error) {
			return nil, &invocation.HTTPError{Workflow: req.Workflow, StatusCode: 429, ErrClass: invocation.Transient, RetryAfter: 50 * time.Second, HasRetryAfter: true}
		}},
		{"rate limiter", "{rate_limit: {enabled: true, requests_per_second: 0.01, burst: 1}}", func(t *testing.T, m *invoker.Manager) {
			if _, err := m.Execute(t.Context(), &invocation.Request{Workflow: "w", IdempotencyKey: "warm"}); err != nil {
				t.Fatal(err)
			}
		}, func(req *invocation.Request, _ int64) (*invocation.Result, error) {
			return okResult(context.Background(), req)
		}},
		{"open breaker", "{max_retries: 0, circuit_breaker: {consecutive_failures: 2}}", func(t *testing.T, m *invoker.Manager) {
			for i := range 2 {
				_, _ = m.Execute(t.Context(), &invocation.Request{Workflow: "w", IdempotencyKey: fmt.Sprintf("warm-%d", i)})
			}
		}, func(req *invocation.Request, _ int64) (*invocation.Result, error) { return nil, refused(req) }},
		{"bulkhead", "{bulkhead: {max_in_flight: 1}}", func(t *testing.T, m *invoker.Manager) {
			go func() {
				_, _ = m.Execute(context.Background(), &invocation.Request{Workflow: "w", IdempotencyKey: "holder"})
			}()
			waitFor(t, func() bool {
				in, _ := m.DLQ().Inflight(context.Background(), dlq.InflightFilter{Key: "holder"})
				return len(in) == 1
			})
		}, func(req *invocation.Request, _ int64) (*invocation.Result, error) {
			if req.IdempotencyKey == "holder" {
				time.Sleep(1500 * time.Millisecond) // holds the only slot
			}
			return okResult(context.Background(), req)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var n atomic.Int64
			f := &fakeInvoker{fn: func(ctx context.Context, req *invocation.Request) (*invocation.Result, error) {
				return tt.answer(req, n.Add(1))
			}}
			cfg := parseConfig(t, fmt.Sprintf("n8n: {base_url: 'http://127.0.0.1:1'}\ninvokers: {http: %s}\nworkflows: {w: {path: w}}\ndlq: {enabled: true, on: [transient, unknown, permanent]}\nstore: {path: %q}\n",
				tt.http, filepath.Join(t.TempDir(), "dlq.db")))
			m, err := invoker.New(cfg, invoker.WithTransport(f))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
			if tt.warm != nil {
				tt.warm(t, m)
			}
			// A cancel, not a deadline: an open breaker refuses at once a
			// call whose deadline ends before it would let one through.
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			time.AfterFunc(600*time.Millisecond, cancel)
			_, err = m.Execute(ctx, &invocation.Request{Workflow: "w", IdempotencyKey: "k"})
			if !invocation.IsCanceled(err) || invocation.OutcomeOf(err) != invocation.NotSent || invocation.DeadLetterOf(err) != 0 {
				t.Errorf("err = %v (code %s, outcome %s), want canceled, not sent", err, invocation.CodeOf(err), invocation.OutcomeOf(err))
			}
			if in, err := m.DLQ().Inflight(context.Background(), dlq.InflightFilter{Key: "k"}); err != nil || len(in) != 0 {
				t.Errorf("in flight after the cancel: %d, %v", len(in), err)
			}
			if es, _ := m.DLQ().List(context.Background(), dlq.Filter{Key: "k"}); len(es) != 0 {
				t.Errorf("dead-lettered: %+v", es[0])
			}
		})
	}
}

// evidenceHook is a post-execution hook that destroys evidence (as the
// cleanup_hook deletes n8n's execution): it records whether the call's
// success was already recorded when it ran.
type evidenceHook struct {
	hooks.Base
	m        **invoker.Manager
	ran      atomic.Int64
	recorded atomic.Bool
}

func (h *evidenceHook) AfterCommit() {}

func (h *evidenceHook) PostExecution(ctx context.Context, ec *hooks.ExecutionContext) {
	h.ran.Add(1)
	_, ok, _ := (*h.m).DLQ().Completed(ctx, ec.IdempotencyKey)
	h.recorded.Store(ok)
}

// TestEvidenceDestroyedOnlyAfterTheCommit: the cleanup_hook (any
// post-execution hook marked hooks.AfterCommit) runs after the journal
// recorded the success, and not at all when that write fails (issue 25,
// point 4: it deleted the execution first, and a failed write or a crash
// then made the rescue find nothing and re-send).
func TestEvidenceDestroyedOnlyAfterTheCommit(t *testing.T) {
	t.Parallel()
	for _, lose := range []bool{false, true} {
		t.Run(fmt.Sprintf("lease lost %v", lose), func(t *testing.T) {
			t.Parallel()
			var m *invoker.Manager
			f := &fakeInvoker{fn: func(ctx context.Context, req *invocation.Request) (*invocation.Result, error) {
				if lose { // another process takes the key over while n8n runs it
					in, _ := m.DLQ().Inflight(ctx, dlq.InflightFilter{Key: req.IdempotencyKey})
					if _, _, err := m.DLQ().Begin(ctx, &dlq.Inflight{IdempotencyKey: req.IdempotencyKey, Workflow: "w", Replaces: in[0].Lease.Owner}, "other", time.Minute); err != nil {
						return nil, err
					}
				}
				res, err := okResult(ctx, req)
				res.ExecutionID, res.Completed = "7", true
				return res, err
			}}
			cfg := parseConfig(t, fmt.Sprintf("n8n: {base_url: 'http://127.0.0.1:1'}\nworkflows: {w: {path: w}}\ndlq: {enabled: true}\nstore: {path: %q}\n",
				filepath.Join(t.TempDir(), "dlq.db")))
			var err error
			if m, err = invoker.New(cfg, invoker.WithTransport(f)); err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
			h := &evidenceHook{m: &m}
			_ = m.RegisterHook(hooks.StagePostExecution, h)
			if _, err := m.Execute(t.Context(), &invocation.Request{Workflow: "w", IdempotencyKey: "k"}); err != nil {
				t.Fatal(err)
			}
			switch {
			case !lose && (h.ran.Load() != 1 || !h.recorded.Load()):
				t.Errorf("ran %d times, success recorded first: %v", h.ran.Load(), h.recorded.Load())
			case lose && h.ran.Load() != 0:
				t.Errorf("ran %d times although the success was not recorded here", h.ran.Load())
			}
		})
	}
}

// TestReplayWithoutAPISkipsWhatMayHaveRun: without n8n's API a replay
// skips the entries the system itself dead-lettered as ambiguous or
// unresolved (they may have run; nothing can tell), unless asked with
// ReplayAmbiguous (issue 25, point 13: they were re-sent with no skip).
func TestReplayWithoutAPISkipsWhatMayHaveRun(t *testing.T) {
	t.Parallel()
	for _, ask := range []bool{false, true} {
		t.Run(fmt.Sprintf("ReplayAmbiguous %v", ask), func(t *testing.T) {
			t.Parallel()
			var sends atomic.Int64
			f := &fakeInvoker{fn: func(ctx context.Context, req *invocation.Request) (*invocation.Result, error) {
				sends.Add(1)
				return okResult(ctx, req)
			}}
			m, store := dlqManager(t, f)
			ctx := t.Context()
			for i, reason := range []string{dlq.ReasonAmbiguous, dlq.ReasonUnresolved, dlq.ReasonExhausted} {
				if _, err := store.Put(ctx, &dlq.Entry{Workflow: "w", IdempotencyKey: fmt.Sprintf("k%d", i), Reason: reason}); err != nil {
					t.Fatal(err)
				}
			}
			var opts []invoker.ReplayOption
			if ask {
				opts = append(opts, invoker.ReplayAmbiguous())
			}
			rep, err := m.ReplayDeadLetters(ctx, dlq.Filter{}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			want := int64(1)
			if ask {
				want = 3
			}
			if sends.Load() != want || rep.Skipped != int(3-want) {
				t.Errorf("sent %d, skipped %d; want %d sent", sends.Load(), rep.Skipped, want)
			}
		})
	}
}

// TestKeyReusedAfterSuccessWithOtherParameters: a key that succeeded is
// a conflict for a call with other parameters (it returned the first
// call's result), and the same call again returns the recorded result
// (issue 25, point 11).
func TestKeyReusedAfterSuccessWithOtherParameters(t *testing.T) {
	t.Parallel()
	var sends atomic.Int64
	f := &fakeInvoker{fn: func(ctx context.Context, req *invocation.Request) (*invocation.Result, error) {
		sends.Add(1)
		return okResult(ctx, req)
	}}
	m, _ := dlqManager(t, f)
	ctx := t.Context()
	call := func(params map[string]any, path map[string]string) (*invocation.Result, error) {
		return m.Execute(ctx, &invocation.Request{Workflow: "w", Params: params, PathParams: path, IdempotencyKey: "k"})
	}
	if _, err := call(map[string]any{"a": 1, "b": 2}, nil); err != nil {
		t.Fatal(err)
	}
	if res, err := call(map[string]any{"b": 2, "a": 1}, nil); err != nil || !res.Deduplicated {
		t.Errorf("the same call again: %+v, %v", res, err)
	}
	for name, p := range map[string]map[string]any{"other parameters": {"a": 2, "b": 2}, "no parameters": nil} {
		if _, err := call(p, nil); invocation.CodeOf(err) != invocation.CodeKeyConflict || !errors.Is(err, invocation.ErrKeyConflict) {
			t.Errorf("%s: %v, want a key conflict", name, err)
		}
	}
	if n := sends.Load(); n != 1 {
		t.Errorf("sent %d times, want 1", n)
	}
}

// TestPathParametersSurviveTheJournal: a :name webhook's call left in
// flight is rescued, and its dead letter replayed, with its path
// parameters (issue 25, point 7: they were not journaled, so every rescue
// failed and such dead letters could never be replayed).
func TestPathParametersSurviveTheJournal(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []map[string]string
	f := &fakeInvoker{fn: func(ctx context.Context, req *invocation.Request) (*invocation.Result, error) {
		mu.Lock()
		seen = append(seen, req.PathParams)
		mu.Unlock()
		return okResult(ctx, req)
	}}
	cfg := parseConfig(t, fmt.Sprintf("n8n: {base_url: 'http://127.0.0.1:1'}\nworkflows: {o: {path: 'orders/:id', webhook_id: 'wh'}}\ndlq: {enabled: true}\nstore: {path: %q, rescue_every: -1s}\ninvokers: {http: {retry_ambiguous: true}}\n",
		filepath.Join(t.TempDir(), "dlq.db")))
	m, err := invoker.New(cfg, invoker.WithTransport(f))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	ctx := t.Context()
	store := m.DLQ()
	// In flight under a lease that ends at once (its process died).
	if _, _, err := store.Begin(ctx, &dlq.Inflight{IdempotencyKey: "left", Workflow: "o", Params: json.RawMessage(`{}`),
		PathParams: map[string]string{"id": "7"}}, "gone", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Put(ctx, &dlq.Entry{Workflow: "o", IdempotencyKey: "dead", Params: json.RawMessage(`{}`),
		PathParams: map[string]string{"id": "8"}, Reason: dlq.ReasonExhausted}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // the lease has ended
	rep, err := m.Rescue(ctx)
	if err != nil || rep.Succeeded != 1 {
		t.Fatalf("rescue: %+v, %v", rep, err)
	}
	if rr, err := m.ReplayDeadLetters(ctx, dlq.Filter{Key: "dead"}); err != nil || rr.Succeeded != 1 {
		t.Fatalf("replay: %+v, %v", rr, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0]["id"] != "7" || seen[1]["id"] != "8" {
		t.Errorf("sent with path parameters %v", seen)
	}
}

// TestAKeyThatRanAndFailedIsNotRunAgain: a call n8n ran and that failed
// ("Error in workflow") is recorded with its key by the journal's
// terminal write (or its dead letter, reason failed): the same key again
// (an outbox re-delivery after a crash between the journal's end and the
// submission's status, a re-submission) returns that failure and is not
// sent; a replay asked to run it again (ReplayFailed) is (issue 25,
// point 3).
func TestAKeyThatRanAndFailedIsNotRunAgain(t *testing.T) {
	t.Parallel()
	for _, on := range [][]string{nil, {"transient", "unknown", "permanent"}} {
		t.Run(fmt.Sprintf("dlq.on %v", on), func(t *testing.T) {
			t.Parallel()
			var sends atomic.Int64
			f := &fakeInvoker{fn: func(ctx context.Context, req *invocation.Request) (*invocation.Result, error) {
				sends.Add(1)
				return nil, &invocation.HTTPError{Workflow: req.Workflow, StatusCode: 500, Message: "Error in workflow", WorkflowFailed: true,
					ErrClass: invocation.Permanent, Attempts: 1}
			}}
			m, _ := dlqManager(t, f, on...)
			ctx := t.Context()
			req := &invocation.Request{Workflow: "w", Params: map[string]any{"a": 1}, IdempotencyKey: "k"}
			_, err := m.Execute(ctx, req)
			if invocation.CodeOf(err) != invocation.CodeWorkflowFailed {
				t.Fatalf("first call: %v", err)
			}
			_, err = m.Execute(ctx, req)
			if invocation.CodeOf(err) != invocation.CodeWorkflowFailed || !errors.Is(err, invocation.ErrWorkflowFailed) {
				t.Errorf("the same key again: %v (code %s)", err, invocation.CodeOf(err))
			}
			if n := sends.Load(); n != 1 {
				t.Errorf("sent %d times, want 1", n)
			}
			if on != nil {
				// Its dead letter, replayed with ReplayFailed, runs it again.
				if rep, err := m.ReplayDeadLetters(ctx, dlq.Filter{Key: "k"}, invoker.ReplayFailed()); err != nil || rep.Failed != 1 || sends.Load() != 2 {
					t.Errorf("replay with ReplayFailed: %+v, %v, %d sends", rep, err, sends.Load())
				}
			}
		})
	}
}
