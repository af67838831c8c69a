package dlq

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkJournal measures one journaled invocation's writes: Begin
// (write-ahead) and Complete (success record), each a durable commit.
func BenchmarkJournal(b *testing.B) {
	for _, tc := range []struct {
		name   string
		normal bool
	}{{"sync=full", false}, {"sync=normal", true}} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := Open(context.Background(), filepath.Join(b.TempDir(), "dlq.db"), Options{SyncNormal: tc.normal})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			params := json.RawMessage(`{"email":"user@example.com","plan":"premium"}`)
			i := 0
			for b.Loop() {
				k := "k" + strconv.Itoa(i)
				i++
				l, _, err := s.Begin(ctx, &Inflight{IdempotencyKey: k, Workflow: "w", Params: params}, "bench", time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Complete(ctx, l, params); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "invocations/s")
		})
	}
}

// BenchmarkDeadLetter measures storing a failed invocation (End with an
// entry, after Begin).
func BenchmarkDeadLetter(b *testing.B) {
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "dlq.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	i := 0
	for b.Loop() {
		k := "k" + strconv.Itoa(i)
		i++
		l, _, _ := s.Begin(ctx, &Inflight{IdempotencyKey: k, Workflow: "w"}, "bench", time.Minute)
		if _, err := s.End(ctx, l, &Entry{Workflow: "w", IdempotencyKey: k, Reason: "exhausted", LastError: ErrorInfo{"transient", "503"}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}
