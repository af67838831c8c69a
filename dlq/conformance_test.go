package dlq_test

import (
	"context"
	"testing"

	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/dlq/dlqtest"
	"path/filepath"
	"sync"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex // the parallel subtests open their stores at once
	var last string
	dlqtest.Run(t, func(t *testing.T) dlq.Backend {
		path := filepath.Join(t.TempDir(), "dlq.db")
		mu.Lock()
		last = path
		mu.Unlock()
		s, err := dlq.Open(t.Context(), path, dlq.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, dlqtest.Options{Reopen: func(t *testing.T) dlq.Backend {
		mu.Lock()
		path := last
		mu.Unlock()
		s, err := dlq.Open(t.Context(), path, dlq.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}})
}

// BenchmarkJournal measures one journaled invocation's writes: Begin
// (write-ahead) and Complete (success record), each a durable commit,
// with one caller and with 8 (dlqtest.Bench; contrib/postgres runs the same).
func BenchmarkJournal(b *testing.B) {
	for _, tc := range []struct {
		name   string
		normal bool
	}{{"sync=full", false}, {"sync=normal", true}} {
		b.Run(tc.name, func(b *testing.B) {
			dlqtest.Bench(b, func(b *testing.B) dlq.Backend {
				s, err := dlq.Open(context.Background(), filepath.Join(b.TempDir(), "dlq.db"), dlq.Options{SyncNormal: tc.normal})
				if err != nil {
					b.Fatal(err)
				}
				return s
			})
		})
	}
}
