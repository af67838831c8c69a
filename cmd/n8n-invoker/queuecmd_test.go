package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestQueueCommands: enqueue stores (idempotent by key, refusing a
// conflicting key and an unknown workflow), invocations get and list
// show it queued, a worker delivers it, invocations wait prints its end;
// on the SQLite default and on PostgreSQL (River).
func TestQueueCommands(t *testing.T) {
	t.Parallel()
	stores := map[string]string{"sqlite": "store: {path: store.db}\n"}
	if os.Getenv("N8N_INVOKER_PG_DSN") != "" || os.Getenv("N8N_INVOKER_REQUIRE_N8N") == "1" {
		schema := fmt.Sprintf("cliq_%d", time.Now().UnixNano())
		stores["postgres"] = "store: {backend: postgres, dsn: \"${N8N_INVOKER_PG_DSN}\", schema: " + schema + "}\n"
	}
	for name, store := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := stub(t)
			cfg := filepath.Join(t.TempDir(), "c.yaml")
			y := fmt.Sprintf("n8n: {base_url: %q, timeout: 5}\ninvokers: {http: {max_retries: 1, backoff_factor: 0.01}}\nworkflows:\n  echo: {path: echo}\n  fail: {path: fail}\ndlq: {enabled: true, on: [transient, unknown, permanent]}\nqueue: {poll: 50ms}\n%s", srv.URL, store)
			if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
				t.Fatal(err)
			}
			cli := func(ctx context.Context, args ...string) (int, string, string) {
				var out, errOut bytes.Buffer
				code := run(ctx, append(args, "-c", cfg), nil, &out, &errOut)
				return code, out.String(), errOut.String()
			}
			code, out, errOut := cli(t.Context(), "enqueue", "echo", "-p", "a=1", "--idempotency-key", "k1")
			var got struct{ ID string }
			if code != 0 || json.Unmarshal([]byte(out), &got) != nil || !strings.HasPrefix(got.ID, "inv_") {
				t.Fatalf("enqueue: exit %d, %q, %s", code, out, errOut)
			}
			tests := []struct {
				name string
				args []string
				code int
				want string
			}{
				{"same key again", []string{"enqueue", "echo", "-p", "a=1", "--idempotency-key", "k1"}, 0, got.ID},
				{"conflicting key", []string{"enqueue", "echo", "-p", "a=2", "--idempotency-key", "k1"}, 2, "already stored"},
				{"unknown workflow", []string{"enqueue", "nope"}, 2, "unknown workflow"},
				{"get", []string{"invocations", "get", got.ID}, 0, `"status": "queued"`},
				{"list queued", []string{"invocations", "list", "--status", "queued"}, 0, got.ID},
				{"list bad status", []string{"invocations", "list", "--status", "nope"}, 2, "--status"},
				{"get unknown", []string{"invocations", "get", "inv_nope"}, 2, "no such invocation"},
			}
			for _, tt := range tests {
				code, out, errOut := cli(t.Context(), tt.args...)
				if code != tt.code || !strings.Contains(out+errOut, tt.want) {
					t.Errorf("%s: exit %d (want %d), stdout %q, stderr %q", tt.name, code, tt.code, out, errOut)
				}
			}
			ctx, stop := context.WithCancel(t.Context())
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				if code, _, errOut := cli(ctx, "worker", "--workers", "2", "--drain", "5s"); code != 0 {
					t.Errorf("worker: exit %d: %s", code, errOut)
				}
			}()
			defer func() { stop(); wg.Wait() }()
			code, out, errOut = cli(t.Context(), "invocations", "wait", got.ID, "--timeout", "60s")
			if code != 0 || !strings.Contains(out, `"status": "succeeded"`) || !strings.Contains(out, `"a": "1"`) {
				t.Errorf("wait: exit %d, %q, %s", code, out, errOut)
			}
			code, out, errOut = cli(t.Context(), "enqueue", "fail", "--wait", "--timeout", "60s")
			if code != 1 || !strings.Contains(out, `"status": "dead_lettered"`) {
				t.Errorf("enqueue --wait of a failing workflow: exit %d, %q, %s", code, out, errOut)
			}
			code, out, _ = cli(t.Context(), "invocations", "list", "-o", "json")
			if code != 0 || strings.Count(out, "\n") != 2 {
				t.Errorf("list: exit %d, %q", code, out)
			}
		})
	}
}
