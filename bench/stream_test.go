package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"

	invoker "github.com/n8n-invoker/n8n-invoker"
)

// TestStreamRSS streams N_STREAM_ITEMS items through ExecuteStream and
// prints the process's peak RSS; bench/run.sh runs it in separate
// processes for 10,000 and 1,000,000 items.
func TestStreamRSS(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("N_STREAM_ITEMS"))
	if n == 0 {
		t.Skip("set N_STREAM_ITEMS")
	}
	m := managerT(t)
	seq, err := m.ExecuteStream(context.Background(), func(yield func(invoker.BatchItem) bool) {
		for i := range n {
			if !yield(invoker.BatchItem{Workflow: "onboarding", Params: map[string]any{"i": i}}) {
				return
			}
		}
	}, 256)
	if err != nil {
		t.Fatal(err)
	}
	done := 0
	for r := range seq {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		done++
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Printf("STREAM items=%d done=%d maxrss_kb=%d\n", n, done, ru.Maxrss)
}
