package sim

import (
	"errors"
	"sync"
	"time"
)

// ErrCrashed is what a crashed process's effects get: the store, n8n and
// its API no longer accept them. It is an I/O failure, never a context's
// cancellation.
var ErrCrashed = errors.New("sim: the process crashed: its effects are no longer accepted")

// Proc is a simulated process: the store handle, the transport and the
// API client of one Manager share it. A crash stops its effects from
// being accepted, at once or at a drawn store operation (which may be
// applied and reported failed, as a commit whose answer the crash cut);
// a pause holds every effect of the process (store, n8n, API) until it
// ends, as a stopped process or a long GC pause would.
type Proc struct {
	// Name is the process's name (its Manager's owner in the journal is
	// its own).
	Name string

	mu           sync.Mutex
	crashed      bool
	crashAt      int // the store operation number that crashes it (0: none)
	crashApplied bool
	ops          int
	pausedUntil  time.Time
	dead         chan struct{}
}

// NewProc returns a live process.
func NewProc(name string) *Proc { return &Proc{Name: name, dead: make(chan struct{})} }

// Crash stops the process's effects from being accepted from now on.
func (p *Proc) Crash() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.crashLocked()
}

func (p *Proc) crashLocked() {
	if !p.crashed {
		p.crashed = true
		close(p.dead)
	}
}

// CrashAtStoreOp crashes the process at its n-th store operation from
// now (n >= 1); applied says that operation is applied and then reported
// failed (a commit the crash cut after it reached the disk).
func (p *Proc) CrashAtStoreOp(n int, applied bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.crashAt, p.crashApplied = p.ops+max(n, 1), applied
}

// Disarm cancels a crash CrashAtStoreOp set and reports whether the
// process crashed already.
func (p *Proc) Disarm() (crashed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.crashAt = 0
	return p.crashed
}

// Pause holds every effect of the process for d from now.
func (p *Proc) Pause(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if until := time.Now().Add(d); until.After(p.pausedUntil) {
		p.pausedUntil = until
	}
}

// Crashed reports whether the process crashed.
func (p *Proc) Crashed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.crashed
}

// Dead is closed when the process crashes.
func (p *Proc) Dead() <-chan struct{} { return p.dead }

// gate waits out a pause of the process and returns how long it held the
// caller; ErrCrashed once the process crashed.
func (p *Proc) gate() (time.Duration, error) {
	start := time.Now()
	for {
		p.mu.Lock()
		crashed, until := p.crashed, p.pausedUntil
		p.mu.Unlock()
		if crashed {
			return time.Since(start), ErrCrashed
		}
		d := time.Until(until)
		if d <= 0 {
			return time.Since(start), nil
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-p.dead:
			t.Stop()
		}
	}
}

// storeOp counts one store operation: crash is true when it is the one
// that crashes the process, applied when it is applied first.
func (p *Proc) storeOp() (crash, applied bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ops++
	if p.crashAt != 0 && p.ops == p.crashAt && !p.crashed {
		p.crashLocked()
		return true, p.crashApplied
	}
	return false, false
}
