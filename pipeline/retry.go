package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/policy"
)

// DefaultMaxThrottle bounds the time a call spends waiting out 429s
// when max_elapsed is not set.
const DefaultMaxThrottle = 10 * time.Minute

// Retry is the retry loop between the per-call and the per-attempt
// stages: it classifies each attempt's error, takes a retry's cost from
// the budget, and waits the backoff or the server's Retry-After.
type Retry struct {
	// Policy is the backoff policy; nil means policy.DefaultRetry.
	Policy *policy.Retry
	// Classifiers are consulted, in order, before the n8n rules
	// (policy.N8N).
	Classifiers policy.Chain
	// Budget, when not nil, limits retries client-wide.
	Budget *policy.Budget
	// Reconciler, when set, is asked before any re-send of an attempt
	// whose outcome is ambiguous (sent, answer lost): a call n8n ran is
	// not sent again.
	Reconciler Reconciler
	// RetryAmbiguous re-sends an ambiguous attempt when there is no
	// Reconciler. Off by default: never fire twice.
	RetryAmbiguous bool
	// StartupGrace is how long after n8n last looked unavailable a 404
	// "webhook not registered" counts as transient; zero means
	// policy.DefaultStartupGrace, negative turns it off.
	StartupGrace time.Duration

	grace      *policy.Grace
	invalidate func(workflow string)
}

func (r *Retry) init(res Resolver) error {
	if r.Policy == nil {
		d := policy.DefaultRetry()
		r.Policy = &d
	}
	if err := r.Policy.Validate(); err != nil {
		return err
	}
	g := r.StartupGrace
	if g == 0 {
		g = policy.DefaultStartupGrace
	}
	r.grace = policy.NewGrace(max(g, 0))
	if inv, ok := res.(Invalidator); ok {
		r.invalidate = inv.Invalidate
	}
	return nil
}

// run makes attempts until one succeeds, an error is not worth another,
// or the policy, the budget or ctx says stop. It returns a result or a
// typed error: an *invocation.Error whose code says why (the last
// attempt's error as its cause), or the context's error when the caller
// canceled.
func (r *Retry) run(ctx context.Context, c *Call, next invocation.AttemptHandler) (*invocation.Result, error) {
	start := time.Now()
	wf := c.Request.Workflow
	// The body is encoded once for every attempt, below every per-call
	// stage (hooks may have changed the parameters).
	body, err := encode(c.Request, c.Target)
	if err != nil {
		if invocation.CodeOf(err) == invocation.CodeUnknown {
			err = &invocation.Error{Code: invocation.CodeBadRequest, Workflow: wf, Err: err}
		}
		return nil, err
	}
	a := &c.attempt
	*a = invocation.Attempt{Request: c.Request, Target: c.Target, Body: body}
	var last error
	unknownRetries, throttled := 0, 0
	lastThrottled, crashResent := false, false
	for {
		if ctx.Err() != nil {
			return nil, invocation.NewCanceled(ctx, wf, c.Attempts, mayHaveRun(c))
		}
		cost := 0
		if last != nil && r.Budget != nil && !lastThrottled {
			var ok bool
			if cost, ok = r.Budget.Acquire(timedOut(last)); !ok {
				return nil, &invocation.Error{Code: invocation.CodeBudgetExhausted, Workflow: wf, Attempts: c.Attempts,
					Message: fmt.Sprintf("retry budget exhausted after %d attempt%s", c.Attempts, pluralS(c.Attempts)), Err: last}
			}
		}
		a.Number, a.Header = c.Attempts+1, nil
		sentAt := time.Now()
		res, err := next(ctx, a)
		if invocation.CodeOf(err) == invocation.CodeLeaseLost {
			// The fence refused: another process decides the key.
			r.refund(cost)
			return nil, err
		}
		if err != nil && errors.Is(err, invocation.ErrCircuitOpen) {
			// The breaker refused before sending: not an attempt.
			r.refund(cost)
			return nil, refused(ctx, c, err, last)
		}
		c.Attempts++
		if err == nil {
			if r.Budget != nil {
				r.Budget.Success(cost) // a first-try success puts back the refund
			}
			res.Attempts = c.Attempts
			res.Duration = time.Since(start)
			return res, nil
		}
		if ctx.Err() != nil {
			return nil, canceled(ctx, c, err) // the caller's cancellation: not a failure
		}
		class := invocation.ClassOf(err)
		if invocation.OutcomeOf(err) == invocation.Ambiguous && c.FirstAmbiguous.IsZero() {
			c.FirstAmbiguous = sentAt // from here on, the call may have run
		}
		if class != invocation.Permanent && invocation.OutcomeOf(err) == invocation.Ambiguous {
			// Sent, answer lost: find out before sending it again.
			switch {
			case r.Reconciler != nil:
				rc := r.Reconciler.Reconcile(ctx, c, c.FirstAmbiguous)
				if ctx.Err() != nil {
					return nil, canceled(ctx, c, err)
				}
				switch rc.Verdict {
				case Ran:
					rc.Result.Attempts = c.Attempts
					rc.Result.Duration = time.Since(start)
					return rc.Result, nil
				case RanAndFailed:
					return nil, rc.Err
				case Unresolved:
					return nil, unresolved(wf, c.Attempts, rc.Reason, err)
				case Crashed:
					if crashResent {
						return nil, unresolved(wf, c.Attempts, "its execution crashed twice", err)
					}
					crashResent = true // n8n died while running it: re-sent once
				}
			case !r.RetryAmbiguous:
				return nil, ambiguous(wf, c.Attempts, err)
			}
		}
		if r.invalidate != nil && errors.Is(err, invocation.ErrNotRegistered) {
			r.invalidate(wf) // the next call resolves it afresh
		}
		last = err
		if class == invocation.Permanent {
			return nil, ended(c, err)
		}
		ra, hasRA := retryAfter(err)
		// A 429 with Retry-After is n8n's flow control: waited out, never
		// counted against max_retries (nor by the breaker or the budget);
		// bounded by max_elapsed (DefaultMaxThrottle when unset) and ctx.
		pol := r.Policy
		if c.Target.MaxRetryAfter > 0 {
			p := *r.Policy
			p.MaxRetryAfter, pol = c.Target.MaxRetryAfter, &p
		}
		maxRA := pol.MaxRetryAfter
		if maxRA == 0 {
			maxRA = policy.DefaultMaxRetryAfter
		}
		lastThrottled = hasRA && ra <= maxRA && errors.Is(err, invocation.ErrRateLimited)
		if lastThrottled {
			limit := r.Policy.MaxElapsed
			if limit == 0 {
				limit = DefaultMaxThrottle
			}
			if time.Since(start)+ra > limit {
				return nil, exhausted(c, err)
			}
			throttled++
		}
		retries := c.Attempts - 1 - throttled
		// An unknown failure may have run: without a reconciler it is
		// retried once; with one, its ambiguity was settled above.
		if retries >= r.Policy.MaxRetries || (class == invocation.Unknown && unknownRetries >= 1 && r.Reconciler == nil) {
			return nil, exhausted(c, err)
		}
		if class == invocation.Unknown {
			unknownRetries++
		}
		wait, ok := pol.Wait(retries+1, ra, hasRA)
		if !ok {
			return nil, retryAfterTooLong(wf, wait, c.Attempts, err)
		}
		if r.Policy.MaxElapsed > 0 && time.Since(start)+wait > r.Policy.MaxElapsed {
			return nil, exhausted(c, err)
		}
		// The backoff is not spent at n8n: the call's batch slot is given
		// back meanwhile, so a batch's concurrency counts calls n8n has.
		if err := invocation.WaitReleased(ctx, wait, nil); err != nil {
			return nil, invocation.NewCanceled(ctx, wf, c.Attempts, mayHaveRun(c))
		}
	}
}

// classified returns the transport's Attempt with the classification of
// its errors: the class the classifiers (and the startup grace) give is
// recorded on the error.
func (r *Retry) classified(t invocation.Transport) invocation.AttemptHandler {
	return func(ctx context.Context, a *invocation.Attempt) (*invocation.Result, error) {
		res, err := t.Attempt(ctx, a)
		if err == nil || ctx.Err() != nil {
			return res, err
		}
		return nil, withClass(err, r.grace.Adjust(err, r.Classifiers.Classify(err)), a)
	}
}

// canceled is the error of a call its caller canceled: the transport's
// (it counts the attempts and says whether the last one was sent), else
// one that says the last attempt's outcome.
func canceled(ctx context.Context, c *Call, err error) error {
	var ie *invocation.Error
	if code := invocation.CodeOf(err); errors.As(err, &ie) && (code == invocation.CodeCanceled || code == invocation.CodeCanceledInFlight) {
		if ie.Workflow == "" || ie.Attempts != c.Attempts || (code == invocation.CodeCanceled && mayHaveRun(c)) {
			e := *ie
			e.Workflow, e.Attempts = c.Request.Workflow, c.Attempts
			if mayHaveRun(c) {
				e.Code = invocation.CodeCanceledInFlight // an earlier attempt may have run
			}
			return &e
		}
		return err
	}
	return invocation.NewCanceled(ctx, c.Request.Workflow, c.Attempts, sentOf(err) || mayHaveRun(c))
}

// mayHaveRun reports whether an attempt of c so far may have run: one
// whose answer was lost (even when a reconcile then said "not run": the
// execution may show up later). A call canceled after it is
// canceled-in-flight, to be reconciled, never "not sent".
func mayHaveRun(c *Call) bool { return !c.FirstAmbiguous.IsZero() }

// sentOf reports whether an attempt that ended with err may have been
// sent: what its error says, and yes for a bare error (a custom
// transport's context error says nothing of the wire).
func sentOf(err error) bool {
	var o interface{ Outcome() invocation.Outcome }
	if errors.As(err, &o) {
		return o.Outcome() != invocation.NotSent
	}
	return true
}

// refused completes a breaker's refusal with the call's details.
func refused(ctx context.Context, c *Call, err error, last error) error {
	wf, attempts := c.Request.Workflow, c.Attempts
	if ctx.Err() != nil {
		return invocation.NewCanceled(ctx, wf, attempts, mayHaveRun(c))
	}
	var coe *invocation.Error
	if !errors.As(err, &coe) {
		return err
	}
	e := *coe
	e.Workflow, e.Attempts, e.Err = wf, attempts, last
	return &e
}

func (r *Retry) refund(cost int) {
	if cost > 0 {
		r.Budget.Success(cost)
	}
}

// withClass records the class the loop decided on the error: on the
// webhook transport's errors in their field, around any other error that
// has no class of its own as an *invocation.Error whose code follows from
// that class and its outcome.
func withClass(err error, class invocation.Class, a *invocation.Attempt) error {
	var he *invocation.HTTPError
	var te *invocation.TransportError
	switch {
	case errors.As(err, &he):
		he.ErrClass = class
		return err
	case errors.As(err, &te):
		te.ErrClass = class
		return err
	}
	var own interface{ Class() invocation.Class }
	if errors.As(err, &own) {
		return err
	}
	return &invocation.Error{Code: invocation.AttemptCode(class, invocation.OutcomeOf(err)), Workflow: a.Request.Workflow,
		Attempts: a.Number, Err: err}
}

func timedOut(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func retryAfter(err error) (time.Duration, bool) {
	var he *invocation.HTTPError
	if errors.As(err, &he) && he.HasRetryAfter {
		return he.RetryAfter, true
	}
	return 0, false
}

// ended is the error of a call that ended with err, not worth another
// attempt: err's code and the attempts made.
func ended(c *Call, err error) error {
	return &invocation.Error{Code: invocation.CodeOf(err), Workflow: c.Request.Workflow, Attempts: attemptsOf(c, err), Err: err}
}

// attemptsOf is the attempts of a call: those the loop made, or those
// its transport reports when it made more (a transport that retries
// inside one attempt).
func attemptsOf(c *Call, err error) int { return max(c.Attempts, invocation.AttemptsOf(err)) }

// exhausted is the error of a call that made its last attempt: the code
// of that attempt's error, and the attempts made.
func exhausted(c *Call, err error) error {
	e := &invocation.Error{Code: invocation.CodeOf(err), Workflow: c.Request.Workflow, Attempts: attemptsOf(c, err), Err: err}
	if c.Attempts > 1 {
		e.Message = fmt.Sprintf("gave up after %d attempt%s", c.Attempts, pluralS(c.Attempts))
	}
	return e
}
