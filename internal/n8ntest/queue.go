package n8ntest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Queue is the queue-mode n8n of the local cluster scripts/cluster
// starts (a main and workers on PostgreSQL and Redis), which a test may
// kill workers of and restart them.
type Queue struct {
	*Instance
	// State is the n8n state dir (pids, logs, env file).
	State string
	// DSN and RedisURL are the cluster's database for the invoker's store
	// and its Redis.
	DSN, RedisURL string
}

// RequireQueue returns the running queue-mode n8n, or skips the test
// (fails it under N8N_INVOKER_REQUIRE_N8N=1) when the cluster is not
// started: scripts/cluster start, then source .cluster/env.
func RequireQueue(t testing.TB) *Queue {
	t.Helper()
	state := os.Getenv("N8N_QUEUE_STATE")
	if state == "" {
		state = filepath.Join(Root(), ".cluster", "n8n")
	}
	inst, err := loadFile(filepath.Join(state, "env"))
	if err == nil && os.Getenv("N8N_INVOKER_PG_DSN") == "" {
		err = fmt.Errorf("N8N_INVOKER_PG_DSN is not set")
	}
	if err != nil {
		msg := fmt.Sprintf("no queue-mode n8n cluster (%v); start it with `scripts/cluster start` and source .cluster/env", err)
		if os.Getenv("N8N_INVOKER_REQUIRE_N8N") == "1" {
			t.Fatal(msg + " (N8N_INVOKER_REQUIRE_N8N=1 forbids skipping)")
		}
		t.Skip(msg)
	}
	return &Queue{Instance: inst, State: state, DSN: os.Getenv("N8N_INVOKER_PG_DSN"), RedisURL: os.Getenv("N8N_INVOKER_REDIS_URL")}
}

var (
	started  = regexp.MustCompile(`Worker started execution (\d+)`)
	finished = regexp.MustCompile(`Worker finished execution (\d+)`)
)

// Running returns the executions worker n has started and not finished,
// from its log.
func (q *Queue) Running(n int) []string {
	b, _ := os.ReadFile(filepath.Join(q.State, fmt.Sprintf("worker-%d.log", n)))
	done := map[string]bool{}
	for _, m := range finished.FindAllStringSubmatch(string(b), -1) {
		done[m[1]] = true
	}
	var out []string
	for _, m := range started.FindAllStringSubmatch(string(b), -1) {
		if !done[m[1]] {
			out = append(out, m[1])
		}
	}
	return out
}

// BusiestWorker returns the worker running the most executions now.
func (q *Queue) BusiestWorker() int {
	pids, _ := filepath.Glob(filepath.Join(q.State, "worker-*.pid"))
	best, most := 1, -1
	for _, p := range pids {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "worker-"), ".pid"))
		if err != nil {
			continue
		}
		if r := len(q.Running(n)); r > most {
			best, most = n, r
		}
	}
	return best
}

// KillWorker SIGKILLs worker n and its task runner, and returns the
// executions it was running.
func (q *Queue) KillWorker(t testing.TB, n int) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(q.State, fmt.Sprintf("worker-%d.pid", n)))
	if err != nil {
		t.Fatalf("worker %d: %v", n, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	running := q.Running(n)
	// scripts/n8n starts each worker in a session of its own.
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for range 100 {
		if syscall.Kill(pid, 0) != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return running
}

// StartWorker (re)starts worker n (scripts/cluster worker n).
func (q *Queue) StartWorker(t testing.TB, n int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(Root(), "scripts", "cluster"), "worker", strconv.Itoa(n))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("scripts/cluster worker %d: %v\n%s", n, err, out)
	}
}
