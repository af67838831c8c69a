package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/outbox"
	"github.com/n8n-invoker/n8n-invoker/secret"
	"github.com/n8n-invoker/n8n-invoker/server"
)

// TestServeReplicasShareThePostgreSQLStore runs two serve replicas on one
// PostgreSQL store (as behind a load balancer): an invocation submitted to
// one is awaited on the other, which learns its end from the store, and
// the same idempotency key sent to the other replica answers with the
// same invocation.
func TestServeReplicasShareThePostgreSQLStore(t *testing.T) {
	t.Parallel()
	if os.Getenv("N8N_INVOKER_PG_DSN") == "" {
		if os.Getenv("N8N_INVOKER_REQUIRE_N8N") == "1" {
			t.Fatal("N8N_INVOKER_PG_DSN is not set: scripts/cluster db starts PostgreSQL")
		}
		t.Skip("no PostgreSQL (N8N_INVOKER_PG_DSN)")
	}
	srv := stub(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	schema := fmt.Sprintf("serve_%d", time.Now().UnixNano())
	y := fmt.Sprintf("n8n: {base_url: %q, timeout: 5}\ndlq: {enabled: true}\nstore: {backend: postgres, dsn: \"${N8N_INVOKER_PG_DSN}\", schema: %s}\nworkflows:\n  echo: {path: echo}\n", srv.URL, schema)
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	token, line, _ := server.NewToken("replicas", "read", "submit")
	tokens := filepath.Join(dir, "tokens")
	_ = os.WriteFile(tokens, []byte(line+"\n"), 0o600)
	urlA, stopA := startServe(t, "-c", cfg, "--tokens", tokens)
	defer stopA()
	urlB, stopB := startServe(t, "-c", cfg, "--tokens", tokens, "--workers", "-1") // B only answers
	defer stopB()
	a, _ := server.NewClient(urlA, secret.New(token), nil)
	b, _ := server.NewClient(urlB, secret.New(token), nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req := &invocation.Request{Workflow: "echo", Params: map[string]any{"via": "A"}, IdempotencyKey: "replica-key"}
	id, created, err := a.Submit(ctx, req)
	if err != nil || !created {
		t.Fatalf("submit to A: %v %v", created, err)
	}
	inv, err := b.Await(ctx, id)
	if err != nil || inv.Status != outbox.Succeeded || inv.Result == nil {
		t.Fatalf("await on B: %+v %v", inv, err)
	}
	id2, created, err := b.Submit(ctx, req)
	if err != nil || created || id2 != id {
		t.Errorf("the same key on B: %s %v %v, want %s, not created", id2, created, err, id)
	}
}
