// Package pipeline is the resilience pipeline of n8n-invoker: one call
// passes a fixed, documented stack of stages once on the way down and
// once on the way back, as smithy-go's middleware stack does.
//
// Per-call stages run once per call, above the retry loop: resolution
// of a workflow name to the transport's Target, the journal and
// idempotency, fallback, hooks, the call span, the bulkhead, the await
// of an accepted execution. The retry loop (budget, classification,
// backoff) runs the per-attempt stages once per attempt: the rate
// limiter, the circuit breaker, the attempt span, signing, and then the
// Transport, which makes exactly one attempt. Stages lists the slots in
// their order; a user adds a stage with an Interceptor, which has a slot
// per call and a slot per attempt.
//
// Any invocation.Transport gets every stage: the webhook transport of
// httpinvoker is one, a custom one given to the manager another.
package pipeline
