package invoker_test

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
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/internal/n8ntest"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
)

const crashItems = 40

func crashBatch(prefix string) []invoker.BatchItem {
	b := make([]invoker.BatchItem, crashItems)
	for i := range b {
		b[i] = invoker.BatchItem{Workflow: n8ntest.Echo, Params: map[string]any{"i": i}, IdempotencyKey: prefix + strconv.Itoa(i)}
	}
	return b
}

func crashConfigFile(t *testing.T, n8n *n8ntest.Instance, dbPath string) string {
	p := filepath.Join(filepath.Dir(dbPath), "config.yaml")
	y := n8n.ConfigYAML() + fmt.Sprintf("dlq: {enabled: true}\nstore: {path: %q}\n", dbPath)
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCrashSafety runs a batch with the dead-letter queue in a child
// process against the real n8n, SIGKILLs it in the middle, then starts
// again: the batch is run again with the same keys (keys that succeeded
// are not fired again; keys the crash left in flight are taken over from
// the dead process at once, since it was on this machine, and reconciled
// with n8n before being sent), and the queue is replayed. Every item must
// end succeeded, and n8n must have run each key once, or twice only for
// a key the crash left in flight.
func TestCrashSafety(t *testing.T) {
	if os.Getenv("N8N_INVOKER_CRASH_CHILD") == "1" {
		crashChild(t)
		return
	}
	t.Parallel()
	n8n := n8ntest.Require(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "dlq.db")
	cfgPath := crashConfigFile(t, n8n, db)
	prefix := fmt.Sprintf("crash-%d-", time.Now().UnixNano())

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashSafety$", "-test.count=1")
	cmd.Env = append(os.Environ(), "N8N_INVOKER_CRASH_CHILD=1", "N8N_INVOKER_CRASH_CONFIG="+cfgPath, "N8N_INVOKER_CRASH_PREFIX="+prefix)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	done := 0
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "done "); ok {
			done, _ = strconv.Atoi(n)
			if done >= 15 {
				break
			}
		}
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if done < 15 {
		t.Fatalf("the child ended after %d items", done)
	}

	// Start again.
	m, err := invoker.FromConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	store := m.DLQ().(*dlq.SQLite)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	recovered, _ := store.Inflight(ctx, dlq.InflightFilter{})
	inFlight := map[string]bool{}
	for _, e := range recovered {
		inFlight[e.IdempotencyKey] = true
	}
	start := time.Now()
	results, err := m.ExecuteBatch(ctx, crashBatch(prefix), 4)
	if err != nil {
		t.Fatal(err)
	}
	dedup := 0
	for i, r := range results {
		if r.Err != nil {
			t.Errorf("item %d after restart: %v", i, r.Err)
			continue
		}
		if r.Result.Deduplicated {
			dedup++
		}
	}
	if d := time.Since(start); d > 25*time.Second {
		t.Errorf("the batch after the restart took %s: the dead process's leases were waited out", d)
	}
	if left, _ := store.Inflight(ctx, dlq.InflightFilter{}); len(left) != 0 {
		t.Errorf("%d invocations still in flight after the batch", len(left))
	}
	rep, err := m.ReplayDeadLetters(ctx, dlq.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := store.Count(ctx); n != 0 {
		t.Errorf("%d entries left in the queue after replay (%+v)", n, rep)
	}

	// n8n's executions, per key.
	wfID := n8n.WorkflowID(t, "n8n-invoker echo")
	var execs map[string][]*n8napi.Execution
	for range 20 {
		execs = n8n.ExecutionsByHeader(ctx, t, wfID, "idempotency-key", func(k string) bool { return strings.HasPrefix(k, prefix) })
		if len(execs) == crashItems {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	lost, dup := 0, 0
	for i := range crashItems {
		k := prefix + strconv.Itoa(i)
		switch n := len(execs[k]); {
		case n == 0:
			lost++
			t.Errorf("item %d: n8n never ran it", i)
		case n > 1:
			dup += n - 1
			if !inFlight[k] {
				t.Errorf("item %d ran %d times but was not in flight at the crash", i, n)
			}
		}
	}
	t.Logf("crash: %d items, child SIGKILLed after %d; on restart %d in flight taken over, %d deduplicated by their idempotency record or by n8n's executions (not fired), replay: %+v; lost %d, duplicates fired %d (all explained by in-flight records)",
		crashItems, done, len(recovered), dedup, struct{ Selected, Succeeded, AlreadyDone, Failed int }{rep.Selected, rep.Succeeded, rep.AlreadyDone, rep.Failed}, lost, dup)
}

func crashChild(t *testing.T) {
	m, err := invoker.FromConfig(os.Getenv("N8N_INVOKER_CRASH_CONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = m.ExecuteBatch(context.Background(), crashBatch(os.Getenv("N8N_INVOKER_CRASH_PREFIX")), 4,
		invoker.WithProgress(func(p invoker.Progress) { fmt.Printf("done %d\n", p.Done()) }))
	time.Sleep(time.Hour) // the parent kills us
}
