package postgres_test

// Fleet tests: several invoker processes share one PostgreSQL store in
// front of the queue-mode n8n of scripts/cluster, with the default
// settings (lease, held wait, reconcile, breaker, retries). make test runs
// them last, after the single n8n stopped (one n8n at a time on 2 cores);
// scripts/fleet.sh runs the large one.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/internal/chaos"
	"github.com/n8n-invoker/n8n-invoker/internal/n8ntest"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
)

// slowAnswerName is the fixture workflow the fleet tests run.
const slowAnswerName = "n8n-invoker slow answer"

// fleetConfig writes the configuration the processes of a fleet test
// share: the defaults, with the dead-letter queue on and the PostgreSQL
// store.
func fleetConfig(t *testing.T, q *n8ntest.Queue, baseURL, schema string, timeout int) string {
	t.Helper()
	y := fmt.Sprintf(`n8n:
  base_url: %q
  api_key: %q
  timeout: %d
workflows:
  %s: {path: invoker-slow-answer}
dlq: {enabled: true}
store:
  backend: postgres
  dsn: ${N8N_INVOKER_PG_DSN}
  schema: %s
`, baseURL, q.APIKey, timeout, n8ntest.SlowAnswer, schema)
	p := filepath.Join(t.TempDir(), "fleet.yaml")
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// child is an invoker process of a fleet test: this test binary run
// again with N8N_INVOKER_FLEET_CHILD set.
type child struct {
	name   string
	cmd    *exec.Cmd
	out    chan string // its stdout lines
	stderr *strings.Builder
	mu     sync.Mutex
	done   chan struct{} // stdout read and the process waited for
	errEOF chan struct{} // stderr read
}

func startChild(t *testing.T, test, name string, env ...string) *child {
	t.Helper()
	c := &child{name: name, out: make(chan string, 1<<16), stderr: &strings.Builder{}, done: make(chan struct{}), errEOF: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.v=false")
	c.cmd.Env = append(os.Environ(), env...)
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.errEOF)
		b, _ := io.ReadAll(stderr)
		c.mu.Lock()
		c.stderr.Write(b)
		c.mu.Unlock()
	}()
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			c.out <- sc.Text()
		}
		<-c.errEOF // Wait closes the pipes
		_ = c.cmd.Wait()
		close(c.out)
	}()
	t.Cleanup(func() { _ = c.cmd.Process.Kill(); <-c.done })
	return c
}

func (c *child) signal(sig syscall.Signal) { _ = c.cmd.Process.Signal(sig) }

// wait waits for the process to end.
func (c *child) wait() {
	for range c.out { // what it still prints
	}
	<-c.done
}

func (c *child) logs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.String()
}

// fleetItem is one item's outcome as a child reports it.
type fleetItem struct {
	Key          string `json:"key"`
	OK           bool   `json:"ok"`
	Deduplicated bool   `json:"deduplicated,omitempty"`
	ExecutionID  string `json:"execution_id,omitempty"`
	DeadLetter   int64  `json:"dead_letter,omitempty"`
	Held         bool   `json:"held,omitempty"` // another process held the key past the held wait
	Class        string `json:"class,omitempty"`
	Error        string `json:"error,omitempty"`
}

func itemOf(key string, res *invocation.Result, err error) fleetItem {
	it := fleetItem{Key: key, OK: err == nil}
	if err == nil {
		it.Deduplicated, it.ExecutionID = res.Deduplicated, res.ExecutionID
		return it
	}
	it.Class, it.Error = invocation.ClassOf(err).String(), err.Error()
	it.DeadLetter = invocation.DeadLetterOf(err)
	it.Held = invocation.CodeOf(err) == invocation.CodeKeyHeld
	return it
}

// childManager is a child's manager, logging to stderr (the parent reads
// it).
func childManager(t *testing.T) *invoker.Manager {
	m, err := invoker.FromConfig(os.Getenv("N8N_INVOKER_FLEET_CONFIG"),
		invoker.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// batchChild runs the fleet's batch, starting at its offset, and prints
// its progress and then every item's outcome.
func batchChild(t *testing.T) {
	m := childManager(t)
	defer m.Close(context.Background())
	n, offset := envInt("N8N_INVOKER_FLEET_N", 200), envInt("N8N_INVOKER_FLEET_OFFSET", 0)
	prefix := os.Getenv("N8N_INVOKER_FLEET_PREFIX")
	batch := make([]invoker.BatchItem, n)
	for j := range batch {
		i := (j + offset) % n
		batch[j] = invoker.BatchItem{Workflow: n8ntest.SlowAnswer, Params: map[string]any{"i": i, "delay_ms": 400},
			IdempotencyKey: prefix + strconv.Itoa(i)}
	}
	var mu sync.Mutex
	results, err := m.ExecuteBatch(context.Background(), batch, 4, invoker.WithProgress(func(p invoker.Progress) {
		mu.Lock()
		fmt.Printf("done %d\n", p.Done())
		mu.Unlock()
	}))
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for j, r := range results {
		b, _ := json.Marshal(itemOf(batch[j].IdempotencyKey, r.Result, r.Err))
		fmt.Printf("result %s\n", b)
	}
}

// replayChild replays every dead letter (run again included) and prints
// what it did with each entry.
func replayChild(t *testing.T) {
	m := childManager(t)
	defer m.Close(context.Background())
	rep, err := m.ReplayDeadLetters(context.Background(), dlq.Filter{}, invoker.ReplayFailed())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		what := "replayed"
		switch {
		case r.Skipped != "":
			what = "skipped"
		case r.Err != nil:
			what = "failed"
		}
		fmt.Printf("replay %d %s\n", r.EntryID, what)
	}
}

func TestFleetThreeProcesses(t *testing.T) {
	switch os.Getenv("N8N_INVOKER_FLEET_CHILD") {
	case "batch":
		batchChild(t)
		return
	case "replay":
		replayChild(t)
		return
	}
	t.Parallel()
	q := n8ntest.RequireQueue(t)
	n := envInt("N8N_INVOKER_FLEET_ITEMS", 200)
	seed := uint64(envInt("N8N_INVOKER_CHAOS_SEED", 7))
	sch := schema(t)
	proxy, err := chaos.New(q.BaseURL, seed)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	proxy.SetFaults(map[chaos.Fault]float64{
		chaos.ResetBefore: 0.02, chaos.ResetAfter: 0.02, chaos.Latency: 0.03, chaos.BadGateway: 0.02,
		chaos.BadGatewayAfter: 0.02, chaos.CutWhileRunning: 0.02, chaos.Unavailable: 0.02, chaos.Throttle: 0.02,
	})
	cfg := fleetConfig(t, q, proxy.URL, sch, 10)
	prefix := fmt.Sprintf("fleet-%d-", time.Now().UnixNano())
	env := func(role string, offset int) []string {
		return []string{"N8N_INVOKER_FLEET_CHILD=" + role, "N8N_INVOKER_FLEET_CONFIG=" + cfg, "N8N_INVOKER_FLEET_PREFIX=" + prefix,
			"N8N_INVOKER_FLEET_N=" + strconv.Itoa(n), "N8N_INVOKER_FLEET_OFFSET=" + strconv.Itoa(offset)}
	}
	// Three processes submit every key, each from another third of the
	// batch: a key is owned by one at a time, the others wait for its
	// result or return the recorded one.
	procs := make([]*child, 3)
	for p := range procs {
		procs[p] = startChild(t, "TestFleetThreeProcesses", fmt.Sprint("invoker-", p), env("batch", p*n/3)...)
	}
	// SIGKILL invoker 0 and the busiest n8n worker when about half the
	// keys have run (invoker 0 is a sixth through its items: each process
	// starts on its own third), and restart both.
	var killedAt int
	for line := range procs[0].out {
		if v, ok := strings.CutPrefix(line, "done "); ok {
			if killedAt, _ = strconv.Atoi(v); killedAt >= n/6 {
				break
			}
		}
	}
	procs[0].signal(syscall.SIGKILL)
	worker := q.BusiestWorker()
	crashed := q.KillWorker(t, worker)
	<-procs[0].done
	store := open(t, sch)
	defer store.Close()
	orphans := 0
	if in, err := store.Inflight(t.Context(), dlq.InflightFilter{}); err == nil {
		for _, e := range in {
			if strings.Contains(e.Lease.Owner, fmt.Sprintf(":%d/", procs[0].cmd.Process.Pid)) {
				orphans++
			}
		}
	}
	t.Logf("fleet: invoker 0 SIGKILLed after %d of %d items with %d keys in flight; n8n worker %d SIGKILLed running executions %v",
		killedAt, n, orphans, worker, crashed)
	restarted := startChild(t, "TestFleetThreeProcesses", "invoker-0'", env("batch", 0)...)
	var workerUp sync.WaitGroup
	workerUp.Go(func() { q.StartWorker(t, worker) })
	defer workerUp.Wait()

	results := map[string][]fleetItem{}
	for _, c := range []*child{restarted, procs[1], procs[2]} {
		got := 0
		timeout := time.After(15 * time.Minute)
	read:
		for {
			select {
			case line, ok := <-c.out:
				if !ok {
					break read
				}
				if v, ok := strings.CutPrefix(line, "result "); ok {
					var it fleetItem
					if err := json.Unmarshal([]byte(v), &it); err != nil {
						t.Fatal(err)
					}
					results[it.Key] = append(results[it.Key], it)
					got++
				}
			case <-timeout:
				t.Fatalf("%s did not finish in 15 minutes; its log:\n%s", c.name, c.logs())
			}
		}
		if got != n {
			t.Fatalf("%s reported %d of %d items; its log:\n%s", c.name, got, n, c.logs())
		}
	}
	// Every submission ended in one known state.
	ok, dead, dedup, held := 0, 0, 0, 0
	deadKeys := map[string]bool{}
	for k, its := range results {
		decided := false
		for _, it := range its {
			decided = decided || it.OK || it.DeadLetter != 0
		}
		for _, it := range its {
			switch {
			case it.Held && decided:
				// A typed error, nothing sent: the owner decided the key.
				held++
			case it.OK:
				ok++
				if it.Deduplicated {
					dedup++
				}
			case it.DeadLetter != 0:
				dead++
				deadKeys[k] = true
			default:
				t.Errorf("key %s: neither succeeded nor dead-lettered: %s (%s)", k, it.Error, it.Class)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if left, _ := store.Inflight(ctx, dlq.InflightFilter{}); len(left) != 0 {
		t.Errorf("%d invocations still in flight after every process ended", len(left))
	}
	entries, _ := store.Count(ctx)

	// Three replays at once never replay the same entry.
	proxy.SetFaults(nil)
	replayed := map[string]string{}
	var replays []*child
	for r := range 3 {
		replays = append(replays, startChild(t, "TestFleetThreeProcesses", fmt.Sprint("replay-", r), env("replay", 0)...))
	}
	for _, c := range replays {
		for line := range c.out {
			f := strings.Fields(line)
			if len(f) == 3 && f[0] == "replay" && f[2] != "skipped" {
				if by, twice := replayed[f[1]]; twice {
					t.Errorf("entry %s replayed by %s and by %s", f[1], by, c.name)
				}
				replayed[f[1]] = c.name
			}
		}
	}
	if left, _ := store.Count(ctx); left != 0 {
		t.Errorf("%d dead letters left after the replays", left)
	}

	// n8n's executions, per key, against what the proxy forwarded.
	wfID := q.WorkflowID(t, slowAnswerName)
	var execs map[string][]*n8napi.Execution
	for range 60 {
		execs = q.ExecutionsByHeader(ctx, t, wfID, "idempotency-key", func(k string) bool { return strings.HasPrefix(k, prefix) })
		running := 0
		for _, es := range execs {
			for _, e := range es {
				if e.Status == n8napi.StatusRunning {
					running++
				}
			}
		}
		if len(execs) == n && running == 0 {
			break
		}
		time.Sleep(time.Second)
	}
	lostAnswer := map[string]bool{}
	for _, r := range proxy.Records() {
		if r.Fault == chaos.ResetAfter || r.Fault == chaos.BadGatewayAfter || r.Fault == chaos.CutWhileRunning || r.ClientGone {
			lostAnswer[r.Key] = true
		}
	}
	lost, extra := 0, 0
	statuses := map[string]int{}
	for i := range n {
		k := prefix + strconv.Itoa(i)
		succeeded := 0
		for _, e := range execs[k] {
			statuses[e.Status]++
			if e.Status == n8napi.StatusSuccess {
				succeeded++
			}
		}
		switch {
		case succeeded == 0:
			lost++
			t.Errorf("item %d: no successful execution in n8n (%d others)", i, len(execs[k]))
		case succeeded > 1:
			extra += succeeded - 1
			if !lostAnswer[k] {
				t.Errorf("item %d succeeded %d times in n8n without a lost answer to explain it", i, succeeded)
			}
		}
	}
	if extra > n/200 {
		t.Errorf("%d extra executions for %d items: lost answers were re-sent without reconciling", extra, n)
	}
	// The killed worker's executions end failed, with their data gone
	// (n8n marks a stalled job failed and does not run it again), or
	// crashed; one may have finished in the instant before the kill,
	// before its worker logged it.
	killed := map[string]int{}
	for _, id := range crashed {
		e, _, err := q.API(t).Executions.Get(ctx, id, false)
		if err != nil {
			t.Errorf("execution %s of the killed worker: %v", id, err)
			continue
		}
		killed[e.Status]++
	}
	t.Logf("fleet: 3 processes x %d items (%d submissions): %d succeeded (%d from a recorded result or a reconcile), %d dead-lettered, "+
		"%d held by another process past the held wait (typed error, nothing sent; that process decided the key) "+
		"(%d entries, replayed by 3 concurrent replays: %d replayed, none twice); n8n: lost %d, extra successful executions %d "+
		"(each after a lost answer), executions of the keys by status %v; the killed worker's executions by status %v; proxy: %d requests",
		n, 3*n, ok, dedup, dead, held, entries, len(replayed), lost, extra, statuses, killed, len(proxy.Records()))
}

// TestFleetPausedPastLease stops a process (SIGSTOP) with a call in
// flight past its lease: another process takes the key over, reconciles
// it with n8n (finds the execution) and records its result; the stopped
// process, resumed, gets its answer but cannot overwrite the record
// (its fencing token is stale).
func TestFleetPausedPastLease(t *testing.T) {
	if os.Getenv("N8N_INVOKER_FLEET_CHILD") == "one" {
		m := childManager(t)
		defer m.Close(context.Background())
		key := os.Getenv("N8N_INVOKER_FLEET_PREFIX")
		res, err := m.Execute(context.Background(), &invocation.Request{Workflow: n8ntest.SlowAnswer,
			Params: map[string]any{"delay_ms": 20000}, IdempotencyKey: key})
		b, _ := json.Marshal(itemOf(key, res, err))
		fmt.Printf("result %s\n", b)
		return
	}
	t.Parallel()
	q := n8ntest.RequireQueue(t)
	sch := schema(t)
	// The default lease (30s); a request timeout longer than the pause, so
	// that the stopped process gets n8n's answer when it resumes.
	cfg := fleetConfig(t, q, q.BaseURL, sch, 120)
	key := fmt.Sprintf("paused-%d", time.Now().UnixNano())
	env := []string{"N8N_INVOKER_FLEET_CHILD=one", "N8N_INVOKER_FLEET_CONFIG=" + cfg, "N8N_INVOKER_FLEET_PREFIX=" + key}
	store := open(t, sch)
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	wfID := q.WorkflowID(t, slowAnswerName)

	a := startChild(t, "TestFleetPausedPastLease", "A", env...)
	// Wait until A's request runs in n8n, then stop A.
	var lease dlq.Lease
	for lease.Token == 0 || len(q.ExecutionsByHeader(ctx, t, wfID, "idempotency-key", func(k string) bool { return k == key })) == 0 {
		if ctx.Err() != nil {
			t.Fatalf("A's call never reached n8n; its log:\n%s", a.logs())
		}
		if in, _ := store.Inflight(ctx, dlq.InflightFilter{Key: key}); len(in) == 1 {
			lease = in[0].Lease
		}
		time.Sleep(100 * time.Millisecond)
	}
	a.signal(syscall.SIGSTOP)
	stopped := time.Now()
	// The execution takes 20 s: A is stopped with its call in flight.
	if _, done, err := store.Completed(ctx, key); err != nil || done {
		t.Fatalf("A recorded the key before it was stopped (%v): the test did not stop it in flight", err)
	}
	// Past A's lease, B submits the same key.
	time.Sleep(time.Until(lease.Until) + time.Second)
	b := startChild(t, "TestFleetPausedPastLease", "B", env...)
	bRes := readResult(t, b)
	if !bRes.OK {
		t.Fatalf("B: %s; its log:\n%s", bRes.Error, b.logs())
	}
	var recordedAt time.Time
	if err := store.Pool().QueryRow(ctx, "SELECT completed_at FROM "+sch+".completed WHERE idempotency_key = $1", key).Scan(&recordedAt); err != nil {
		t.Fatalf("B's result is not recorded: %v", err)
	}
	a.signal(syscall.SIGCONT)
	aRes := readResult(t, a)
	a.wait()
	var after time.Time
	if err := store.Pool().QueryRow(ctx, "SELECT completed_at FROM "+sch+".completed WHERE idempotency_key = $1", key).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if !after.Equal(recordedAt) {
		t.Errorf("A, resumed after its lease expired, overwrote B's record (%s, then %s)", recordedAt, after)
	}
	if !strings.Contains(a.logs(), "another process took the key over") {
		t.Errorf("A did not notice it lost its lease; its log:\n%s", a.logs())
	}
	if aRes.OK && aRes.ExecutionID != bRes.ExecutionID {
		t.Errorf("A answered execution %s, B recorded %s", aRes.ExecutionID, bRes.ExecutionID)
	}
	execs := q.ExecutionsByHeader(ctx, t, wfID, "idempotency-key", func(k string) bool { return k == key })
	if len(execs[key]) != 1 {
		t.Errorf("n8n ran the key %d times, want 1", len(execs[key]))
	}
	t.Logf("paused: A stopped %s with its call in n8n (lease token %d); B took the key over after the lease, reconciled (deduplicated %v, execution %s); "+
		"A resumed: ok %v, lost lease logged, record kept; n8n ran it %d time(s)",
		time.Since(stopped).Round(time.Second), lease.Token, bRes.Deduplicated, bRes.ExecutionID, aRes.OK, len(execs[key]))
}

func readResult(t *testing.T, c *child) fleetItem {
	t.Helper()
	timeout := time.After(4 * time.Minute)
	for {
		select {
		case line, ok := <-c.out:
			if !ok {
				t.Fatalf("%s ended without a result; its log:\n%s", c.name, c.logs())
			}
			if v, ok := strings.CutPrefix(line, "result "); ok {
				var it fleetItem
				if err := json.Unmarshal([]byte(v), &it); err != nil {
					t.Fatal(err)
				}
				return it
			}
		case <-timeout:
			t.Fatalf("%s gave no result in 4 minutes; its log:\n%s", c.name, c.logs())
		}
	}
}

// TestFleetConcurrentReplays: three processes replay one store's dead
// letters at once; each entry is replayed by one of them, and n8n runs
// each key once.
func TestFleetConcurrentReplays(t *testing.T) {
	t.Parallel()
	q := n8ntest.RequireQueue(t)
	sch := schema(t)
	store := open(t, sch)
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const n = 60
	prefix := fmt.Sprintf("replays-%d-", time.Now().UnixNano())
	for i := range n {
		if _, err := store.Put(ctx, &dlq.Entry{Workflow: n8ntest.SlowAnswer, Params: json.RawMessage(fmt.Sprintf(`{"i":%d,"delay_ms":300}`, i)),
			IdempotencyKey: prefix + strconv.Itoa(i), Reason: "exhausted", Attempts: 7,
			LastError: dlq.ErrorInfo{Class: "transient", Message: "HTTP 503"}}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fleetConfig(t, q, q.BaseURL, sch, 30)
	env := []string{"N8N_INVOKER_FLEET_CHILD=replay", "N8N_INVOKER_FLEET_CONFIG=" + cfg}
	var replays []*child
	for r := range 3 {
		replays = append(replays, startChild(t, "TestFleetThreeProcesses", fmt.Sprint("replay-", r), env...))
	}
	by := map[string]string{}
	skipped := 0
	for _, c := range replays {
		for line := range c.out {
			f := strings.Fields(line)
			if len(f) != 3 || f[0] != "replay" {
				continue
			}
			if f[2] == "skipped" {
				skipped++
				continue
			}
			if f[2] != "replayed" {
				t.Errorf("entry %s: %s by %s; its log:\n%s", f[1], f[2], c.name, c.logs())
			}
			if other, twice := by[f[1]]; twice {
				t.Errorf("entry %s replayed by %s and by %s", f[1], other, c.name)
			}
			by[f[1]] = c.name
		}
	}
	if len(by) != n {
		t.Errorf("%d of %d entries replayed", len(by), n)
	}
	if left, _ := store.Count(ctx); left != 0 {
		t.Errorf("%d entries left", left)
	}
	perProcess := map[string]int{}
	for _, name := range by {
		perProcess[name]++
	}
	wfID := q.WorkflowID(t, slowAnswerName)
	var execs map[string][]*n8napi.Execution
	for range 30 {
		if execs = q.ExecutionsByHeader(ctx, t, wfID, "idempotency-key", func(k string) bool { return strings.HasPrefix(k, prefix) }); len(execs) == n {
			break
		}
		time.Sleep(time.Second)
	}
	for i := range n {
		if k := prefix + strconv.Itoa(i); len(execs[k]) != 1 {
			t.Errorf("key %s ran %d times in n8n", k, len(execs[k]))
		}
	}
	t.Logf("replays: %d entries, 3 processes at once replayed %v (skipped %d held by another), each key run once in n8n", n, perProcess, skipped)
}
