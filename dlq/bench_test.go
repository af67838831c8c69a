package dlq

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

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
