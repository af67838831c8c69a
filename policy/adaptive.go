package policy

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Defaults of Adaptive: the limit aims at between Alpha and Beta calls
// queued in the server.
const (
	DefaultAdaptiveAlpha = 3
	DefaultAdaptiveBeta  = 6
)

// Adaptive is a concurrency limit that finds the server's knee by itself,
// in the manner of TCP Vegas: the shortest latency seen estimates the
// unloaded latency, the median of the last 16 latencies the current one
// (a median, not a mean: a few slow answers, such as a network's
// latency spikes, say nothing about the server's queue), and
// limit*(1 - minRTT/rtt) estimates how many calls wait in the server's
// queue. Below Alpha the limit grows by about one per
// round trip, above Beta it shrinks; a failure cuts it by a quarter. For
// n8n, which runs executions mostly one after another, this settles a
// little below the concurrency where throughput peaks, before latency
// climbs. Safe for concurrent use.
type Adaptive struct {
	mu          sync.Mutex
	limit       float64
	min, max    int
	alpha, beta float64
	inflight    int
	minRTT      time.Duration
	window      [adaptiveWindow]time.Duration
	samples     int // how many latencies were seen
	freed       chan struct{}
}

// adaptiveWindow is how many recent latencies Adaptive takes the median
// of.
const adaptiveWindow = 16

// NewAdaptive returns a limit that moves between minLimit and maxLimit,
// starting at min(maxLimit, 2).
func NewAdaptive(minLimit, maxLimit int) *Adaptive {
	minLimit = max(1, minLimit)
	maxLimit = max(minLimit, maxLimit)
	return &Adaptive{
		limit: float64(min(maxLimit, max(minLimit, 2))), min: minLimit, max: maxLimit,
		alpha: DefaultAdaptiveAlpha, beta: DefaultAdaptiveBeta, freed: make(chan struct{}),
	}
}

// Acquire waits until a call may start, or returns ctx's error.
func (a *Adaptive) Acquire(ctx context.Context) error {
	for {
		a.mu.Lock()
		if a.inflight < int(a.limit) {
			a.inflight++
			a.mu.Unlock()
			return nil
		}
		ch := a.freed
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Release ends a call that took rtt; failed says it failed in a way that
// suggests overload (a transient or unknown error). Canceled calls should
// pass rtt 0, which leaves the limit alone.
func (a *Adaptive) Release(rtt time.Duration, failed bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	busy := a.inflight >= int(a.limit)
	a.inflight--
	close(a.freed)
	a.freed = make(chan struct{})
	switch {
	case failed:
		a.limit *= 0.75
	case rtt <= 0:
		return
	default:
		if a.minRTT == 0 || rtt < a.minRTT {
			a.minRTT = rtt
		}
		a.window[a.samples%adaptiveWindow] = rtt
		a.samples++
		queue := a.limit * (1 - float64(a.minRTT)/float64(a.median()))
		switch {
		case queue < a.alpha && busy:
			a.limit += 1 / a.limit
		case queue > a.beta:
			a.limit -= 1 / a.limit
		}
	}
	a.limit = min(float64(a.max), max(float64(a.min), a.limit))
}

// median is the median of the latencies in the window.
func (a *Adaptive) median() time.Duration {
	var buf [adaptiveWindow]time.Duration
	w := buf[:min(a.samples, adaptiveWindow)]
	copy(w, a.window[:])
	slices.Sort(w)
	return w[len(w)/2]
}

// Limit returns the current limit.
func (a *Adaptive) Limit() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return int(a.limit)
}
