package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/policy"
)

// Stages are the slots of the pipeline. Every slot may be nil except
// Resolve and Transport; a nil slot is skipped. This struct and compose
// below are the one place that says in which order a call passes them:
//
//	per call (once per call, above the retry loop):
//	  Resolve      the workflow name to the transport's Target
//	  Dedupe       one key, one execution: a key in flight is waited for
//	  Journal      write-ahead journal and idempotency, dead-lettering
//	  Fallback     graceful degradation of a fail-fast refusal
//	  Hooks        pre-execution, post-execution and error hooks
//	  CallSpan     the invocation's span and metrics
//	  Bulkhead     calls in flight per workflow
//	  Await        follow an accepted execution to its end
//	  Interceptors each one's InterceptCall, in the order given
//	retry loop (Retry: budget, backoff, Retry-After; its classifiers
//	  classify each attempt's error as it leaves the transport, so that
//	  every per-attempt stage, the breaker first, sees the class)
//	per attempt (once per attempt, below the retry loop):
//	  RateLimit    requests per second toward n8n
//	  Breakers     the circuit breaker of the workflow's endpoint
//	  AttemptSpan  the attempt's client span and trace context
//	  Interceptors each one's InterceptAttempt, in the order given
//	  Sign         per-attempt webhook credentials (HMAC, JWT)
//	  Fence        the last check that this process may send the key
//	               (its journal lease), after every stage that could
//	               send around it
//	Transport      one attempt, one request on the wire
type Stages struct {
	Resolve      Resolver
	Dedupe       CallStage
	Journal      CallStage
	Fallback     CallStage
	Hooks        CallStage
	CallSpan     CallStage
	Bulkhead     *policy.Bulkhead
	Await        CallStage
	Interceptors []Interceptor
	// Retry is the retry loop; nil means DefaultRetry's policy, the n8n
	// classification and no budget.
	Retry *Retry
	// RateLimit paces attempts toward n8n: a *policy.RateLimiter (one
	// process) or a limiter shared by a fleet (contrib/redis).
	RateLimit   AttemptStage
	Breakers    *policy.Breakers
	AttemptSpan AttemptStage
	Sign        AttemptStage
	// Fence refuses an attempt its process may no longer send (an
	// error of code invocation.CodeLeaseLost, which ends the call).
	Fence     AttemptStage
	Transport invocation.Transport
}

// Pipeline runs calls through its stages. It is safe for concurrent use.
type Pipeline struct {
	call  CallHandler
	names []string
	retry *Retry
}

// New composes the stages. The handlers are built once here: a call
// allocates nothing for passing a stage.
func New(s Stages) (*Pipeline, error) {
	if s.Resolve == nil {
		return nil, errors.New("pipeline: no resolver")
	}
	if s.Transport == nil {
		return nil, errors.New("pipeline: no transport")
	}
	r := s.Retry
	if r == nil {
		r = &Retry{}
	}
	if err := r.init(s.Resolve); err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	p := &Pipeline{retry: r}
	p.call = p.compose(&s, r)
	return p, nil
}

// compose chains the stages in the documented order, bottom first.
func (p *Pipeline) compose(s *Stages, r *Retry) CallHandler {
	type named struct {
		name  string
		stage AttemptStage
	}
	attempt := []named{}
	if s.RateLimit != nil {
		attempt = append(attempt, named{"rate-limit", s.RateLimit})
	}
	if s.Breakers != nil {
		attempt = append(attempt, named{"breaker", s.Breakers})
	}
	if s.AttemptSpan != nil {
		attempt = append(attempt, named{"attempt-span", s.AttemptSpan})
	}
	for _, ic := range s.Interceptors {
		attempt = append(attempt, named{fmt.Sprintf("interceptor(%T).attempt", ic), AttemptFunc(ic.InterceptAttempt)})
	}
	if s.Sign != nil {
		attempt = append(attempt, named{"sign", s.Sign})
	}
	if s.Fence != nil {
		attempt = append(attempt, named{"fence", s.Fence})
	}
	ah := r.classified(s.Transport)
	for i := len(attempt) - 1; i >= 0; i-- {
		st, next := attempt[i].stage, ah
		ah = func(ctx context.Context, a *invocation.Attempt) (*invocation.Result, error) {
			return st.Attempt(ctx, a, next)
		}
	}

	type namedCall struct {
		name  string
		stage CallStage
	}
	call := []namedCall{{"resolve", CallFunc(p.resolve(s.Resolve))}}
	for _, c := range []namedCall{{"dedupe", s.Dedupe}, {"journal", s.Journal}, {"fallback", s.Fallback}, {"hooks", s.Hooks}, {"call-span", s.CallSpan}} {
		if c.stage != nil {
			call = append(call, c)
		}
	}
	if s.Bulkhead != nil {
		call = append(call, namedCall{"bulkhead", bulkhead{s.Bulkhead}})
	}
	if s.Await != nil {
		call = append(call, namedCall{"await", s.Await})
	}
	for _, ic := range s.Interceptors {
		call = append(call, namedCall{fmt.Sprintf("interceptor(%T).call", ic), CallFunc(ic.InterceptCall)})
	}
	loop := func(ctx context.Context, c *Call) (*invocation.Result, error) { return r.run(ctx, c, ah) }
	ch := CallHandler(loop)
	for i := len(call) - 1; i >= 0; i-- {
		st, next := call[i].stage, ch
		ch = func(ctx context.Context, c *Call) (*invocation.Result, error) { return st.Call(ctx, c, next) }
	}
	for _, c := range call {
		p.names = append(p.names, c.name)
	}
	p.names = append(p.names, "retry")
	for _, a := range attempt {
		p.names = append(p.names, a.name)
	}
	p.names = append(p.names, "transport")
	return ch
}

// Names returns the names of the configured stages, top to bottom:
// per-call stages, "retry", per-attempt stages, "transport".
func (p *Pipeline) Names() []string { return append([]string(nil), p.names...) }

// Invoke runs req through the pipeline as a new call.
func (p *Pipeline) Invoke(ctx context.Context, req *invocation.Request) (*invocation.Result, error) {
	return p.Run(ctx, NewCall(req))
}

// Run runs c through the pipeline. c.Request must be set.
func (p *Pipeline) Run(ctx context.Context, c *Call) (*invocation.Result, error) {
	if c.Started.IsZero() {
		c.Started = time.Now()
	}
	return p.call(ctx, c)
}

// resolve is the resolution stage: the name to a Target.
func (p *Pipeline) resolve(r Resolver) func(ctx context.Context, c *Call, next CallHandler) (*invocation.Result, error) {
	return func(ctx context.Context, c *Call, next CallHandler) (*invocation.Result, error) {
		if c.Target == nil {
			t, err := r.Resolve(ctx, c.Request.Workflow)
			if err != nil {
				return nil, err
			}
			c.Target = t
		}
		if _, err := invocation.FillPath(c.Target, c.Request); err != nil {
			return nil, err // a missing path parameter: nothing is sent
		}
		return next(ctx, c)
	}
}

var emptyObject = []byte("{}")

// encode returns the JSON body of req: Body as it is (validated), else
// Params, else {}. A GET or HEAD webhook takes parameters in its query,
// so it gets no body.
func encode(req *invocation.Request, t *invocation.Target) ([]byte, error) {
	switch t.Method {
	case http.MethodGet, http.MethodHead:
		if len(req.Body) > 0 {
			return nil, fmt.Errorf("workflow %q: a %s webhook takes parameters, not a body", req.Workflow, t.Method)
		}
		return nil, nil
	}
	switch {
	case len(req.Body) > 0:
		if !json.Valid(req.Body) {
			return nil, fmt.Errorf("workflow %q: request body is not valid JSON", req.Workflow)
		}
		return req.Body, nil
	case req.Params == nil:
		return emptyObject, nil
	}
	b, err := json.Marshal(req.Params)
	if err != nil {
		return nil, fmt.Errorf("workflow %q: encoding parameters: %w", req.Workflow, err)
	}
	return b, nil
}

// bulkhead is the bulkhead stage.
type bulkhead struct{ b *policy.Bulkhead }

func (s bulkhead) Call(ctx context.Context, c *Call, next CallHandler) (*invocation.Result, error) {
	release, err := s.b.Acquire(ctx, c.Request.Workflow)
	if err != nil {
		return nil, err
	}
	defer release()
	return next(ctx, c)
}
