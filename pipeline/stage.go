package pipeline

import (
	"context"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
)

// Call is one invocation as the per-call stages see it. Stages above
// resolution see Target nil; stages below it may read it.
type Call struct {
	// Request is the caller's request (a copy: stages may change it).
	Request *invocation.Request
	// Target is set by the resolution stage.
	Target *invocation.Target
	// Started is when the call entered the pipeline.
	Started time.Time
	// Attempts counts the attempts the retry loop made so far.
	Attempts int
	// FirstAmbiguous is when the call's first attempt that may have
	// reached n8n (sent, answer lost) was sent; zero until there is one.
	// Every reconcile of the call looks back to it: a late execution of
	// that attempt is still in the window of a later one's reconcile.
	FirstAmbiguous time.Time

	// Wait asks the await stage to follow the execution to its end.
	Wait bool
	// Await tunes that polling.
	Await n8napi.AwaitOptions
	// ReplayOf is the dead-letter entry being replayed, 0 otherwise.
	ReplayOf int64
	// ReplayFailed re-runs an entry whose workflow ran and failed.
	ReplayFailed bool
	// Rescue is true for a call that re-drives an invocation another
	// process left in flight (invoker.Manager.Rescue).
	Rescue bool
	// ExplicitKey is true when the caller gave the idempotency key.
	ExplicitKey bool

	req         invocation.Request
	attempt     invocation.Attempt
	afterCommit []func(context.Context)
}

// AfterCommit registers f to run once the call's outcome is durably
// recorded (the journal's terminal write; at the call's end when there
// is no journal), never before: an action that destroys evidence of the
// call (deleting n8n's execution) must not run while a crash could still
// make a rescue look for it.
func (c *Call) AfterCommit(f func(context.Context)) { c.afterCommit = append(c.afterCommit, f) }

// Committed runs the actions registered with AfterCommit, once.
func (c *Call) Committed(ctx context.Context) {
	fs := c.afterCommit
	c.afterCommit = nil
	for _, f := range fs {
		f(ctx)
	}
}

// NewCall returns a call of a copy of req, started now.
func NewCall(req *invocation.Request) *Call {
	c := &Call{req: *req, Started: time.Now()}
	c.Request = &c.req
	return c
}

// CallHandler is the rest of the pipeline below a per-call stage.
type CallHandler func(ctx context.Context, c *Call) (*invocation.Result, error)

// CallStage runs once per call, above the retry loop. It calls next at
// most once (or not at all, to answer itself) and returns its answer or
// its own.
type CallStage interface {
	Call(ctx context.Context, c *Call, next CallHandler) (*invocation.Result, error)
}

// CallFunc adapts a function to CallStage.
type CallFunc func(ctx context.Context, c *Call, next CallHandler) (*invocation.Result, error)

// Call calls f.
func (f CallFunc) Call(ctx context.Context, c *Call, next CallHandler) (*invocation.Result, error) {
	return f(ctx, c, next)
}

// AttemptStage runs once per attempt, below the retry loop and above the
// transport. The policy package's breakers and rate limiter, the
// telemetry attempt span and the webhook signer are attempt stages.
type AttemptStage interface {
	Attempt(ctx context.Context, a *invocation.Attempt, next invocation.AttemptHandler) (*invocation.Result, error)
}

// AttemptFunc adapts a function to AttemptStage.
type AttemptFunc func(ctx context.Context, a *invocation.Attempt, next invocation.AttemptHandler) (*invocation.Result, error)

// Attempt calls f.
func (f AttemptFunc) Attempt(ctx context.Context, a *invocation.Attempt, next invocation.AttemptHandler) (*invocation.Result, error) {
	return f(ctx, a, next)
}

// Interceptor is a user's stage, with a slot per call (below the built-in
// per-call stages, above the retry loop) and a slot per attempt (below
// the breaker and the attempt span, above signing and the transport).
// Implementations must embed InterceptorBase, so that a method added to
// the interface later breaks nobody.
type Interceptor interface {
	InterceptCall(ctx context.Context, c *Call, next CallHandler) (*invocation.Result, error)
	InterceptAttempt(ctx context.Context, a *invocation.Attempt, next invocation.AttemptHandler) (*invocation.Result, error)
	interceptorBase()
}

// InterceptorBase passes everything through; embed it in an Interceptor
// and override what you need.
type InterceptorBase struct{}

// InterceptCall calls next.
func (InterceptorBase) InterceptCall(ctx context.Context, c *Call, next CallHandler) (*invocation.Result, error) {
	return next(ctx, c)
}

// InterceptAttempt calls next.
func (InterceptorBase) InterceptAttempt(ctx context.Context, a *invocation.Attempt, next invocation.AttemptHandler) (*invocation.Result, error) {
	return next(ctx, a)
}

func (InterceptorBase) interceptorBase() {}
