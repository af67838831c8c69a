// Package policy holds n8n-invoker's resilience mechanisms, independent of
// any transport: the retry policy (exponential backoff, full jitter,
// Retry-After), a client-wide retry budget, the three-valued classifier
// chain, a circuit breaker per endpoint, a rate limiter that backs off on
// 429, and a bulkhead. Guard combines them around each attempt of an
// invocation; the HTTP invoker consults it through its Gate seam.
//
// None of them counts the caller's cancellation as a failure, and the
// breaker counts only transient and unknown failures: a permanent error
// (a 4xx, a workflow that ran and failed) means the endpoint answered.
package policy
