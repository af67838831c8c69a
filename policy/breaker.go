package policy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// State is a circuit breaker's state.
type State int

// Breaker states.
const (
	Closed State = iota
	Open
	HalfOpen
)

// String returns "closed", "open" or "half-open".
func (s State) String() string {
	switch s {
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "closed"
}

// MarshalText encodes the state's name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Defaults of BreakerConfig.
const (
	DefaultConsecutiveFailures = 15
	DefaultFailureRate         = 0.6
	DefaultWindow              = 60 * time.Second
	DefaultMinCalls            = 30
	DefaultOpenTimeout         = 30 * time.Second
	DefaultHalfOpenProbes      = 1
	DefaultMaxPause            = 5 * time.Minute
	DefaultConsecutiveRefusals = 5
	// probeWait bounds one wait for a half-open breaker's probe; the
	// probe's verdict usually ends it sooner.
	probeWait     = time.Second
	windowBuckets = 10
)

// BreakerConfig configures circuit breakers; zero values mean defaults.
type BreakerConfig struct {
	// ConsecutiveFailures trips the breaker after that many failures in a
	// row.
	ConsecutiveFailures int
	// FailureRate trips the breaker when the failures over Window reach
	// this share of at least MinCalls calls (0 < rate <= 1).
	FailureRate float64
	Window      time.Duration
	MinCalls    int
	// OpenTimeout is how long the breaker stays open before letting
	// probes through.
	OpenTimeout time.Duration
	// HalfOpenProbes is how many probes may be in flight while half-open,
	// and how many must succeed to close the breaker.
	HalfOpenProbes int
	// OnStateChange, if set, is called after every transition, outside the
	// breaker's lock.
	OnStateChange func(name string, from, to State)
	// ConsecutiveRefusals trips the breaker after that many attempts in a
	// row that could not reach the endpoint at all (default 5): n8n is down,
	// so the calls behind pause instead of spending their retries.
	ConsecutiveRefusals int
	// MaxPause is how long the breaker stage lets a call wait for an open
	// breaker to let it through (its half-open probe), within the call's
	// deadline: an open breaker pauses calls instead of failing what has
	// not been tried. 0 means DefaultMaxPause; negative fails at once
	// (for a call that has a fallback to go to).
	MaxPause time.Duration
}

func (c *BreakerConfig) fill() error {
	if c.ConsecutiveFailures < 0 || c.MinCalls < 0 || c.HalfOpenProbes < 0 || c.Window < 0 || c.OpenTimeout < 0 {
		return fmt.Errorf("policy: breaker values must not be negative: %+v", *c)
	}
	if c.FailureRate < 0 || c.FailureRate > 1 || math.IsNaN(c.FailureRate) {
		return fmt.Errorf("policy: breaker failure rate must be in (0, 1], got %v", c.FailureRate)
	}
	if c.ConsecutiveFailures == 0 {
		c.ConsecutiveFailures = DefaultConsecutiveFailures
	}
	if c.FailureRate == 0 {
		c.FailureRate = DefaultFailureRate
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.MinCalls == 0 {
		c.MinCalls = DefaultMinCalls
	}
	if c.OpenTimeout == 0 {
		c.OpenTimeout = DefaultOpenTimeout
	}
	if c.HalfOpenProbes == 0 {
		c.HalfOpenProbes = DefaultHalfOpenProbes
	}
	if c.MaxPause == 0 {
		c.MaxPause = DefaultMaxPause
	}
	if c.ConsecutiveRefusals <= 0 {
		c.ConsecutiveRefusals = DefaultConsecutiveRefusals
	}
	return nil
}

// Verdict is how an attempt's outcome counts for a breaker.
type Verdict int

// Verdicts.
const (
	// Success: the endpoint answered (including permanent errors such as a
	// 4xx or a workflow that ran and failed).
	Success Verdict = iota
	// Failure: a transient or unknown failure of the endpoint.
	Failure
	// Ignore: the caller's cancellation; it says nothing of the endpoint.
	Ignore
	// Unreachable: a failure to reach the endpoint at all (a refused
	// connection: nothing was sent), the mark of n8n being down rather
	// than of a fault on the way. Counted as a failure, and
	// ConsecutiveRefusals of them in a row open the breaker at once.
	Unreachable
)

// VerdictOf maps an attempt's error to a verdict. A 429 is n8n's flow
// control, not a failure of the endpoint: it is ignored.
func VerdictOf(err error) Verdict {
	switch {
	case err == nil:
		return Success
	case invocation.IsCanceled(err), errors.Is(err, invocation.ErrRateLimited):
		return Ignore
	case invocation.ClassOf(err) == invocation.Permanent:
		return Success
	}
	var te *invocation.TransportError
	if errors.As(err, &te) && !te.Sent && !te.TimedOut {
		return Unreachable
	}
	return Failure
}

type bucket struct {
	idx       int64
	ok, fails int
}

// Breaker is a circuit breaker for one endpoint. Safe for concurrent use.
type Breaker struct {
	name string
	cfg  BreakerConfig

	mu          sync.Mutex
	state       State
	gen         uint64
	consecutive int
	refusals    int // consecutive attempts that could not reach the endpoint
	buckets     [windowBuckets]bucket
	openedAt    time.Time
	probes      int // in flight while half-open
	probesOK    int
	changed     chan struct{} // closed at the next transition
}

// Changed returns a channel closed at the breaker's next transition.
func (b *Breaker) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	return b.changed
}

// NewBreaker returns a closed breaker named name.
func NewBreaker(name string, cfg BreakerConfig) (*Breaker, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	return &Breaker{name: name, cfg: cfg}, nil
}

// State returns the current state (an open breaker whose timeout has
// passed reports half-open).
func (b *Breaker) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == Open && time.Since(b.openedAt) >= b.cfg.OpenTimeout {
		return HalfOpen
	}
	return b.state
}

// Allow asks to make one attempt. It returns done, which must be called
// once with the attempt's verdict, or an error of code invocation.CodeCircuitOpen.
func (b *Breaker) Allow() (done func(Verdict), err error) {
	gen, err := b.acquire()
	if err != nil {
		return nil, err
	}
	return func(v Verdict) { b.record(gen, v) }, nil
}

// acquire is Allow without the closure: the caller records the verdict
// with record(gen, v).
func (b *Breaker) acquire() (gen uint64, err error) {
	b.mu.Lock()
	now := time.Now()
	var changes []transition
	if b.state == Open {
		if wait := b.cfg.OpenTimeout - now.Sub(b.openedAt); wait > 0 {
			b.mu.Unlock()
			return 0, circuitOpen(b.name, Open, wait)
		}
		changes = append(changes, b.setState(HalfOpen, now))
	}
	if b.state == HalfOpen {
		if b.probes >= b.cfg.HalfOpenProbes {
			b.mu.Unlock()
			b.notify(changes)
			return 0, circuitOpen(b.name, HalfOpen, 0)
		}
		b.probes++
	}
	gen = b.gen
	b.mu.Unlock()
	b.notify(changes)
	return gen, nil
}

type transition struct{ from, to State }

// setState changes the state; the caller holds the lock.
func (b *Breaker) setState(to State, now time.Time) transition {
	t := transition{b.state, to}
	b.state = to
	b.gen++
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	b.consecutive, b.refusals, b.probes, b.probesOK = 0, 0, 0, 0
	b.buckets = [windowBuckets]bucket{}
	if to == Open {
		b.openedAt = now
	}
	return t
}

func (b *Breaker) notify(changes []transition) {
	if b.cfg.OnStateChange == nil {
		return
	}
	for _, c := range changes {
		b.cfg.OnStateChange(b.name, c.from, c.to)
	}
}

func (b *Breaker) record(gen uint64, v Verdict) {
	b.mu.Lock()
	if gen != b.gen { // the state changed since Allow: the outcome is stale
		b.mu.Unlock()
		return
	}
	now := time.Now()
	var changes []transition
	switch b.state {
	case HalfOpen:
		b.probes--
		switch v {
		case Failure, Unreachable:
			changes = append(changes, b.setState(Open, now))
		case Success:
			b.probesOK++
			if b.probesOK >= b.cfg.HalfOpenProbes {
				changes = append(changes, b.setState(Closed, now))
			}
		}
	case Closed:
		if v == Ignore {
			break
		}
		bk := b.bucketAt(now)
		if v == Success {
			b.consecutive, b.refusals = 0, 0
			bk.ok++
		} else {
			b.consecutive++
			bk.fails++
			if v == Unreachable {
				b.refusals++
			} else {
				b.refusals = 0
			}
		}
		if v != Success && (b.shouldTrip(now) || b.refusals >= b.cfg.ConsecutiveRefusals) {
			changes = append(changes, b.setState(Open, now))
		}
	}
	b.mu.Unlock()
	b.notify(changes)
}

func (b *Breaker) bucketAt(now time.Time) *bucket {
	width := int64(b.cfg.Window) / windowBuckets
	idx := now.UnixNano() / max(width, 1)
	bk := &b.buckets[idx%windowBuckets]
	if bk.idx != idx {
		*bk = bucket{idx: idx}
	}
	return bk
}

func (b *Breaker) shouldTrip(now time.Time) bool {
	if b.consecutive >= b.cfg.ConsecutiveFailures {
		return true
	}
	width := int64(b.cfg.Window) / windowBuckets
	cur := now.UnixNano() / max(width, 1)
	var ok, fails int
	for _, bk := range b.buckets {
		if bk.idx > cur-windowBuckets {
			ok += bk.ok
			fails += bk.fails
		}
	}
	total := ok + fails
	return total >= b.cfg.MinCalls && float64(fails) >= b.cfg.FailureRate*float64(total)
}

// Breakers holds one breaker per endpoint, made on first use with the
// same configuration. Safe for concurrent use.
type Breakers struct {
	cfg BreakerConfig
	m   sync.Map // endpoint -> *Breaker
}

// NewBreakers validates cfg and returns an empty set.
func NewBreakers(cfg BreakerConfig) (*Breakers, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	return &Breakers{cfg: cfg}, nil
}

// Get returns the breaker of endpoint, making it if needed.
func (s *Breakers) Get(endpoint string) *Breaker {
	if b, ok := s.m.Load(endpoint); ok {
		return b.(*Breaker)
	}
	b, _ := s.m.LoadOrStore(endpoint, &Breaker{name: endpoint, cfg: s.cfg})
	return b.(*Breaker)
}

// Attempt is the breaker stage of the pipeline: it asks the breaker of
// the attempt's workflow and records the attempt's verdict. When the
// breaker is open, the call waits (not sent, not an attempt) until the
// breaker lets a probe through or closes, within the call's deadline and
// MaxPause; past them it returns the error of code invocation.CodeCircuitOpen. While it waits it
// gives back the invocation.Slot the context carries, if any.
func (s *Breakers) Attempt(ctx context.Context, a *invocation.Attempt, next invocation.AttemptHandler) (*invocation.Result, error) {
	b := s.Get(a.Request.Workflow)
	var paused time.Duration
	for {
		changed := b.Changed()
		gen, err := b.acquire()
		if err == nil {
			start := time.Now()
			res, err := next(ctx, a)
			b.record(gen, VerdictOf(err))
			if o, ok := invocation.SlotFrom(ctx).(interface{ ObserveAttempt(time.Duration) }); ok {
				o.ObserveAttempt(time.Since(start))
			}
			return res, err
		}
		if s.cfg.MaxPause < 0 {
			return nil, err
		}
		var coe *invocation.Error
		errors.As(err, &coe)
		wait := probeWait
		if coe != nil && coe.RetryAfter > 0 {
			wait = coe.RetryAfter
		}
		if dl, ok := ctx.Deadline(); ok && coe != nil && coe.RetryAfter > 0 && time.Until(dl) < wait {
			return nil, err // the deadline ends before the breaker lets anything through
		}
		if paused+wait > s.cfg.MaxPause {
			return nil, err
		}
		start := time.Now()
		// Give the slot back meanwhile: the batch runs calls to other
		// endpoints.
		if err := invocation.WaitReleased(ctx, wait, changed); err != nil {
			return nil, err
		}
		paused += time.Since(start)
	}
}

// OpenFor reports whether calls to endpoint would meet an open breaker
// that pauses them: how long it stays open (0 when it lets calls through,
// when it has not been used, or when an open breaker fails calls at once
// because MaxPause is negative), and a channel closed at its next
// transition. A batch uses it to stop dispatching to that endpoint.
func (s *Breakers) OpenFor(endpoint string) (time.Duration, <-chan struct{}) {
	if s.cfg.MaxPause < 0 {
		return 0, nil
	}
	v, ok := s.m.Load(endpoint)
	if !ok {
		return 0, nil
	}
	b := v.(*Breaker)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != Open {
		return 0, nil
	}
	wait := b.cfg.OpenTimeout - time.Since(b.openedAt)
	if wait <= 0 {
		return 0, nil
	}
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	return wait, b.changed
}

// BreakerState is one breaker's name and state.
type BreakerState struct {
	Endpoint string `json:"endpoint"`
	State    State  `json:"state"`
}

// States returns the state of every breaker, sorted by endpoint.
func (s *Breakers) States() []BreakerState {
	var names []string
	s.m.Range(func(k, _ any) bool {
		names = append(names, k.(string))
		return true
	})
	sort.Strings(names)
	out := make([]BreakerState, len(names))
	for i, n := range names {
		out[i] = BreakerState{Endpoint: n, State: s.Get(n).State()}
	}
	return out
}
