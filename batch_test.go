package invoker_test

import (
	"context"
	"errors"
	"iter"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/policy"
)

func items(n int) []invoker.BatchItem {
	out := make([]invoker.BatchItem, n)
	for i := range out {
		out[i] = invoker.BatchItem{Workflow: "w", Params: map[string]any{"i": i}}
	}
	return out
}

func TestFailFast(t *testing.T) {
	t.Parallel()
	var done sync.WaitGroup // the items before the failing one end first
	done.Add(5)
	f := &fakeInvoker{fn: func(ctx context.Context, req *invocation.Request) (*invocation.Result, error) {
		if i := req.Params["i"].(int); i < 5 {
			defer done.Done()
		}
		if req.Params["i"] == 5 {
			done.Wait()
			return nil, &invocation.HTTPError{StatusCode: 500, WorkflowFailed: true, ErrClass: invocation.Permanent, Attempts: 1, Message: "Error in workflow"}
		}
		if req.Params["i"].(int) > 5 {
			<-ctx.Done() // in flight when the failure happens
			return nil, ctx.Err()
		}
		return okResult(ctx, req)
	}}
	m := newManager(t, f)
	results, err := m.ExecuteBatch(t.Context(), items(100), 4, invoker.WithFailFast())
	if err != nil {
		t.Fatal(err)
	}
	var ok, failed, aborted int
	for _, r := range results {
		switch {
		case r.Err == nil:
			ok++
		case errors.Is(r.Err, invocation.ErrBatchAborted):
			aborted++
			if !invocation.IsCanceled(r.Err) {
				t.Error("an aborted item counts as a failure")
			}
		default:
			failed++
		}
	}
	if ok != 5 || failed != 1 || aborted != 94 {
		t.Errorf("ok %d failed %d aborted %d", ok, failed, aborted)
	}
	if len(f.seen) > 10 {
		t.Errorf("%d items started after the failure", len(f.seen)-6)
	}
}

func TestProgressReportsEveryItem(t *testing.T) {
	t.Parallel()
	f := &fakeInvoker{fn: func(ctx context.Context, req *invocation.Request) (*invocation.Result, error) {
		if req.Params["i"].(int)%4 == 0 {
			return nil, &invocation.HTTPError{StatusCode: 400, ErrClass: invocation.Permanent}
		}
		return okResult(ctx, req)
	}}
	m := newManager(t, f)
	var calls []invoker.Progress
	_, err := m.ExecuteBatch(t.Context(), items(20), 3, invoker.WithProgress(func(p invoker.Progress) { calls = append(calls, p) }))
	if err != nil {
		t.Fatal(err)
	}
	last := calls[len(calls)-1]
	if len(calls) != 20 || last.Succeeded != 15 || last.Failed != 5 || last.InFlight != 0 || last.Total != 20 || last.Done() != 20 {
		t.Errorf("%d calls, last %+v", len(calls), last)
	}
	for i, p := range calls {
		if p.Done() != i+1 || p.InFlight > 3 {
			t.Errorf("call %d: %+v", i, p)
		}
	}
}

func TestExecuteStream(t *testing.T) {
	t.Parallel()
	var created atomic.Int64
	gen := func(n int) iter.Seq[invoker.BatchItem] {
		return func(yield func(invoker.BatchItem) bool) {
			for i := range n {
				created.Add(1)
				if !yield(invoker.BatchItem{Workflow: "w", Params: map[string]any{"i": i}}) {
					return
				}
			}
		}
	}
	f := &fakeInvoker{fn: okResult}
	m := newManager(t, f)
	seq, err := m.ExecuteStream(t.Context(), gen(1000), 8)
	if err != nil {
		t.Fatal(err)
	}
	seen := make([]bool, 1000)
	for r := range seq {
		if r.Err != nil || seen[r.Index] {
			t.Fatalf("result %d: %v (seen %v)", r.Index, r.Err, seen[r.Index])
		}
		seen[r.Index] = true
	}
	for i, s := range seen {
		if !s {
			t.Fatalf("item %d never reported", i)
		}
	}
	// Breaking out stops reading the input.
	created.Store(0)
	seq, _ = m.ExecuteStream(t.Context(), gen(1_000_000), 4)
	n := 0
	for range seq {
		if n++; n == 10 {
			break
		}
	}
	if c := created.Load(); c > 30 {
		t.Errorf("%d items read after the consumer stopped at 10", c)
	}
}

func TestStreamCanceledMarksTheRest(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	var once sync.Once
	f := &fakeInvoker{fn: func(c context.Context, req *invocation.Request) (*invocation.Result, error) {
		if req.Params["i"] == 2 {
			once.Do(cancel)
		}
		return okResult(c, req)
	}}
	m := newManager(t, f)
	seq, _ := m.ExecuteStream(ctx, func(yield func(invoker.BatchItem) bool) {
		for _, it := range items(50) {
			if !yield(it) {
				return
			}
		}
	}, 1)
	var ok, canceled int
	for r := range seq {
		if r.Err == nil {
			ok++
		} else if invocation.IsCanceled(r.Err) {
			canceled++
		}
	}
	if ok+canceled != 50 || ok < 3 {
		t.Errorf("ok %d canceled %d", ok, canceled)
	}
}

func TestAdaptiveBatch(t *testing.T) {
	t.Parallel()
	f := &fakeInvoker{fn: func(ctx context.Context, req *invocation.Request) (*invocation.Result, error) {
		time.Sleep(time.Millisecond)
		return okResult(ctx, req)
	}}
	m := newManager(t, f)
	var maxLimit atomic.Int64
	results, err := m.ExecuteBatch(t.Context(), items(200), 16, invoker.WithAdaptiveConcurrency(),
		invoker.WithProgress(func(p invoker.Progress) {
			if int64(p.Limit) > maxLimit.Load() {
				maxLimit.Store(int64(p.Limit))
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if p := f.peak.Load(); p > 16 || maxLimit.Load() > 16 {
		t.Errorf("peak %d limit %d above the bound", p, maxLimit.Load())
	}
}

func TestFallbackOnDegradation(t *testing.T) {
	t.Parallel()
	open := &invocation.Error{Code: invocation.CodeCircuitOpen, Workflow: "w", Message: "circuit breaker w is open"}
	tests := []struct {
		name     string
		err      error
		fallback invoker.Fallback
		wantOut  string
		wantErr  error
	}{
		{"substitute result", open, func(_ context.Context, req *invocation.Request, err error) (*invocation.Result, error) {
			return &invocation.Result{Workflow: req.Workflow, Output: []byte(`"cached"`)}, nil
		}, `"cached"`, nil},
		{"fallback error", open, func(context.Context, *invocation.Request, error) (*invocation.Result, error) {
			return nil, errors.New("queued for later")
		}, "", nil},
		{"not degraded: no fallback", &invocation.HTTPError{StatusCode: 400, ErrClass: invocation.Permanent}, func(context.Context, *invocation.Request, error) (*invocation.Result, error) {
			t.Error("fallback ran for a permanent error")
			return nil, nil
		}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newManager(t, &fakeInvoker{fn: func(context.Context, *invocation.Request) (*invocation.Result, error) { return nil, tt.err }},
				invoker.WithFallback(tt.fallback))
			res, err := m.ExecuteWorkflow(t.Context(), "w", nil)
			switch {
			case tt.wantOut != "":
				if err != nil || !res.Degraded || string(res.Output) != tt.wantOut {
					t.Errorf("res %+v err %v", res, err)
				}
			case err == nil:
				t.Error("no error")
			}
		})
	}
}

func TestBulkheadFromConfig(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse([]byte("n8n: {base_url: 'http://127.0.0.1:1'}\ninvokers: {http: {bulkhead: {max_in_flight: 2, max_wait: 0.05}}}\nworkflows: {w: {path: w}}\n"), "b.yaml")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	f := &fakeInvoker{fn: func(ctx context.Context, req *invocation.Request) (*invocation.Result, error) {
		<-release
		return okResult(ctx, req)
	}}
	m, err := invoker.New(cfg, invoker.WithTransport(f))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { _, _ = m.ExecuteWorkflow(context.Background(), "w", nil) })
	}
	for f.now.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	_, err = m.ExecuteWorkflow(context.Background(), "w", nil)
	if invocation.CodeOf(err) != invocation.CodeBulkheadFull || !invoker.IsDegraded(err) {
		t.Errorf("third call: %v", err)
	}
	close(release)
	wg.Wait()
}

// TestBatchHoldsItemsOfAnOpenBreaker: with the default breaker, a batch
// over two workflows, one of them down for 90 s, stops dispatching to the
// one whose breaker is open (its items are held, not dead-lettered, not
// sent) while the other's items go on; once the workflow is back, the held
// items run and every item succeeds.
func TestBatchHoldsItemsOfAnOpenBreaker(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		cfg := parseConfig(t, "n8n: {base_url: 'http://n8n.test'}\nworkflows: {down: {path: down}, up: {path: up}}\n")
		start := time.Now()
		var downSent, lastUp atomic.Int64
		tr := invocation.TransportFunc(func(ctx context.Context, a *invocation.Attempt) (*invocation.Result, error) {
			if err := invocation.Sleep(ctx, 100*time.Millisecond); err != nil {
				return nil, err
			}
			if a.Request.Workflow == "down" {
				downSent.Add(1)
				if time.Since(start) < 90*time.Second {
					return nil, &invocation.HTTPError{Workflow: "down", StatusCode: 503, ErrClass: invocation.Transient}
				}
			}
			if a.Request.Workflow == "up" {
				lastUp.Store(int64(time.Since(start)))
			}
			return &invocation.Result{Workflow: a.Request.Workflow, StatusCode: 200, Output: []byte("{}"), Completed: true}, nil
		})
		m, err := invoker.New(cfg, invoker.WithTransport(tr))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = m.Close(context.Background()) }()
		var in []invoker.BatchItem
		for i := range 200 {
			wf := "up"
			if i%2 == 0 {
				wf = "down"
			}
			in = append(in, invoker.BatchItem{Workflow: wf, Params: map[string]any{"i": i}})
		}
		var mu sync.Mutex
		maxHeld := 0
		results, err := m.ExecuteBatch(t.Context(), in, 8, invoker.WithProgress(func(p invoker.Progress) {
			mu.Lock()
			maxHeld = max(maxHeld, p.Held)
			mu.Unlock()
		}))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range results {
			if r.Err != nil {
				t.Fatalf("item %d (%s): %v", r.Index, r.Item.Workflow, r.Err)
			}
		}
		// The up workflow's items did not wait for the down one.
		if up := time.Duration(lastUp.Load()); up >= 10*time.Second {
			t.Errorf("the last item of the up workflow ran at %s, although the down one only held its own", up)
		}
		if maxHeld == 0 {
			t.Error("no item was held while the breaker was open")
		}
		// At most the calls in flight when the breaker opened kept
		// trying; the held ones were not sent while it was open.
		if n := downSent.Load(); n > 400 {
			t.Errorf("%d attempts to the down workflow", n)
		}
		t.Logf("held at most %d, %d attempts to the down workflow, up done at %s, batch took %s",
			maxHeld, downSent.Load(), time.Duration(lastUp.Load()), time.Since(start))
	})
}

// TestBatchHeldItemsEndWithTheContext: items held for an open breaker when
// the batch's context ends get the context's error (none is lost, none
// is sent or dead-lettered), and the batch returns.
func TestBatchHeldItemsEndWithTheContext(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		cfg := parseConfig(t, "n8n: {base_url: 'http://n8n.test'}\nworkflows: {down: {path: down}}\n")
		tr := invocation.TransportFunc(func(ctx context.Context, a *invocation.Attempt) (*invocation.Result, error) {
			return nil, &invocation.HTTPError{Workflow: "down", StatusCode: 503, ErrClass: invocation.Transient}
		})
		m, err := invoker.New(cfg, invoker.WithTransport(tr))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = m.Close(context.Background()) }()
		in := make([]invoker.BatchItem, 50)
		for i := range in {
			in[i] = invoker.BatchItem{Workflow: "down", Params: map[string]any{"i": i}}
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		results, err := m.ExecuteBatch(ctx, in, 4)
		if err != nil {
			t.Fatal(err)
		}
		canceled := 0
		for _, r := range results {
			if r.Err == nil || errors.Is(r.Err, invocation.ErrDeadLettered) {
				t.Fatalf("item %d: %v", r.Index, r.Err)
			}
			switch {
			case invocation.IsCanceled(r.Err):
				canceled++
			case errors.Is(r.Err, invocation.ErrCircuitOpen) && invocation.AttemptsOf(r.Err) == 0:
				// Dispatched in the instant the breaker opened, it met the
				// open breaker with a deadline before its probe: refused,
				// nothing sent.
				canceled++
			case !errors.Is(r.Err, invocation.ErrCircuitOpen):
				// Only the items tried before the breaker opened end
				// otherwise: with its typed error and their attempts.
				t.Errorf("item %d: %v", r.Index, r.Err)
			}
		}
		// The breaker opens after DefaultConsecutiveFailures failures; an
		// item in backoff gives its slot back, so each of the batch's 4
		// slots may start up to that many items before it opens (16 seen
		// in 1 of ~30 runs); every other item was held, then canceled.
		if canceled < 50-4*policy.DefaultConsecutiveFailures {
			t.Errorf("%d of 50 canceled or refused unsent", canceled)
		}
	})
}

// parseConfig parses a test configuration.
func parseConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestBatchBackoffGivesTheSlotBack: a call waiting out its retry backoff
// does not hold one of the batch's slots, so the concurrency bounds the
// attempts n8n has at once and the other items go on meanwhile.
func TestBatchBackoffGivesTheSlotBack(t *testing.T) {
	t.Parallel()
	for _, conc := range []string{"fixed", "auto"} {
		t.Run(conc, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				cfg := parseConfig(t, "n8n: {base_url: 'http://n8n.test'}\nworkflows: {w: {path: w}}\n")
				var mu sync.Mutex
				atN8N, peakAtN8N, calls, peakCalls := 0, 0, 0, 0
				tr := invocation.TransportFunc(func(ctx context.Context, a *invocation.Attempt) (*invocation.Result, error) {
					mu.Lock()
					atN8N++
					peakAtN8N = max(peakAtN8N, atN8N)
					if a.Number == 1 {
						calls++ // a call starts with its first attempt
						peakCalls = max(peakCalls, calls)
					}
					mu.Unlock()
					defer func() { mu.Lock(); atN8N--; mu.Unlock() }()
					if err := invocation.Sleep(ctx, 100*time.Millisecond); err != nil {
						return nil, err
					}
					if a.Number == 1 && a.Request.Params["i"].(int)%4 == 0 {
						return nil, &invocation.HTTPError{Workflow: "w", StatusCode: 503, ErrClass: invocation.Transient}
					}
					mu.Lock()
					calls-- // and ends with its success
					mu.Unlock()
					return &invocation.Result{Workflow: "w", StatusCode: 200, Output: []byte("{}"), Completed: true}, nil
				})
				m, err := invoker.New(cfg, invoker.WithTransport(tr))
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = m.Close(context.Background()) }()
				var opts []invoker.BatchOption
				if conc == "auto" {
					opts = append(opts, invoker.WithAdaptiveConcurrency())
				}
				results, err := m.ExecuteBatch(t.Context(), items(40), 2, opts...)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range results {
					if r.Err != nil {
						t.Fatalf("item %d: %v", r.Index, r.Err)
					}
				}
				if peakAtN8N > 2 {
					t.Errorf("%d attempts at n8n at once, concurrency 2", peakAtN8N)
				}
				if peakCalls <= 2 {
					t.Errorf("at most %d calls at once: the calls in backoff kept their slots", peakCalls)
				}
			})
		})
	}
}
