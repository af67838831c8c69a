package policy_test

import (
	"fmt"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/policy"
)

func ExampleRetry() {
	r := policy.Retry{MaxRetries: 3, BaseDelay: 2 * time.Second, Multiplier: 2, MaxDelay: time.Minute}
	for n := 1; n <= 3; n++ {
		fmt.Print(r.Cap(n), " ") // full jitter waits a random time below each cap
	}
	wait, ok := r.Wait(1, 10*time.Second, true) // the server's Retry-After is never undercut
	fmt.Println(wait >= 10*time.Second, ok)
	// Output: 2s 4s 8s true true
}

func ExampleBreaker() {
	b, _ := policy.NewBreaker("orders", policy.BreakerConfig{ConsecutiveFailures: 2, OpenTimeout: time.Minute})
	for range 2 {
		done, _ := b.Allow()
		done(policy.VerdictOf(&invocation.HTTPError{StatusCode: 503, ErrClass: invocation.Transient}))
	}
	_, err := b.Allow()
	fmt.Println(b.State(), err != nil)
	// Output: open true
}
