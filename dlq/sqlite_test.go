package dlq

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func open(t *testing.T, path string) *SQLite {
	t.Helper()
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestCrashLeavesExpiredLeases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dlq.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Begin(ctx, &Inflight{IdempotencyKey: "crashed", Workflow: "w", Params: json.RawMessage(`{"k":1}`)}, "p1", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	l, _, _ := s.Begin(ctx, &Inflight{IdempotencyKey: "done", Workflow: "w"}, "p1", time.Minute)
	_ = s.Complete(ctx, l, json.RawMessage(`{}`))
	s.Close() // the process ends with "crashed" in flight
	time.Sleep(5 * time.Millisecond)
	s2 := open(t, path)
	if s2.Recovered != 1 {
		t.Fatalf("recovered %d", s2.Recovered)
	}
	in, _ := s2.Inflight(ctx, InflightFilter{ExpiredAt: time.Now()})
	if len(in) != 1 || in[0].IdempotencyKey != "crashed" || string(in[0].Params) != `{"k":1}` {
		t.Errorf("expired in flight: %+v", in)
	}
	if _, ok, _ := s2.Completed(ctx, "done"); !ok {
		t.Error("completed key lost across the restart")
	}
}

// TestMigrationKeepsOldInflight: a record written ahead by a version
// without leases is an expired lease after the upgrade, to be taken over.
func TestMigrationKeepsOldInflight(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dlq.db")
	s := open(t, path)
	if _, err := s.db.Exec("DROP TABLE lease_tokens; DROP INDEX inflight_lease_until; ALTER TABLE inflight DROP COLUMN owner; ALTER TABLE inflight DROP COLUMN token; ALTER TABLE inflight DROP COLUMN lease_until; DROP TABLE submissions; ALTER TABLE inflight DROP COLUMN path_params; ALTER TABLE dead_letters DROP COLUMN path_params; PRAGMA user_version = 2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec("INSERT INTO inflight (idempotency_key, workflow, started_at) VALUES ('old', 'w', 1)"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := open(t, path)
	in, err := s2.Inflight(ctx, InflightFilter{ExpiredAt: time.Now()})
	if err != nil || len(in) != 1 || in[0].Lease.Token >= 0 {
		t.Fatalf("old record after migration: %+v %v", in, err)
	}
	l, taken, err := s2.Begin(ctx, &Inflight{IdempotencyKey: "old", Workflow: "w"}, "p", time.Minute)
	if err != nil || !taken || l.Token <= 0 {
		t.Fatalf("takeover: %+v %v %v", l, taken, err)
	}
}

func TestRetention(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dlq.db")
	s, _ := Open(ctx, path, Options{Retention: 50 * time.Millisecond})
	l, _, _ := s.Begin(ctx, &Inflight{IdempotencyKey: "k", Workflow: "w"}, "p", time.Minute)
	_ = s.Complete(ctx, l, nil)
	time.Sleep(60 * time.Millisecond)
	if _, ok, _ := s.Completed(ctx, "k"); ok {
		t.Error("a key past its retention still counts")
	}
	s.Close()
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.db")
	_ = os.WriteFile(corrupt, []byte(strings.Repeat("this is not sqlite ", 500)), 0o600)
	if _, err := Open(context.Background(), corrupt, Options{}); err == nil || !strings.Contains(err.Error(), "corrupt.db") {
		t.Errorf("corrupt file: %v", err)
	}
	blocker := filepath.Join(dir, "file")
	_ = os.WriteFile(blocker, nil, 0o600)
	if _, err := Open(context.Background(), filepath.Join(blocker, "dlq.db"), Options{}); err == nil {
		t.Error("a path under a file opened")
	}
	newer := filepath.Join(dir, "newer.db")
	s, _ := Open(context.Background(), newer, Options{})
	_, _ = s.db.Exec("PRAGMA user_version = 99")
	s.Close()
	if _, err := Open(context.Background(), newer, Options{}); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("newer schema: %v", err)
	}
	if os.Geteuid() != 0 { // root writes anywhere
		ro := filepath.Join(dir, "ro")
		_ = os.Mkdir(ro, 0o500)
		if _, err := Open(context.Background(), filepath.Join(ro, "dlq.db"), Options{}); err == nil {
			t.Error("unwritable directory accepted")
		}
	}
}
