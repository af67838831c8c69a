package n8ntest

import (
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

	"github.com/n8n-invoker/n8n-invoker/n8napi"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// API returns a public API client for the instance.
func (i *Instance) API(t testing.TB) *n8napi.Client {
	t.Helper()
	c, err := n8napi.NewClient(i.BaseURL, secret.New(i.APIKey))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// WorkflowID returns the id of the fixture workflow named name (for
// example "n8n-invoker echo").
func (i *Instance) WorkflowID(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for w, err := range i.API(t).Workflows.All(ctx, &n8napi.WorkflowListOptions{Name: name}) {
		if err != nil {
			t.Fatal(err)
		}
		if w.Name == name {
			return w.ID.String()
		}
	}
	t.Fatalf("no workflow named %q", name)
	return ""
}

// ExecutionsByHeader lists the executions of workflowID (running ones
// included) and groups those whose webhook request carried header (lower
// case, e.g. "idempotency-key") with a value accepted by keep.
func (i *Instance) ExecutionsByHeader(ctx context.Context, t testing.TB, workflowID, header string, keep func(string) bool) map[string][]*n8napi.Execution {
	t.Helper()
	out := map[string][]*n8napi.Execution{}
	seen := map[n8napi.ID]bool{}
	api := i.API(t)
	for _, status := range []string{"", n8napi.StatusRunning} {
		opts := &n8napi.ExecutionListOptions{WorkflowID: workflowID, Status: status, IncludeData: true, Limit: 250}
		for e, err := range api.Executions.All(ctx, opts) {
			if err != nil {
				t.Fatalf("listing executions: %v", err)
			}
			if seen[e.ID] {
				continue
			}
			seen[e.ID] = true
			if v := e.RequestHeader(header); v != "" && keep(v) {
				out[v] = append(out[v], e)
			}
		}
	}
	return out
}

// Private is an n8n of a test's own, started by scripts/n8n with its own
// data directory and port, which the test may kill and restart.
type Private struct {
	*Instance
	state string
	repo  string
	env   []string
	t     testing.TB
}

// StartPrivate starts a private n8n (about 10-25 s) and stops it when the
// test ends. It skips or fails as Require does when the shared n8n is not
// available (the install is the same). env adds n8n settings
// (NAME=value).
func StartPrivate(t testing.TB, env ...string) *Private {
	t.Helper()
	Require(t)
	repo := filepath.Dir(filepath.Dir(EnvFile()))
	p := &Private{state: t.TempDir(), repo: repo, t: t, env: env}
	p.run("start")
	t.Cleanup(func() { p.run("stop") })
	return p
}

func (p *Private) run(cmd string) {
	p.t.Helper()
	c := exec.Command(filepath.Join(p.repo, "scripts", "n8n"), cmd)
	c.Env = append(os.Environ(), "N8N_INVOKER_STATE="+p.state, "N8N_INVOKER_EXTRA_ENV="+strings.Join(p.env, " "))
	c.Dir = p.repo
	out, err := c.CombinedOutput()
	if err != nil {
		p.t.Fatalf("scripts/n8n %s: %v\n%s", cmd, err, out)
	}
	if cmd == "start" {
		vars, err := readEnv(filepath.Join(p.state, "env"))
		if err != nil {
			p.t.Fatal(err)
		}
		p.Instance = instanceFrom(vars)
	}
}

// Kill sends SIGKILL to the private n8n (its task runner goes with it).
func (p *Private) Kill() {
	p.t.Helper()
	b, err := os.ReadFile(filepath.Join(p.state, "n8n.pid"))
	if err != nil {
		p.t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		p.t.Fatalf("kill n8n: %v", err)
	}
	for range 100 {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Restart starts the private n8n again on the same data and port
// (scripts/n8n keeps the port while it is free).
func (p *Private) Restart() {
	p.t.Helper()
	p.run("start")
}

// String describes the instance.
func (p *Private) String() string { return fmt.Sprintf("private n8n at %s", p.BaseURL) }
