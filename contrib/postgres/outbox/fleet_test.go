package outbox_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/contrib/postgres"
	"github.com/n8n-invoker/n8n-invoker/contrib/postgres/outbox"
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/internal/chaos"
	"github.com/n8n-invoker/n8n-invoker/internal/n8ntest"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
	ob "github.com/n8n-invoker/n8n-invoker/outbox"
)

// workerChild is a worker process: a manager and an outbox with workers,
// until it is killed.
func workerChild(t *testing.T) {
	m, err := invoker.FromConfig(os.Getenv("N8N_INVOKER_OUTBOX_CONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	o, err := outbox.New(context.Background(), m.DLQ().(*postgres.Store), m, ob.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	fmt.Println("started")
	time.Sleep(time.Hour)
}

// Three worker processes deliver an enqueued batch to queue-mode n8n
// through the fault proxy, with the defaults; one worker process and the
// busiest n8n worker are SIGKILLed mid-run and restarted. Every
// invocation ends recorded, none is lost, n8n runs each key once (an
// extra run only after a lost answer).
func TestFleetOutboxWorkers(t *testing.T) {
	if os.Getenv("N8N_INVOKER_OUTBOX_CHILD") == "1" {
		workerChild(t)
		return
	}
	t.Parallel()
	q := n8ntest.RequireQueue(t)
	n := 150
	if v, err := strconv.Atoi(os.Getenv("N8N_INVOKER_OUTBOX_ITEMS")); err == nil && v > 0 {
		n = v
	}
	proxy, err := chaos.New(q.BaseURL, 11)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	proxy.SetFaults(map[chaos.Fault]float64{chaos.ResetBefore: 0.02, chaos.ResetAfter: 0.02, chaos.BadGateway: 0.02,
		chaos.CutWhileRunning: 0.02, chaos.Unavailable: 0.02, chaos.Latency: 0.03})
	schema := fmt.Sprintf("t_outbox_%d", time.Now().UnixNano()%1e12)
	cfgPath := filepath.Join(t.TempDir(), "outbox.yaml")
	y := fmt.Sprintf("n8n: {base_url: %q, api_key: %q, timeout: 10}\nworkflows: {%s: {path: invoker-slow-answer}}\ndlq: {enabled: true}\nstore:\n  backend: postgres\n  dsn: ${N8N_INVOKER_PG_DSN}\n  schema: %s\n",
		proxy.URL, q.APIKey, n8ntest.SlowAnswer, schema)
	if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := invoker.FromConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	store := m.DLQ().(*postgres.Store)
	t.Cleanup(func() { _, _ = store.Pool().Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE") })
	o, err := outbox.New(t.Context(), store, m, ob.Options{Workers: -1}) // this process only enqueues
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute+time.Duration(n)*200*time.Millisecond) // the large run's 3000 items too
	defer cancel()
	prefix := fmt.Sprintf("outbox-fleet-%d-", time.Now().UnixNano())
	ids := make([]string, n)
	for i := range n {
		if ids[i], err = o.Enqueue(ctx, &invocation.Request{Workflow: n8ntest.SlowAnswer, Params: map[string]any{"i": i, "delay_ms": 300},
			IdempotencyKey: prefix + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFleetOutboxWorkers$", "-test.count=1")
		cmd.Env = append(os.Environ(), "N8N_INVOKER_OUTBOX_CHILD=1", "N8N_INVOKER_OUTBOX_CONFIG="+cfgPath)
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		for sc.Scan() && sc.Text() != "started" {
		}
		go func() {
			for sc.Scan() {
			}
		}()
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	workers := []*exec.Cmd{start(), start(), start()}
	done := func() int {
		var c int
		_ = store.Pool().QueryRow(ctx, "SELECT count(*) FROM "+schema+".invocations WHERE status IN ('succeeded','failed','dead_lettered')").Scan(&c)
		return c
	}
	for done() < n/3 && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	killedPid := workers[0].Process.Pid
	_ = workers[0].Process.Signal(syscall.SIGKILL)
	_ = workers[0].Wait()
	// What the killed process had in flight (its leases, not yet taken over).
	killedKeys := map[string]time.Time{}
	if in, err := store.Inflight(ctx, dlq.InflightFilter{}); err == nil {
		for _, e := range in {
			if strings.Contains(e.Lease.Owner, fmt.Sprintf(":%d/", killedPid)) {
				killedKeys[e.IdempotencyKey] = e.StartedAt
			}
		}
	}
	killTime := time.Now()
	nw := q.BusiestWorker()
	crashed := q.KillWorker(t, nw)
	killedAt := done()
	workers[0] = start()
	q.StartWorker(t, nw)
	for done() < n && ctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
	}
	statuses := map[string]int{}
	for _, id := range ids {
		inv, err := o.Await(ctx, id)
		if err != nil {
			t.Fatalf("invocation %s: %v", id, err)
		}
		statuses[inv.Status]++
		if inv.Status != outbox.Succeeded {
			t.Logf("invocation %s (%s): %s %s", id, inv.IdempotencyKey, inv.Status, inv.Error)
		}
	}
	// n8n's executions per key.
	wfID := q.WorkflowID(t, "n8n-invoker slow answer")
	var execs map[string][]*n8napi.Execution
	for range 60 {
		execs = q.ExecutionsByHeader(ctx, t, wfID, "idempotency-key", func(k string) bool { return strings.HasPrefix(k, prefix) })
		if len(execs) == n {
			break
		}
		time.Sleep(time.Second)
	}
	lostAnswer := map[string]bool{}
	for _, r := range proxy.Records() {
		if r.Fault == chaos.ResetAfter || r.Fault == chaos.CutWhileRunning || r.ClientGone {
			lostAnswer[r.Key] = true
		}
	}
	lost, extra := 0, 0
	for i := range n {
		k := prefix + strconv.Itoa(i)
		ok := 0
		for _, e := range execs[k] {
			if e.Status == n8napi.StatusSuccess {
				ok++
			}
		}
		switch {
		case ok == 0 && statuses[outbox.Succeeded] == n:
			lost++
			t.Errorf("key %s succeeded but n8n has no successful execution", k)
		case ok > 1:
			extra += ok - 1
			if !lostAnswer[k] {
				t.Errorf("key %s ran %d times in n8n without a lost answer to explain it", k, ok)
			}
			explain(t, k, execs[k], proxy.Records(), killedKeys, killTime)
		}
	}
	// Only the executions the SIGKILLed n8n worker left "running" may end
	// unresolved (dead-lettered without a re-send, a known state).
	if statuses[outbox.Succeeded]+min(statuses[outbox.DeadLettered], len(crashed)) < n*95/100 || statuses[outbox.DeadLettered] > len(crashed) {
		t.Errorf("statuses %v with %d executions of the killed n8n worker: too few delivered", statuses, len(crashed))
	}
	if statuses[outbox.Queued]+statuses[outbox.Running] != 0 {
		t.Errorf("statuses %v: invocations left undelivered", statuses)
	}
	t.Logf("outbox fleet: %d enqueued, 3 worker processes, one SIGKILLed after %d ended with %d keys in flight (and restarted), n8n worker %d SIGKILLed running %v; "+
		"statuses %v; n8n: lost %d, extra successful executions %d (each after a lost answer); proxy: %d requests",
		n, killedAt, len(killedKeys), nw, crashed, statuses, lost, extra, len(proxy.Records()))
}

// explain logs what is known of a key that n8n ran more than once: its
// executions, the requests the proxy saw, and whether the killed worker
// process had it in flight.
func explain(t *testing.T, key string, execs []*n8napi.Execution, recs []chaos.Record, killed map[string]time.Time, killTime time.Time) {
	t.Helper()
	var b strings.Builder
	if at, ok := killed[key]; ok {
		fmt.Fprintf(&b, "  in flight at the killed worker process (written ahead %s, killed %s)\n", at.Format("15:04:05.000"), killTime.Format("15:04:05.000"))
	}
	ts := func(p *time.Time) string {
		if p == nil {
			return "-"
		}
		return p.Format("15:04:05.000")
	}
	for _, e := range execs {
		fmt.Fprintf(&b, "  execution %s %s started %s stopped %s\n", e.ID, e.Status, ts(e.StartedAt), ts(e.StoppedAt))
	}
	for _, r := range recs {
		if r.Key == key {
			fmt.Fprintf(&b, "  request %s %s-%s fault %s forwarded %v status %d client gone %v\n", r.RequestID, r.At.Format("15:04:05.000"), r.End.Format("15:04:05.000"), r.Fault, r.Forwarded, r.Status, r.ClientGone)
		}
	}
	t.Logf("key %s ran more than once:\n%s", key, b.String())
}
