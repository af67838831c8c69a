package invoker_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/internal/chaos"
	"github.com/n8n-invoker/n8n-invoker/internal/n8ntest"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
	"github.com/n8n-invoker/n8n-invoker/policy"
)

// chaosItems is the size of the fault run: small in CI, large on demand
// (scripts/chaos.sh sets N8N_INVOKER_CHAOS_ITEMS=10000).
func chaosItems() int {
	if n, err := strconv.Atoi(os.Getenv("N8N_INVOKER_CHAOS_ITEMS")); err == nil && n > 0 {
		return n
	}
	return 60
}

// account checks every result: a success whose output answers its own
// input, a typed error with a class, or a fallback. It returns counts.
func account(t *testing.T, results []invoker.BatchResult, keyOf func(int) string) (ok, failed, degraded int) {
	t.Helper()
	for i, r := range results {
		switch {
		case r.Index != i:
			t.Errorf("result %d has index %d", i, r.Index)
		case r.Err == nil && r.Result.Degraded:
			degraded++
		case r.Err == nil:
			var out echoOut
			if err := r.Result.Decode(&out); err != nil || out.IdempotencyKey != keyOf(i) {
				t.Errorf("item %d: output %s does not answer its input (%v)", i, r.Result.Output, err)
			}
			ok++
		case errors.Is(r.Err, errFallback):
			degraded++
		default:
			var ie *invocation.Error
			if !errors.As(r.Err, &ie) || invocation.CodeOf(r.Err) == invocation.CodeUnknown {
				t.Errorf("item %d: untyped error %T: %v", i, r.Err, r.Err)
			}
			if invocation.AttemptsOf(r.Err) == 0 && invocation.CodeOf(r.Err) != invocation.CodeCircuitOpen {
				t.Errorf("item %d: error without attempt count: %v", i, r.Err)
			}
			failed++
		}
	}
	return ok, failed, degraded
}

var errFallback = errors.New("handed to fallback")

func chaosConfig(t *testing.T, baseURL string, mutate func(*config.HTTP)) *config.Config {
	t.Helper()
	return chaosConfigOf(t, n8ntest.Require(t), baseURL, mutate)
}

// chaosConfigOf is chaosConfig for the instance n8n (its API key).
func chaosConfigOf(t *testing.T, n8n *n8ntest.Instance, baseURL string, mutate func(*config.HTTP)) *config.Config {
	t.Helper()
	cfg := n8n.Config(t)
	cfg.N8N.BaseURL = baseURL
	cfg.N8N.Timeout = config.Duration(3 * time.Second)
	// The defaults (retries, backoff, breaker, budget), with the dead-letter
	// queue on and the API key set (reconcile): what these tests test.
	cfg.DLQ.Enabled = true
	cfg.Store.Path = filepath.Join(t.TempDir(), "dlq.db")
	h := &cfg.Invokers.HTTP
	def := config.Default().Invokers.HTTP
	h.MaxRetries, h.BackoffFactor = def.MaxRetries, def.BackoffFactor // the test config's fast retries are not the defaults
	if mutate != nil {
		mutate(h)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestChaosFaultsAccounting runs a batch through a proxy that injects
// resets, latency, 502/503, 429 and blackholes, then checks that every
// item is accounted for and that n8n ran exactly what reached it.
func TestChaosFaultsAccounting(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	seed := uint64(42)
	if v, err := strconv.ParseUint(os.Getenv("N8N_INVOKER_CHAOS_SEED"), 10, 64); err == nil {
		seed = v
	}
	conc := 4
	var batchOpts []invoker.BatchOption
	if v, err := strconv.Atoi(os.Getenv("N8N_INVOKER_CHAOS_CONCURRENCY")); err == nil && v > 0 {
		conc = v
	} else if os.Getenv("N8N_INVOKER_CHAOS_CONCURRENCY") == "auto" { // as the CLI's --concurrency auto
		conc = 32
		batchOpts = append(batchOpts, invoker.WithAdaptiveConcurrency())
	}
	proxy, err := chaos.New(n8n.BaseURL, seed)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	proxy.SetFaults(map[chaos.Fault]float64{
		chaos.ResetBefore: 0.04, chaos.ResetAfter: 0.04, chaos.Latency: 0.05, chaos.BadGateway: 0.03,
		chaos.BadGatewayAfter: 0.03, chaos.CutWhileRunning: 0.03, chaos.Unavailable: 0.04, chaos.Throttle: 0.04, chaos.Blackhole: 0.01,
	})
	cfg := chaosConfig(t, proxy.URL, nil)
	stats := &reconcileStats{}
	m, err := invoker.New(cfg, invoker.WithLogger(slog.New(stats)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	defer func() { t.Logf("chaos: %s", stats) }()

	n := chaosItems()
	prefix := fmt.Sprintf("chaos-%d-", time.Now().UnixNano())
	key := func(i int) string { return prefix + strconv.Itoa(i) }
	batch := make([]invoker.BatchItem, n)
	for i := range batch {
		batch[i] = invoker.BatchItem{Workflow: n8ntest.Echo, Params: map[string]any{"i": i}, IdempotencyKey: key(i)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(n)*time.Second+2*time.Minute)
	defer cancel()
	start := time.Now()
	results, err := m.ExecuteBatch(ctx, batch, conc, batchOpts...)
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	ok, failed, degraded := account(t, results, key)

	// What the proxy did, per key.
	recs := proxy.Records()
	forwarded, maybe := map[string]int{}, map[string]int{}
	resetAfter := map[string]bool{}
	faults := map[chaos.Fault]int{}
	for _, r := range recs {
		faults[r.Fault]++
		if r.Forwarded {
			forwarded[r.Key]++
		}
		if r.MaybeForwarded {
			maybe[r.Key]++ // written to n8n, its answer failed at the proxy
		}
		if r.Fault == chaos.ResetAfter || r.Fault == chaos.BadGatewayAfter || r.Fault == chaos.CutWhileRunning || r.ClientGone {
			resetAfter[r.Key] = true
		}
	}
	// What n8n ran, per key: it must equal what reached it.
	wfID := n8n.WorkflowID(t, "n8n-invoker echo")
	var execs map[string][]*n8napi.Execution
	deadline := time.Now().Add(30 * time.Second)
	for {
		execs = n8n.ExecutionsByHeader(ctx, t, wfID, "idempotency-key", func(k string) bool { return strings.HasPrefix(k, prefix) })
		total := 0
		for _, e := range execs {
			total += len(e)
		}
		want, mayBe := 0, 0
		for _, f := range forwarded {
			want += f
		}
		for _, f := range maybe {
			mayBe += f
		}
		if (total >= want && total <= want+mayBe) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	extra, lost := 0, 0
	for i := range n {
		k := key(i)
		got := len(execs[k])
		if got < forwarded[k] || got > forwarded[k]+maybe[k] {
			t.Errorf("item %d: n8n ran %d executions, the proxy forwarded %d (and %d more it wrote before its connection to n8n failed)", i, got, forwarded[k], maybe[k])
		}
		if results[i].Err == nil && !results[i].Result.Degraded && got == 0 {
			t.Errorf("item %d reported succeeded but n8n has no execution", i)
			lost++
		}
		if got > 1 {
			extra += got - 1
			if !resetAfter[k] {
				t.Errorf("item %d ran %d times without a lost answer to explain it", i, got)
			}
		}
	}
	faulted := len(recs) - faults[chaos.None]
	t.Logf("chaos: concurrency %s, %d items in %s (%.1f/s): %d succeeded, %d failed with typed errors, %d degraded, %d lost; "+
		"%d attempts, %d faulted (%.0f%%: %v); %d extra executions, each after a reset that lost n8n's answer",
		cmp.Or(os.Getenv("N8N_INVOKER_CHAOS_CONCURRENCY"), strconv.Itoa(conc)), n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), ok, failed, degraded, lost,
		len(recs), faulted, 100*float64(faulted)/float64(len(recs)), faults, extra)
	if ok+failed+degraded != n {
		t.Errorf("%d items unaccounted for", n-ok-failed-degraded)
	}
	if ok < n*8/10 {
		t.Errorf("only %d of %d succeeded with retries", ok, n)
	}
	// With the defaults (reconcile before any re-send of a lost answer),
	// no item runs twice.
	if extra > n/200 {
		t.Errorf("%d extra executions for %d items: lost answers were re-sent without reconciling", extra, n)
	}
	// No item is dead-lettered without an attempt.
	dead := 0
	kinds := map[string]int{}
	for _, r := range results {
		if r.Err != nil {
			e := r.Err
			kinds[invocation.CodeOf(e).String()+" "+invocation.ClassOf(e).String()]++
			if invocation.CodeOf(e) == invocation.CodeUnresolved {
				kinds["  unresolved: "+e.Error()]++
			}
			var ie *invocation.Error
			if errors.As(e, &ie) && ie.Err != nil {
				kinds[fmt.Sprintf("  cause: %T", ie.Err)]++
			}
		}
	}
	t.Logf("chaos: failures by kind: %v", kinds)
	for i, r := range results {
		if invocation.DeadLetterOf(r.Err) != 0 {
			dead++
			if invocation.AttemptsOf(r.Err) == 0 {
				t.Errorf("item %d dead-lettered without an attempt: %v", i, r.Err)
			}
		}
	}
	// Replaying the dead letters (through the same faults) reconciles each
	// first: a key n8n already ran gets no new execution.
	proxy.SetFaults(nil)
	rep, err := m.ReplayDeadLetters(ctx, dlq.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	execs = n8n.ExecutionsByHeader(ctx, t, wfID, "idempotency-key", func(k string) bool { return strings.HasPrefix(k, prefix) })
	twice := 0
	for i := range n {
		if len(execs[key(i)]) > 1 {
			twice++
		}
	}
	t.Logf("chaos: seed %d, concurrency %d: %d dead-lettered; replay: %d succeeded, %d already run (reconciled), %d failed, %d skipped; "+
		"items executed more than once in n8n after the replay: %d (%.2f%%)",
		seed, conc, dead, rep.Succeeded, rep.AlreadyDone, rep.Failed, rep.Skipped, twice, 100*float64(twice)/float64(n))
	if twice > n/200 {
		t.Errorf("%d items ran more than once after the replay", twice)
	}
}

// TestChaosBreakerOpensAndRecovers makes n8n unavailable behind the proxy
// until the breaker opens and the fallback takes the calls, then heals it
// and checks the breaker closes again.
func TestChaosBreakerOpensAndRecovers(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	proxy, err := chaos.New(n8n.BaseURL, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	cfg := chaosConfig(t, proxy.URL, func(h *config.HTTP) {
		h.MaxRetries = 2
		h.CircuitBreaker = config.CircuitBreaker{Enabled: true, ConsecutiveFailures: 5, FailureRate: 0.5, MinCalls: 10,
			Window: config.Duration(time.Minute), OpenTimeout: config.Duration(2 * time.Second), HalfOpenProbes: 1}
	})
	var mu sync.Mutex
	var transitions []string
	var fallbacks atomic.Int64
	m, err := invoker.New(cfg,
		invoker.WithBreakerStateChange(func(_ string, from, to policy.State) {
			mu.Lock()
			transitions = append(transitions, from.String()+">"+to.String())
			mu.Unlock()
		}),
		invoker.WithFallback(func(_ context.Context, _ *invocation.Request, err error) (*invocation.Result, error) {
			fallbacks.Add(1)
			return nil, fmt.Errorf("%w: %w", errFallback, err)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("breaker-%d-", time.Now().UnixNano())
	mk := func(n, off int) []invoker.BatchItem {
		b := make([]invoker.BatchItem, n)
		for i := range b {
			b[i] = invoker.BatchItem{Workflow: n8ntest.Echo, Params: map[string]any{"i": off + i}, IdempotencyKey: prefix + strconv.Itoa(off+i)}
		}
		return b
	}

	proxy.SetFaults(map[chaos.Fault]float64{chaos.Unavailable: 1})
	down, _ := m.ExecuteBatch(ctx, mk(20, 0), 2)
	ok, failed, degraded := account(t, down, func(i int) string { return prefix + strconv.Itoa(i) })
	if ok != 0 || degraded == 0 || failed+degraded != 20 {
		t.Errorf("while down: ok %d failed %d degraded %d", ok, failed, degraded)
	}
	if st := m.BreakerStates(); len(st) != 1 || st[0].State != policy.Open {
		t.Errorf("breaker states while down: %+v", st)
	}

	proxy.SetFaults(nil)
	time.Sleep(2100 * time.Millisecond)
	// The first call after the open timeout is the half-open probe; calls
	// made while it runs are refused. Once it succeeds, all go through.
	probe, _ := m.ExecuteBatch(ctx, mk(1, 20), 1)
	if probe[0].Err != nil {
		t.Fatalf("probe: %v", probe[0].Err)
	}
	up, _ := m.ExecuteBatch(ctx, mk(10, 21), 2)
	ok, _, _ = account(t, up, func(i int) string { return prefix + strconv.Itoa(21+i) })
	if ok != 10 {
		t.Errorf("after recovery only %d of 10 succeeded", ok)
	}
	mu.Lock()
	got := strings.Join(transitions, ",")
	mu.Unlock()
	// Probes may fail while the down batch still runs (half-open>open):
	// the breaker opens first and closes last, once.
	if !strings.HasPrefix(got, "closed>open,") || !strings.HasSuffix(got, "half-open>closed") || strings.Count(got, ">closed") != 1 {
		t.Errorf("transitions %s", got)
	}
	if st := m.BreakerStates(); st[0].State != policy.Closed {
		t.Errorf("breaker not closed after recovery: %+v", st)
	}
	t.Logf("breaker: %d calls failed fast into the fallback while n8n was down; transitions %s", fallbacks.Load(), got)
}

// TestChaosKillN8NMidBatch SIGKILLs a private n8n in the middle of a
// batch and restarts it: every item must end succeeded or with a typed
// error, and every extra execution must be a crashed one that the retry
// of the same idempotency key replaced.
func TestChaosKillN8NMidBatch(t *testing.T) {
	t.Parallel()
	priv := n8ntest.StartPrivate(t)
	// The defaults: the breaker opens on the refused connections and the
	// calls behind it pause until n8n is back.
	cfg := chaosConfigOf(t, priv.Instance, priv.BaseURL, nil)
	cfg.N8N.Timeout = config.Duration(30 * time.Second)
	m, err := invoker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	n := 40
	prefix := fmt.Sprintf("kill-%d-", time.Now().UnixNano())
	key := func(i int) string { return prefix + strconv.Itoa(i) }
	batch := make([]invoker.BatchItem, n)
	for i := range batch {
		batch[i] = invoker.BatchItem{Workflow: n8ntest.Echo, Params: map[string]any{"i": i}, IdempotencyKey: key(i)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var done atomic.Int64
	resultsCh := make(chan []invoker.BatchResult, 1)
	go func() {
		r, _ := m.ExecuteBatch(ctx, batch, 4, invoker.WithProgress(func(p invoker.Progress) { done.Store(int64(p.Done())) }))
		resultsCh <- r
	}()
	for done.Load() < 10 {
		time.Sleep(20 * time.Millisecond)
	}
	killedAt := time.Now()
	priv.Kill()
	priv.Restart()
	restart := time.Since(killedAt)
	results := <-resultsCh
	ok, failed, _ := account(t, results, key)

	// This n8n ran only this test's executions. Successful ones carry
	// their key; crashed ones may have no data left to tell it.
	wfID := priv.WorkflowID(t, "n8n-invoker echo")
	api := priv.API(t)
	byStatus := map[string]int{}
	successByKey := map[string]int{}
	seen := map[n8napi.ID]bool{}
	for _, status := range []string{"", n8napi.StatusRunning} {
		for e, err := range api.Executions.All(ctx, &n8napi.ExecutionListOptions{WorkflowID: wfID, Status: status, IncludeData: true, Limit: 250}) {
			if err != nil {
				t.Fatal(err)
			}
			if seen[e.ID] {
				continue
			}
			seen[e.ID] = true
			byStatus[e.Status]++
			if e.Status == n8napi.StatusSuccess {
				headers, _ := e.Data.FirstItem("Webhook")["headers"].(map[string]any)
				k, _ := headers["idempotency-key"].(string)
				successByKey[k]++
			}
		}
	}
	// An item may end unresolved (typed, dead-lettered, not sent again)
	// only when n8n, restarted, left an execution of the kill "running"
	// (it did not mark it crashed): its reconcile cannot tell that
	// execution's key, so it does not guess.
	unresolved := 0
	for i, r := range results {
		switch {
		case r.Err == nil:
		case invocation.CodeOf(r.Err) == invocation.CodeUnresolved && errors.Is(r.Err, invocation.ErrDeadLettered) && byStatus[n8napi.StatusRunning] > 0:
			unresolved++
		default:
			t.Errorf("item %d failed: %v", i, r.Err)
		}
	}
	if unresolved > 4 {
		t.Errorf("%d items unresolved: more than were in flight at the kill", unresolved)
	}
	dup := 0
	for i := range n {
		switch c := successByKey[key(i)]; {
		case results[i].Err == nil && c == 0:
			t.Errorf("item %d succeeded; n8n has no successful execution of its key", i)
		case c > 1:
			dup++ // its answer was lost in the kill and the retry ran it again
		}
	}
	extra := len(seen) - ok
	notOK := len(seen) - byStatus[n8napi.StatusSuccess]
	// Only the items in flight at the kill (at most the concurrency, 4) may
	// have run more than once: a crashed execution, or one whose answer the
	// kill lost.
	if extra > 4 || dup+notOK > 4 || extra != dup+notOK {
		t.Errorf("executions by status %v for %d successful items: %d extra (%d duplicated successes, %d crashed)", byStatus, ok, extra, dup, notOK)
	}
	t.Logf("kill: %d items, n8n SIGKILLed after 10 and back in %s: %d succeeded, %d failed (%d unresolved behind an execution n8n left running), 0 lost; %d executions %v: %d extra (%d crashed, %d re-run after the kill lost the answer)",
		n, restart.Round(time.Millisecond), ok, failed, unresolved, len(seen), byStatus, extra, notOK, dup)
}

// reconcileStats is a log handler that keeps the API calls and bytes of
// every reconcile the manager logs (its "reconcile..." records).
type reconcileStats struct {
	mu           sync.Mutex
	calls, bytes []int64
}

func (s *reconcileStats) Enabled(context.Context, slog.Level) bool { return true }
func (s *reconcileStats) WithAttrs([]slog.Attr) slog.Handler       { return s }
func (s *reconcileStats) WithGroup(string) slog.Handler            { return s }

func (s *reconcileStats) Handle(_ context.Context, r slog.Record) error {
	if !strings.HasPrefix(r.Message, "reconcile") {
		return nil
	}
	var calls, bytes int64 = -1, -1
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "api_calls":
			calls = a.Value.Int64()
		case "api_bytes":
			bytes = a.Value.Int64()
		}
		return true
	})
	if calls >= 0 && bytes >= 0 {
		s.mu.Lock()
		s.calls, s.bytes = append(s.calls, calls), append(s.bytes, bytes)
		s.mu.Unlock()
	}
	return nil
}

// String gives p50 and p99 of the API calls and bytes per reconcile.
func (s *reconcileStats) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	pct := func(v []int64, p int) int64 {
		if len(v) == 0 {
			return 0
		}
		v = slices.Clone(v)
		slices.Sort(v)
		return v[min(len(v)-1, len(v)*p/100)]
	}
	return fmt.Sprintf("%d reconciles: API calls per reconcile p50 %d, p99 %d; bytes p50 %d, p99 %d",
		len(s.calls), pct(s.calls, 50), pct(s.calls, 99), pct(s.bytes, 50), pct(s.bytes, 99))
}
