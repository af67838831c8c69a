package dlq

import (
	"context"
	"encoding/json"
	"errors"
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

func TestStoreRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "sub", "dlq.db"))
	e := &Entry{Workflow: "w1", Params: json.RawMessage(`{"a":1}`), IdempotencyKey: "k1", RequestID: "r1", Attempts: 4,
		Reason: "exhausted", FirstError: ErrorInfo{"transient", "503"}, LastError: ErrorInfo{"transient", "503"}}
	id, err := s.Put(ctx, e)
	if err != nil || id == 0 {
		t.Fatal(err)
	}
	_, _ = s.Put(ctx, &Entry{Workflow: "w2", IdempotencyKey: "k2", Reason: "circuit-open", LastError: ErrorInfo{"transient", "open"}})
	_, _ = s.Put(ctx, &Entry{Workflow: "w1", IdempotencyKey: "k3", Reason: "failed", LastError: ErrorInfo{"permanent", "boom"}})
	got, err := s.Get(ctx, id)
	if err != nil || got.Workflow != "w1" || string(got.Params) != `{"a":1}` || got.Attempts != 4 || got.LastError.Message != "503" || got.CreatedAt.IsZero() {
		t.Fatalf("get: %+v %v", got, err)
	}
	for _, tt := range []struct {
		f    Filter
		want int
	}{
		{Filter{}, 3}, {Filter{Workflow: "w1"}, 2}, {Filter{Class: "permanent"}, 1}, {Filter{Reason: "circuit-open"}, 1},
		{Filter{IDs: []int64{id}}, 1}, {Filter{Limit: 2}, 2}, {Filter{Since: time.Now().Add(time.Hour)}, 0},
	} {
		l, err := s.List(ctx, tt.f)
		if err != nil || len(l) != tt.want {
			t.Errorf("List(%+v) = %d entries, %v; want %d", tt.f, len(l), err, tt.want)
		}
	}
	if err := s.MarkReplayed(ctx, id, 2, ErrorInfo{"transient", "502 again"}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Get(ctx, id)
	if got.Attempts != 6 || got.Replays != 1 || got.ReplayedAt == nil || got.LastError.Message != "502 again" || got.FirstError.Message != "503" {
		t.Errorf("after replay: %+v", got)
	}
	if err := s.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted entry: %v", err)
	}
	if n, _ := s.Count(ctx); n != 2 {
		t.Errorf("count %d", n)
	}
	if n, _ := s.Purge(ctx, Filter{Workflow: "w1"}); n != 1 {
		t.Errorf("purged %d", n)
	}
}

func TestJournalAndCrashRecovery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dlq.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"done", "failed", "crashed"} {
		if err := s.Begin(ctx, &Inflight{IdempotencyKey: k, Workflow: "w", Params: json.RawMessage(`{"k":"` + k + `"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Complete(ctx, "done", json.RawMessage(`{"status":200}`)); err != nil {
		t.Fatal(err)
	}
	id, err := s.End(ctx, "failed", &Entry{Workflow: "w", IdempotencyKey: "failed", Reason: "exhausted"})
	if err != nil || id == 0 {
		t.Fatal(err)
	}
	if r, ok, err := s.Completed(ctx, "done"); !ok || err != nil || string(r) != `{"status":200}` {
		t.Errorf("completed: %s %v %v", r, ok, err)
	}
	if _, ok, _ := s.Completed(ctx, "crashed"); ok {
		t.Error("an in-flight key counts as completed")
	}
	// A crash: the process ends with "crashed" in flight.
	s.Close()
	s2 := open(t, path)
	if s2.Recovered != 1 {
		t.Fatalf("recovered %d", s2.Recovered)
	}
	l, _ := s2.List(ctx, Filter{Reason: "interrupted"})
	if len(l) != 1 || l[0].IdempotencyKey != "crashed" || string(l[0].Params) != `{"k":"crashed"}` || !strings.Contains(l[0].LastError.Message, "in flight") {
		t.Errorf("interrupted entries: %+v", l)
	}
	if _, ok, _ := s2.Completed(ctx, "done"); !ok {
		t.Error("completed key lost across the restart")
	}
}

func TestRetention(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dlq.db")
	s, _ := Open(ctx, path, Options{Retention: 50 * time.Millisecond})
	_ = s.Begin(ctx, &Inflight{IdempotencyKey: "k", Workflow: "w"})
	_ = s.Complete(ctx, "k", nil)
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
