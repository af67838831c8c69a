package policy

import (
	"context"
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
// unloaded latency, and limit*(1 - minRTT/rtt) estimates how many calls
// wait in the server's queue. Below Alpha the limit grows by about one per
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
	smoothed    float64
	freed       chan struct{}
}

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
		if a.smoothed == 0 {
			a.smoothed = float64(rtt)
		} else {
			a.smoothed = 0.8*a.smoothed + 0.2*float64(rtt)
		}
		queue := a.limit * (1 - float64(a.minRTT)/a.smoothed)
		switch {
		case queue < a.alpha && busy:
			a.limit += 1 / a.limit
		case queue > a.beta:
			a.limit -= 1 / a.limit
		}
	}
	a.limit = min(float64(a.max), max(float64(a.min), a.limit))
}

// Limit returns the current limit.
func (a *Adaptive) Limit() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return int(a.limit)
}
