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
	"github.com/n8n-invoker/n8n-invoker/pipeline"
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
// host/pid-namespace:pid/random (a restarted process with the same pid is
// another owner).
func processOwner() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s:%d/%s", machine(), os.Getpid(), hex.EncodeToString(b))
}

// machine names this host and pid namespace: two processes with the same
// machine see each other's pids.
func machine() string {
	host, _ := os.Hostname()
	ns, _ := os.Readlink("/proc/self/ns/pid")
	return host + "/" + ns
}

// deadOwner reports whether owner is a process of this machine (host and
// pid namespace) that no longer exists, so its leases need not be waited
// out. An owner of another machine is never known dead.
func deadOwner(owner string) bool {
	rest, ok := strings.CutPrefix(owner, machine()+":")
	if !ok {
		return false
	}
	pidStr, _, _ := strings.Cut(rest, "/")
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func (m *Manager) leaseTTL() time.Duration {
	if d := m.cfg.Store.Lease.D(); d > 0 {
		return d
	}
	return DefaultLease
}

// leaseSet holds the leases of this process's calls in flight, which the
// heartbeat renews.
type leaseSet struct {
	mu   sync.Mutex
	keys map[string]int // key -> calls holding it
	stop chan struct{}
	done chan struct{}
	// cancelRescue ends a background rescue (Close calls it first).
	cancelRescue context.CancelFunc
	stopOnce     sync.Once
}

func (s *leaseSet) hold(l dlq.Lease) {
	s.mu.Lock()
	if s.keys == nil {
		s.keys = map[string]int{}
	}
	s.keys[l.Key]++
	s.mu.Unlock()
}

func (s *leaseSet) drop(key string) {
	s.mu.Lock()
	if s.keys[key]--; s.keys[key] <= 0 {
		delete(s.keys, key)
	}
	s.mu.Unlock()
}

func (s *leaseSet) holds(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[key] > 0
}

func (s *leaseSet) held() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.keys))
	for k := range s.keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
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

// fence confirms, before a journaled call is sent again after a lost
// answer, that this process still holds the key's lease (renewing it):
// a process whose lease expired must not send, since the key's new owner
// may be sending it too. nil when the call may go.
func (m *Manager) fence(ctx context.Context, c *pipeline.Call) error {
	key := c.Request.IdempotencyKey
	if m.dlq == nil || !m.leases.holds(key) {
		return nil
	}
	lost, err := m.dlq.Renew(ctx, m.owner, []string{key}, m.leaseTTL())
	if err == nil && len(lost) == 0 {
		return nil
	}
	if err != nil {
		m.log.Warn("journal: cannot confirm the lease before sending again; not sending", "idempotency_key", key, "error", err.Error())
	}
	return &invocation.Error{Code: invocation.CodeLeaseLost, Workflow: c.Request.Workflow, Key: key, Attempts: c.Attempts,
		Message: fmt.Sprintf("idempotency key %q was taken over by another process while this one reconciled a lost answer; that process decides it (not sent again here)", key)}
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
		if res, ok, err := m.recorded(ctx, req.IdempotencyKey); err == nil && ok {
			return res, nil
		}
		if time.Now().After(deadline) {
			return nil, lost
		}
		if err := invocation.Sleep(ctx, poll); err != nil {
			return nil, err
		}
	}
}

func (m *Manager) heartbeat(ctx context.Context, ttl time.Duration) {
	keys := m.leases.held()
	if len(keys) == 0 {
		return
	}
	lost, err := m.dlq.Renew(ctx, m.owner, keys, ttl)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("journal: renewing leases failed; another process may take these keys over", "keys", len(keys), "error", err.Error())
		}
		return
	}
	for _, k := range lost {
		m.log.Warn("journal: lost the lease of a key in flight; another process may take it over", "idempotency_key", k)
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
		it := BatchItem{Workflow: in.Workflow, IdempotencyKey: in.IdempotencyKey, rescue: true}
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
