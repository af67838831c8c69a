package policy

import (
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// serialServer runs one call at a time, 100 ms each, like n8n's main
// loop. (Channels, not a mutex: synctest's clock only advances while
// every goroutine is durably blocked.)
type serialServer struct{ queue chan chan struct{} }

func newSerialServer() *serialServer {
	s := &serialServer{queue: make(chan chan struct{}, 1000)}
	go func() {
		for done := range s.queue {
			time.Sleep(100 * time.Millisecond)
			close(done)
		}
	}()
	return s
}

func (s *serialServer) call() {
	done := make(chan struct{})
	s.queue <- done
	<-done
}

func TestAdaptiveFindsTheKnee(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		a := NewAdaptive(1, 64)
		srv := newSerialServer()
		defer close(srv.queue)
		var inflight, peak atomic.Int64
		var wg sync.WaitGroup
		for range 600 {
			if err := a.Acquire(t.Context()); err != nil {
				t.Fatal(err)
			}
			n := inflight.Add(1)
			if n > peak.Load() {
				peak.Store(n)
			}
			wg.Go(func() {
				start := time.Now()
				srv.call()
				inflight.Add(-1)
				a.Release(time.Since(start), false)
			})
		}
		wg.Wait()
		if l := a.Limit(); l < 3 || l > 8 {
			t.Errorf("limit settled at %d, want 3..8 (alpha 3, beta 6)", l)
		}
		if p := peak.Load(); p > 10 {
			t.Errorf("peak concurrency %d", p)
		}
	})
}

func TestAdaptiveBacksOffOnFailure(t *testing.T) {
	t.Parallel()
	a := NewAdaptive(1, 32)
	a.limit = 20
	for range 20 {
		_ = a.Acquire(t.Context())
	}
	a.Release(0, true)
	if a.Limit() != 15 {
		t.Errorf("limit after failure %d, want 15", a.Limit())
	}
	for range 30 {
		a.inflight++
		a.Release(0, true)
	}
	if a.Limit() != 1 {
		t.Errorf("limit floor %d", a.Limit())
	}
}

// TestAdaptiveIgnoresLatencySpikes: a quarter of the calls meet 200 ms
// of network latency outside the server; the limit still settles where
// the server is kept busy, not at the floor.
func TestAdaptiveIgnoresLatencySpikes(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		a := NewAdaptive(1, 64)
		srv := newSerialServer()
		defer close(srv.queue)
		var wg sync.WaitGroup
		low := 0
		for i := range 800 {
			if err := a.Acquire(t.Context()); err != nil {
				t.Fatal(err)
			}
			if i > 200 && a.Limit() < 3 {
				low++
			}
			wg.Go(func() {
				start := time.Now()
				if i%4 == 1 {
					time.Sleep(200 * time.Millisecond)
				}
				srv.call()
				a.Release(time.Since(start), false)
			})
		}
		wg.Wait()
		t.Logf("limit %d, below 3 for %d calls", a.Limit(), low)
		if l := a.Limit(); l < 3 || l > 10 {
			t.Errorf("limit settled at %d, want 3..10", l)
		}
		if low > 60 {
			t.Errorf("the limit was below 3 for %d of 600 calls after warm-up", low)
		}
	})
}
