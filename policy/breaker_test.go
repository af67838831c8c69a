package policy

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type transitions struct {
	mu  sync.Mutex
	log []string
}

func (t *transitions) record(name string, from, to State) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.log = append(t.log, from.String()+">"+to.String())
}

func (t *transitions) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := ""
	for i, l := range t.log {
		if i > 0 {
			s += ","
		}
		s += l
	}
	return s
}

func call(t *testing.T, b *Breaker, v Verdict) error {
	t.Helper()
	done, err := b.Allow()
	if err != nil {
		return err
	}
	done(v)
	return nil
}

func TestBreakerConsecutiveFailuresAndRecovery(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		tr := &transitions{}
		b, err := NewBreaker("wf", BreakerConfig{ConsecutiveFailures: 3, OpenTimeout: 10 * time.Second, HalfOpenProbes: 2, OnStateChange: tr.record})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			_ = call(t, b, Failure)
		}
		_ = call(t, b, Success) // resets the run
		for range 3 {
			_ = call(t, b, Failure)
		}
		if b.State() != Open {
			t.Fatalf("state %s after 3 consecutive failures", b.State())
		}
		err = call(t, b, Success)
		var coe *invocation.Error
		if !errors.As(err, &coe) || coe.Code != invocation.CodeCircuitOpen || coe.RetryAfter != 10*time.Second || !errors.Is(err, invocation.ErrCircuitOpen) || invocation.ClassOf(err) != invocation.Transient {
			t.Fatalf("open breaker: %v", err)
		}
		time.Sleep(10 * time.Second)
		// Half-open: two probes may go; a third is refused while they run.
		d1, err1 := b.Allow()
		d2, err2 := b.Allow()
		_, err3 := b.Allow()
		if err1 != nil || err2 != nil || err3 == nil {
			t.Fatalf("half-open probes: %v %v %v", err1, err2, err3)
		}
		d1(Success)
		if b.State() != HalfOpen {
			t.Fatalf("closed after one of two probes")
		}
		d2(Success)
		if b.State() != Closed {
			t.Fatalf("state %s after two good probes", b.State())
		}
		if got := tr.String(); got != "closed>open,open>half-open,half-open>closed" {
			t.Errorf("transitions %s", got)
		}
	})
}

func TestBreakerProbeFailureReopens(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		tr := &transitions{}
		b, _ := NewBreaker("wf", BreakerConfig{ConsecutiveFailures: 1, OpenTimeout: time.Second, OnStateChange: tr.record})
		_ = call(t, b, Failure)
		time.Sleep(time.Second)
		_ = call(t, b, Failure)
		if b.State() != Open {
			t.Fatalf("state %s", b.State())
		}
		if got := tr.String(); got != "closed>open,open>half-open,half-open>open" {
			t.Errorf("transitions %s", got)
		}
	})
}

func TestBreakerFailureRateOverWindow(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, _ := NewBreaker("wf", BreakerConfig{ConsecutiveFailures: 100, FailureRate: 0.5, MinCalls: 10, Window: 10 * time.Second})
		// 4 failures in 9 calls: below the minimum number of calls.
		for i := range 9 {
			v := Success
			if i%2 == 1 {
				v = Failure
			}
			_ = call(t, b, v)
		}
		if b.State() != Closed {
			t.Fatal("tripped below MinCalls")
		}
		// Old calls leave the window: 5 more successes then failures that
		// alone would not reach 50% of the window's calls if the old ones
		// still counted.
		time.Sleep(11 * time.Second)
		for range 5 {
			_ = call(t, b, Success)
		}
		for range 4 {
			_ = call(t, b, Failure)
		}
		if b.State() != Closed {
			t.Fatal("tripped at 4/9")
		}
		_ = call(t, b, Failure) // 5 of 10
		if b.State() != Open {
			t.Fatalf("state %s at 50%% of 10 calls", b.State())
		}
	})
}

func TestBreakerIgnoresCancellationAndPermanent(t *testing.T) {
	t.Parallel()
	b, _ := NewBreaker("wf", BreakerConfig{ConsecutiveFailures: 2})
	errs := []error{
		context.Canceled,
		&invocation.HTTPError{StatusCode: 404, ErrClass: invocation.Permanent},
		&invocation.HTTPError{StatusCode: 500, WorkflowFailed: true, ErrClass: invocation.Permanent},
		context.DeadlineExceeded,
	}
	for range 3 {
		for _, e := range errs {
			_ = call(t, b, VerdictOf(e))
		}
	}
	if b.State() != Closed {
		t.Fatal("cancellation or permanent errors tripped the breaker")
	}
	_ = call(t, b, VerdictOf(&invocation.HTTPError{StatusCode: 503, ErrClass: invocation.Transient}))
	_ = call(t, b, VerdictOf(&invocation.TransportError{ErrClass: invocation.Transient}))
	if b.State() != Open {
		t.Fatal("transient failures did not trip it")
	}
}

func TestBreakerStaleOutcomesIgnored(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, _ := NewBreaker("wf", BreakerConfig{ConsecutiveFailures: 1, OpenTimeout: time.Second})
		slow, _ := b.Allow() // a call that started while closed
		_ = call(t, b, Failure)
		time.Sleep(time.Second)
		probe, err := b.Allow()
		if err != nil {
			t.Fatal(err)
		}
		slow(Success) // belongs to the closed period: must not close the half-open breaker
		if b.State() != HalfOpen {
			t.Fatalf("stale success changed the state to %s", b.State())
		}
		probe(Success)
		if b.State() != Closed {
			t.Fatalf("state %s", b.State())
		}
	})
}

func TestBreakersSet(t *testing.T) {
	t.Parallel()
	s, err := NewBreakers(BreakerConfig{ConsecutiveFailures: 1})
	if err != nil {
		t.Fatal(err)
	}
	_ = call(t, s.Get("b"), Failure)
	_ = call(t, s.Get("a"), Success)
	st := s.States()
	if len(st) != 2 || st[0].Endpoint != "a" || st[0].State != Closed || st[1].State != Open {
		t.Errorf("states %+v", st)
	}
	if _, err := NewBreakers(BreakerConfig{FailureRate: 1.5}); err == nil {
		t.Error("failure rate 1.5 accepted")
	}
}
