package dlq_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/n8n-invoker/n8n-invoker/dlq"
)

func ExampleOpen() {
	dir, _ := os.MkdirTemp("", "dlq")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	store, err := dlq.Open(ctx, filepath.Join(dir, "dlq.db"), dlq.Options{})
	if err != nil {
		panic(err)
	}
	// An invocation is written ahead, leased to this process for a
	// minute, then fails and becomes a dead letter.
	lease, _, _ := store.Begin(ctx, &dlq.Inflight{IdempotencyKey: "order-42", Workflow: "orders", Params: json.RawMessage(`{"id":42}`)},
		"host-a/1234", time.Minute)
	id, _ := store.End(ctx, lease, &dlq.Entry{Workflow: "orders", IdempotencyKey: "order-42", Params: json.RawMessage(`{"id":42}`),
		Attempts: 4, Reason: "exhausted", LastError: dlq.ErrorInfo{Class: "transient", Message: "HTTP 503"}})
	entries, _ := store.List(ctx, dlq.Filter{Workflow: "orders"})
	fmt.Println(id, len(entries), entries[0].Reason, string(entries[0].Params))
	_ = store.Close()
	// Output: 1 1 exhausted {"id":42}
}
