package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/n8n-invoker/n8n-invoker/internal/n8ntest"
)

func writeConfig(t *testing.T, baseURL string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	yaml := fmt.Sprintf(`n8n: {base_url: %q, timeout: 5}
invokers: {http: {max_retries: 1, backoff_factor: 0.01}}
workflows:
  echo: {path: echo}
  fail: {path: fail}
  user-onboarding: {path: user-onboarding, response_mode: responseNode}
  order: {path: "orders/:id", webhook_id: "00000000-0000-4000-8000-000000000001"}
`, baseURL)
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func stub(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/webhook/fail" {
			w.WriteHeader(500)
			fmt.Fprint(w, `{"message":"Error in workflow"}`)
			return
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, `{"got":%s}`, b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRunExitCodes(t *testing.T) {
	t.Parallel()
	srv := stub(t)
	good := writeConfig(t, srv.URL)
	down := writeConfig(t, "http://127.0.0.1:1")
	dataFile := filepath.Join(t.TempDir(), "d.json")
	_ = os.WriteFile(dataFile, []byte(`{"n": 5, "email": "x"}`), 0o600)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte("n8n:\n  base_url: http://x\ninvokers:\n  http:\n    max_retries: -1\n"), 0o600)

	tests := []struct {
		name   string
		args   []string
		stdin  string
		code   int
		stdout string
		stderr string
	}{
		{"success", []string{"run", "echo", "-p", "email=user@example.com", "-c", good}, "", 0, `"got": {` + "\n" + `      "email": "user@example.com"`, ""},
		{"data file and param override", []string{"run", "echo", "--data", "@" + dataFile, "-p", "email=y", "-c", good}, "", 0, `"n": 5`, ""},
		{"data stdin", []string{"run", "echo", "--data", "@-", "-c", good}, `{"s": true}`, 0, `"s": true`, ""},
		{"workflow failed", []string{"run", "fail", "-c", good}, "", 1, `"status": 500`, "Error in workflow"},
		{"unknown workflow", []string{"run", "nope", "-c", good}, "", 2, "", "unknown workflow \"nope\""},
		{"bad param", []string{"run", "echo", "-p", "novalue", "-c", good}, "", 2, "", "want key=value"},
		{"bad data", []string{"run", "echo", "--data", "[1]", "-c", good}, "", 2, "", "want a JSON object"},
		{"bad config", []string{"run", "echo", "-c", bad}, "", 2, "", "bad.yaml:5:5: invokers.http.max_retries"},
		{"missing config", []string{"run", "echo", "-c", "/nonexistent.yaml"}, "", 2, "", "nonexistent.yaml"},
		{"unreachable", []string{"run", "echo", "-c", down}, "", 3, `"class": "transient"`, "connection refused"},
		{"no workflow", []string{"run"}, "", 2, "", "accepts 1 arg"},
		{"missing path parameter", []string{"run", "order", "-c", good}, "", 2, `"code": "bad-request"`, "path parameter(s) id"},
		{"wait without an API key", []string{"run", "echo", "--wait", "-c", good}, "", 2, `"code": "bad-request"`, "needs n8n's API"},
		{"unknown flag", []string{"run", "echo", "--nope"}, "", 2, "", "unknown flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			code := run(context.Background(), tt.args, strings.NewReader(tt.stdin), &out, &errOut)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %s", code, tt.code, errOut.String())
			}
			if !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errOut.String(), tt.stderr) {
				t.Errorf("stdout %q\nstderr %q", out.String(), errOut.String())
			}
		})
	}
}

func TestRunInterrupted(t *testing.T) {
	t.Parallel()
	srv := stub(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"run", "echo", "-c", writeConfig(t, srv.URL)}, nil, &out, &errOut); code != exitInterrupted {
		t.Errorf("exit %d, stderr %s", code, errOut.String())
	}
}

// TestDemoAgainstRealN8N runs what `make demo` runs.
func TestDemoAgainstRealN8N(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"run", "user-onboarding", "-p", "email=user@example.com", "-p", "plan=premium", "-c", writeConfig(t, n8n.BaseURL)}, nil, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var res struct {
		ExecutionID string `json:"execution_id"`
		Output      struct {
			Welcome string `json:"welcome"`
		} `json:"output"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatal(err, out.String())
	}
	if res.ExecutionID == "" || res.Output.Welcome != "Welcome aboard, user@example.com!" {
		t.Errorf("output %s", out.String())
	}
}

func TestBatchCommand(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/webhook/fail" {
			w.WriteHeader(500)
			fmt.Fprint(w, `{"message":"Error in workflow"}`)
			return
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, `{"got":%s}`, b)
	}))
	defer srv.Close()
	cfg := writeConfig(t, srv.URL)
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		_ = os.WriteFile(p, []byte(s), 0o600)
		return p
	}
	var lines strings.Builder
	for i := range 25 {
		fmt.Fprintf(&lines, `{"id":"echo","params":{"i":%d}}`+"\n", i)
	}
	good := write("good.jsonl", lines.String()+"\n")
	mixed := write("mixed.jsonl", `{"id":"echo","params":{"i":1}}`+"\n"+`{"id":"fail"}`+"\n")
	bad := write("bad.jsonl", `{"id":"echo"}`+"\n"+`{"id":"echo", "params": [1}`+"\n")
	noID := write("noid.jsonl", `{"params":{}}`+"\n")

	tests := []struct {
		name   string
		args   []string
		stdin  string
		code   int
		lines  int
		stderr string
	}{
		{"all succeed", []string{"batch", "-f", good, "--concurrency", "4"}, "", 0, 25, "25 items"},
		{"adaptive", []string{"batch", "-f", good, "--concurrency", "auto"}, "", 0, 25, "25 succeeded"},
		{"some fail", []string{"batch", "-f", mixed}, "", 1, 2, "1 succeeded, 1 failed"},
		{"stdin", []string{"batch", "-f", "-"}, `{"id":"echo","params":{"s":"x"}}` + "\n", 0, 1, "1 succeeded"},
		{"malformed line", []string{"batch", "-f", bad}, "", 2, 0, "bad.jsonl:2:"},
		{"missing id", []string{"batch", "-f", noID}, "", 2, 0, `noid.jsonl:1: missing "workflow"`},
		{"no file", []string{"batch"}, "", 2, 0, "--file is required"},
		{"bad concurrency", []string{"batch", "-f", good, "--concurrency", "0"}, "", 2, 0, "--concurrency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := hits.Load()
			var out, errOut bytes.Buffer
			code := run(context.Background(), append(tt.args, "-c", cfg), strings.NewReader(tt.stdin), &out, &errOut)
			if code != tt.code || !strings.Contains(errOut.String(), tt.stderr) {
				t.Fatalf("exit %d (want %d); stderr %s", code, tt.code, errOut.String())
			}
			got := strings.Count(out.String(), "\n")
			if got != tt.lines {
				t.Errorf("%d result lines, want %d:\n%s", got, tt.lines, out.String())
			}
			if tt.code == 2 && hits.Load() != before {
				t.Errorf("a usage error still sent %d requests", hits.Load()-before)
			}
			seen := map[int]bool{}
			for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				if l == "" {
					continue
				}
				var bl batchLine
				if err := json.Unmarshal([]byte(l), &bl); err != nil || seen[bl.Index] {
					t.Errorf("line %q: %v", l, err)
				}
				seen[bl.Index] = true
				if !bl.OK && (bl.Error == "" || bl.Class == "") {
					t.Errorf("failed line without error or class: %s", l)
				}
			}
		})
	}
}

// TestAPICommandsAgainstRealN8N runs `run <id> --wait`, `workflows list`
// and `executions get|list|wait|retry` against the real n8n.
func TestAPICommandsAgainstRealN8N(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	p := filepath.Join(t.TempDir(), "api.yaml")
	_ = os.WriteFile(p, []byte(fmt.Sprintf("n8n: {base_url: %q, api_key: %q}\n", n8n.BaseURL, n8n.APIKey)), 0o600)
	cli := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append(args, "-c", p), nil, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	slowID := n8n.WorkflowID(t, "n8n-invoker slow")
	code, out, errOut := cli("run", slowID, "-p", "job=7", "--wait")
	var res struct {
		ExecutionID string `json:"execution_id"`
		Status      string `json:"execution_status"`
		// With --wait the webhook's answer stays the output; the last
		// node's items come next to it.
		Last []struct {
			Done bool `json:"done"`
		} `json:"last_node_output"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || len(res.Last) != 1 || !res.Last[0].Done || res.Status != "success" || res.ExecutionID == "" {
		t.Fatalf("run --wait: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, _ := cli("workflows", "list", "--active"); code != 0 || !strings.Contains(out, slowID) {
		t.Errorf("workflows list: exit %d\n%s", code, out)
	}
	if code, out, _ := cli("executions", "get", res.ExecutionID); code != 0 || !strings.Contains(out, `"status": "success"`) {
		t.Errorf("executions get: exit %d\n%s", code, out)
	}
	if code, out, _ := cli("executions", "wait", res.ExecutionID); code != 0 || !strings.Contains(out, res.ExecutionID) {
		t.Errorf("executions wait: exit %d\n%s", code, out)
	}
	if code, out, _ := cli("executions", "list", "--workflow", slowID, "--limit", "2"); code != 0 || strings.Count(out, "\n") < 1 ||
		strings.Count(out, "\n") > 2 || !strings.Contains(out, res.ExecutionID) {
		t.Errorf("executions list: exit %d\n%s", code, out)
	}
	// A failed execution: run --wait reports n8n's message and node; retry
	// runs it again.
	failID := n8n.WorkflowID(t, "n8n-invoker fail")
	code, out, errOut = cli("run", failID, "--wait")
	if code != 1 || !strings.Contains(errOut, `in node "Fail": boom from code node`) {
		t.Fatalf("run --wait of a failing workflow: exit %d\n%s\n%s", code, out, errOut)
	}
	var failed struct{ Error string }
	_ = json.Unmarshal([]byte(out), &failed)
	execID := strings.Fields(strings.SplitN(failed.Error, "execution ", 2)[1])[0]
	if code, _, errOut := cli("executions", "retry", execID); code != 1 || !strings.Contains(errOut, "boom from code node") {
		t.Errorf("executions retry: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := cli("executions", "get", "999999999"); code != 1 || !strings.Contains(errOut, "404") {
		t.Errorf("unknown execution: exit %d %s", code, errOut)
	}
}

// TestDLQCommands runs the dlq commands on the embedded SQLite store and on
// the PostgreSQL store (the CLI has every backend).
func TestDLQCommands(t *testing.T) {
	t.Parallel()
	stores := map[string]string{"sqlite": "store: {path: dlq.db}\n"}
	if os.Getenv("N8N_INVOKER_PG_DSN") != "" || os.Getenv("N8N_INVOKER_REQUIRE_N8N") == "1" {
		schema := fmt.Sprintf("cli_%d", time.Now().UnixNano())
		stores["postgres"] = "store: {backend: postgres, dsn: \"${N8N_INVOKER_PG_DSN}\", schema: " + schema + "}\n"
	}
	for name, store := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dlqCommands(t, name, store)
		})
	}
}

func dlqCommands(t *testing.T, backend, store string) {
	var up atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			w.WriteHeader(503)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ok":true}`)
	}))
	defer srv.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf(`n8n: {base_url: %q, timeout: 5}
invokers: {http: {max_retries: 1, backoff_factor: 0.01}}
workflows: {echo: {path: echo}}
dlq: {enabled: true}
`+store, srv.URL)), 0o600)
	cli := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append(args, "-c", cfg), nil, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	for i := range 3 {
		if code, _, errOut := cli("run", "echo", "-p", "i="+strconv.Itoa(i)); code != 3 || !strings.Contains(errOut, "dead-letter queue as entry") {
			t.Fatalf("run while down: exit %d %s", code, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "dlq.db")); (err == nil) != (backend == "sqlite") {
		t.Fatalf("dlq.path is not relative to the config file, or a server store wrote a file: %v", err)
	}
	code, out, _ := cli("dlq", "list")
	if code != 0 || strings.Count(out, "exhausted") != 3 {
		t.Fatalf("dlq list: %d\n%s", code, out)
	}
	code, out, _ = cli("dlq", "list", "-o", "json", "--class", "transient", "--limit", "2")
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, `"idempotency_key"`) {
		t.Fatalf("dlq list json: %d\n%s", code, out)
	}
	if code, out, _ := cli("dlq", "show", "1"); code != 0 || !strings.Contains(out, `"workflow": "echo"`) {
		t.Errorf("dlq show: %d %s", code, out)
	}
	if code, _, _ := cli("dlq", "show", "99"); code != 1 {
		t.Errorf("dlq show unknown: %d", code)
	}
	if code, _, errOut := cli("dlq", "replay", "1"); code != 1 || !strings.Contains(errOut, "1 failed again") {
		t.Errorf("replay while down: %d %s", code, errOut)
	}
	up.Store(true)
	if code, _, errOut := cli("dlq", "replay", "1", "2"); code != 0 || !strings.Contains(errOut, "2 succeeded") {
		t.Errorf("replay: %d %s", code, errOut)
	}
	if code, _, errOut := cli("dlq", "purge"); code != 2 || !strings.Contains(errOut, "--all") {
		t.Errorf("bare purge: %d %s", code, errOut)
	}
	if code, out, _ := cli("dlq", "purge", "--all"); code != 0 || out != "purged 1\n" {
		t.Errorf("purge: %d %q", code, out)
	}
}

func TestHealthCommand(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"health", "-c", writeConfig(t, n8n.BaseURL)}, nil, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), `"healthy": true`) {
		t.Errorf("healthy n8n: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"health", "-c", writeConfig(t, "http://127.0.0.1:1")}, nil, &out, &errOut); code != 1 ||
		!strings.Contains(out.String(), "connection refused") {
		t.Errorf("n8n down: exit %d\n%s", code, out.String())
	}
}

var inFlight3 = regexp.MustCompile(`(?m)^n8n_invoker_batch_in_flight\{[^}]*\} 3$`)

func TestMetricsScrapeableDuringRun(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{}`)
	}))
	defer srv.Close()
	cfg := writeConfig(t, srv.URL)
	items := filepath.Join(t.TempDir(), "items.jsonl")
	_ = os.WriteFile(items, []byte(strings.Repeat(`{"id":"echo"}`+"\n", 6)), 0o600)
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		var out bytes.Buffer
		done <- run(context.Background(), []string{"batch", "-f", items, "--concurrency", "3", "--metrics-addr", "127.0.0.1:0", "-c", cfg}, nil, &out, pw)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var addr string
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "n8n-invoker: serving metrics on "); ok {
			addr = a
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	// The batch is blocked in the stub: scrape while it runs.
	var body string
	for range 100 {
		resp, err := http.Get(addr)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			if inFlight3.MatchString(body) && strings.Contains(body, "n8n_invoker_breaker_state") {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(release)
	if code := <-done; code != 0 {
		t.Errorf("batch exit %d", code)
	}
	if !inFlight3.MatchString(body) || !strings.Contains(body, "n8n_invoker_breaker_state") {
		t.Errorf("metrics during the run:\n%s", body)
	}
}

func TestBatchPackAgainstRealN8N(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf("n8n: {base_url: %q}\nworkflows: {packed: {path: invoker-packed}}\n", n8n.BaseURL)), 0o600)
	var lines strings.Builder
	for i := range 500 {
		fmt.Fprintf(&lines, `{"id":"packed","params":{"n":%d}}`+"\n", i)
	}
	items := filepath.Join(t.TempDir(), "items.jsonl")
	_ = os.WriteFile(items, []byte(lines.String()), 0o600)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"batch", "-f", items, "--pack", "100", "-c", cfg}, nil, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var bl struct {
			Index  int
			OK     bool
			Result struct {
				Output struct {
					Doubled float64 `json:"doubled"`
				} `json:"output"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(l), &bl); err != nil || !bl.OK || bl.Result.Output.Doubled != float64(2*bl.Index) {
			t.Fatalf("line %q", l)
		}
		n++
	}
	if n != 500 || !strings.Contains(errOut.String(), "500 succeeded") {
		t.Errorf("%d lines; %s", n, errOut.String())
	}
}
