package invoker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// DefaultLease is how long a key in flight stays leased to its process
// without a heartbeat (store.lease): a process that dies mid-call holds
// its keys this long before another takes them over. The heartbeat
// renews live leases every third of it.
const DefaultLease = config.DefaultStoreLease

// DefaultHeldWait is the least default wait for another process that
// holds a call's idempotency key (store.held_wait: by default
// n8n.timeout + reconcile_timeout + 30s, 3m with their defaults).
const DefaultHeldWait = config.DefaultStoreHeldWait

// processOwner names this process in the leases it takes:
// machine:pid:start/random, where machine is the host, its boot and its
// pid namespace (machine), start the process's start time in clock ticks
// since boot, and random new at every start: two processes never share
// an owner, on one host or on two.
func processOwner() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s:%d:%d/%s", machine(), os.Getpid(), startTime(os.Getpid()), hex.EncodeToString(b))
}

// machine names this host, its boot and its pid namespace: processes of
// one machine see each other's pids. The hostname and the namespace's
// inode alone are the same on many hosts (every host's initial pid
// namespace has one inode); the boot id is not.
func machine() string {
	host, _ := os.Hostname()
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	ns, _ := os.Readlink("/proc/self/ns/pid")
	return host + "/" + strings.TrimSpace(string(boot)) + "/" + ns
}

// startTime returns the start time of process pid in clock ticks since
// boot (field 22 of /proc/pid/stat), 0 when unknown.
func startTime(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// deadOwner reports whether owner is a process of this machine (host,
// boot and pid namespace) that no longer runs: its pid is gone, or now
// belongs to a process started at another time. Only then may its live
// leases be taken over before they expire; it only shortens a wait. An
// owner of another machine, or one whose start time is unknown, is never
// known dead.
func deadOwner(owner string) bool {
	rest, ok := strings.CutPrefix(owner, machine()+":")
	if !ok {
		return false
	}
	ids, _, _ := strings.Cut(rest, "/")
	pidStr, startStr, ok := strings.Cut(ids, ":")
	if !ok {
		return false
	}
	pid, err := strconv.Atoi(pidStr)
	start, serr := strconv.ParseUint(startStr, 10, 64)
	if err != nil || serr != nil || pid <= 0 || pid == os.Getpid() || start == 0 {
		return false
	}
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return true
	}
	now := startTime(pid)
	return now != 0 && now != start
}

func (m *Manager) leaseTTL() time.Duration {
	if d := m.cfg.Store.Lease.D(); d > 0 {
		return d
	}
	return DefaultLease
}

// leaseSet holds the leases of this process's calls in flight, which the
// heartbeat renews, and the per-key locks that let one call, replay or
// rescue of a key at a time in this process reach the journal.
type leaseSet struct {
	mu sync.Mutex
	// leases: key -> the lease a call of this process holds, and when
	// it was last confirmed (the monotonic time its Begin or Renew was
	// sent).
	leases map[string]*heldLease
	locks  map[string]*keyLock
	stop   chan struct{}
	done   chan struct{}
	// cancelRescue ends a background rescue (Close calls it first).
	cancelRescue context.CancelFunc
	stopOnce     sync.Once
}

type heldLease struct {
	lease     dlq.Lease
	confirmed time.Time
}

// keyLock serialises the senders of one key in this process.
type keyLock struct {
	ch   chan struct{} // holds one token while locked
	refs int
}

// lock takes key's in-process lock: every call, replay and rescue of a
// key in this process passes it before the journal's Begin, so that one
// of them at a time may send the key. try returns false at once instead
// of waiting when another holds it.
func (s *leaseSet) lock(ctx context.Context, key string, try bool) (bool, error) {
	s.mu.Lock()
	if s.locks == nil {
		s.locks = map[string]*keyLock{}
	}
	l := s.locks[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		s.locks[key] = l
	}
	l.refs++
	s.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
		return true, nil
	default:
	}
	if try {
		s.unref(key, l)
		return false, nil
	}
	select {
	case l.ch <- struct{}{}:
		return true, nil
	case <-ctx.Done():
		s.unref(key, l)
		return false, ctx.Err()
	}
}

// unlock releases key's in-process lock.
func (s *leaseSet) unlock(key string) {
	s.mu.Lock()
	l := s.locks[key]
	s.mu.Unlock()
	<-l.ch
	s.unref(key, l)
}

func (s *leaseSet) unref(key string, l *keyLock) {
	s.mu.Lock()
	if l.refs--; l.refs == 0 {
		delete(s.locks, key)
	}
	s.mu.Unlock()
}

// hold records l, confirmed at sent (when its Begin was sent).
func (s *leaseSet) hold(l dlq.Lease, sent time.Time) {
	s.mu.Lock()
	if s.leases == nil {
		s.leases = map[string]*heldLease{}
	}
	s.leases[l.Key] = &heldLease{lease: l, confirmed: sent}
	s.mu.Unlock()
}

func (s *leaseSet) drop(l dlq.Lease) {
	s.mu.Lock()
	if h := s.leases[l.Key]; h != nil && h.lease.Token == l.Token {
		delete(s.leases, l.Key)
	}
	s.mu.Unlock()
}

// get returns the lease a call of this process holds on key and when it
// was last confirmed.
func (s *leaseSet) get(key string) (dlq.Lease, time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.leases[key]
	if h == nil {
		return dlq.Lease{}, time.Time{}, false
	}
	return h.lease, h.confirmed, true
}

// confirm records that the leases were renewed by a Renew sent at sent.
func (s *leaseSet) confirm(ls []dlq.Lease, lost []string, sent time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range ls {
		if slices.Contains(lost, l.Key) {
			continue
		}
		if h := s.leases[l.Key]; h != nil && h.lease.Token == l.Token && sent.After(h.confirmed) {
			h.confirmed = sent
		}
	}
}

func (s *leaseSet) held() []dlq.Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	ls := make([]dlq.Lease, 0, len(s.leases))
	for _, h := range s.leases {
		ls = append(ls, h.lease)
	}
	slices.SortFunc(ls, func(a, b dlq.Lease) int { return strings.Compare(a.Key, b.Key) })
	return ls
}

// startLeases starts the heartbeat and, unless store.rescue_every is
// negative, the background rescue.
func (m *Manager) startLeases() {
	if m.dlq == nil {
		return
	}
	ttl := m.leaseTTL()
	every := m.cfg.Store.RescueEvery.D()
	if every == 0 {
		every = ttl
	}
	s := &m.leases
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	rctx, cancel := context.WithCancel(context.Background())
	s.cancelRescue = cancel
	// The heartbeat and the rescue run apart: a rescue reconciles (it
	// may wait minutes for executions to end), and a heartbeat it held up
	// would let this process's own leases expire while their calls live.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		beat := time.NewTicker(ttl / 3)
		defer beat.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-beat.C:
				m.heartbeat(context.Background(), ttl)
			}
		}
	}()
	if every > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-s.stop:
					return
				case <-t.C:
					if _, err := m.Rescue(rctx); err != nil && rctx.Err() == nil && !errors.Is(err, invocation.ErrClosed) {
						m.log.Warn("journal: background rescue failed", "error", err.Error())
					}
				}
			}
		}()
	}
	go func() { wg.Wait(); close(s.done) }()
}

// fenceMargin is the part of the lease a process does not send in: a
// lease last confirmed longer ago than the lease minus the margin is
// renewed before sending. The key's next owner takes it over only after
// the lease expires, so a send passes the fence at least the margin
// before another process can take the key over.
func fenceMargin(ttl time.Duration) time.Duration { return ttl / 3 }

// fence is the last attempt stage before the transport: an attempt of a
// journaled call goes only while this process holds the key's lease. A
// first attempt checks, without I/O, that the lease was confirmed (its
// Begin or Renew sent) less than the lease minus fenceMargin ago; a
// re-send (after a failure, a backoff, a reconcile that may have taken
// minutes) and a lease confirmed too long ago renew the lease (key and
// token) first, bounded by a third of the lease. A
// lease it cannot confirm ends the call with an error of code
// invocation.CodeLeaseLost and nothing sent. What it cannot close: a
// process paused between this check and the send for longer than the
// margin may still send once, since n8n cannot check a token.
func (m *Manager) fence(ctx context.Context, a *invocation.Attempt, next invocation.AttemptHandler) (*invocation.Result, error) {
	if m.dlq == nil {
		return next(ctx, a)
	}
	key := a.Request.IdempotencyKey
	l, confirmed, ok := m.leases.get(key)
	if !ok {
		return next(ctx, a)
	}
	ttl := m.leaseTTL()
	if a.Number <= 1 && time.Since(confirmed) < ttl-fenceMargin(ttl) {
		return next(ctx, a)
	}
	if err := m.renew(ctx, []dlq.Lease{l}, ttl, "before sending"); err != nil {
		return nil, &invocation.Error{Code: invocation.CodeLeaseLost, Workflow: a.Request.Workflow, Key: key, Attempts: a.Number - 1,
			Message: fmt.Sprintf("this process could not confirm its lease on idempotency key %q before sending (%v); the key's next owner decides it (not sent)", key, err)}
	}
	return next(ctx, a)
}

// renew renews ls, bounded by a third of the lease, and records the
// confirmation; an error when any of them is lost or the store did not
// answer in time.
func (m *Manager) renew(ctx context.Context, ls []dlq.Lease, ttl time.Duration, why string) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ttl/3)
	defer cancel()
	sent := time.Now()
	lost, err := m.dlq.Renew(rctx, ls, ttl)
	if err != nil {
		m.log.Warn("journal: renewing leases failed; another process may take these keys over", "keys", len(ls), "while", why, "error", err.Error())
		return err
	}
	m.leases.confirm(ls, lost, sent)
	if d := time.Since(sent); d > ttl/6 {
		m.log.Warn("journal: renewing leases was slow", "keys", len(ls), "took", d, "lease", ttl)
	}
	for _, k := range lost {
		m.log.Warn("journal: lost the lease of a key in flight; another process may take it over", "idempotency_key", k, "while", why)
	}
	if len(lost) > 0 {
		return dlq.ErrLeaseLost
	}
	return nil
}

// awaitNewOwner waits (store.held_wait) for the result of the process
// that took a key over from this one; without one it returns lost.
func (m *Manager) awaitNewOwner(ctx context.Context, req *invocation.Request, lost error) (*invocation.Result, error) {
	wait := m.cfg.Store.HeldWait.D()
	if wait <= 0 {
		wait = DefaultHeldWait
	}
	deadline := time.Now().Add(wait)
	for poll := 100 * time.Millisecond; ; poll = min(2*poll, 2*time.Second) {
		if res, _, ok, err := m.recorded(ctx, req.IdempotencyKey); ok {
			return res, err // the new owner's success, or the failure it recorded
		}
		if time.Now().After(deadline) {
			return nil, lost
		}
		if err := invocation.Sleep(ctx, poll); err != nil {
			// This call sent the key before it lost the lease: it may
			// have run.
			return nil, invocation.NewCanceled(ctx, req.Workflow, invocation.AttemptsOf(lost), true)
		}
	}
}

func (m *Manager) heartbeat(ctx context.Context, ttl time.Duration) {
	if ls := m.leases.held(); len(ls) > 0 {
		_ = m.renew(ctx, ls, ttl, "heartbeat")
	}
}

func (m *Manager) stopLeases() {
	if m.leases.stop != nil {
		m.leases.stopOnce.Do(func() {
			m.leases.cancelRescue()
			close(m.leases.stop)
		})
		<-m.leases.done
	}
}

// RescueReport is what Rescue did.
type RescueReport struct {
	// Found is the number of invocations found in flight under an
	// expired lease.
	Found int `json:"found"`
	// Succeeded were sent again and succeeded; AlreadyDone had run in n8n
	// (or had a recorded result) and were not sent again; Failed ended
	// with an error (dead-lettered when their class goes to the queue);
	// Skipped were taken by another process first.
	Succeeded   int `json:"succeeded"`
	AlreadyDone int `json:"already_done"`
	Failed      int `json:"failed"`
	Skipped     int `json:"skipped"`
}

// Rescue takes over the invocations that processes sharing the store
// (this one before a restart included) left in flight under expired
// leases, or under the live lease of a process of this machine that no
// longer exists: each is reconciled with n8n by its Idempotency-Key and sent
// again only when n8n did not run it, on the batch engine (breaker pause
// included). A manager does this in the background every
// store.rescue_every (default: the lease) unless that is negative; call
// Rescue to do it now, e.g. at the start of a batch after a crash.
func (m *Manager) Rescue(ctx context.Context) (*RescueReport, error) {
	if m.dlq == nil {
		return &RescueReport{}, nil
	}
	if !m.enter() {
		return nil, invocation.ErrClosed
	}
	defer m.wg.Done()
	all, err := m.dlq.Inflight(ctx, dlq.InflightFilter{})
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var found []*dlq.Inflight
	for _, in := range all {
		if in.Lease.Until.Before(now) || deadOwner(in.Lease.Owner) {
			found = append(found, in)
		}
	}
	rep := &RescueReport{Found: len(found)}
	if len(found) == 0 {
		return rep, nil
	}
	items := make([]BatchItem, 0, len(found))
	for _, in := range found {
		it := BatchItem{Workflow: in.Workflow, IdempotencyKey: in.IdempotencyKey, PathParams: in.PathParams, rescue: true}
		if len(in.Params) > 0 && string(in.Params) != "null" {
			it.body = in.Params
		}
		items = append(items, it)
	}
	var mu sync.Mutex
	m.dispatch(ctx, slices.Values(items), len(items), DefaultMaxConcurrent, &batchOptions{}, nil, func(r BatchResult) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case errors.Is(r.Err, errRescueHeld):
			rep.Skipped++
		case r.Err != nil:
			rep.Failed++
		case r.Result.Deduplicated || r.Result.Reconciled:
			rep.AlreadyDone++
		default:
			rep.Succeeded++
		}
	})
	if rep.Found > rep.Skipped {
		m.log.Info("journal: rescued invocations left in flight", "found", rep.Found, "succeeded", rep.Succeeded,
			"already_done", rep.AlreadyDone, "failed", rep.Failed, "skipped", rep.Skipped)
	}
	return rep, ctx.Err()
}
