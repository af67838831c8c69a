// Package httpinvoker is the webhook transport of n8n-invoker: it runs
// one attempt of a workflow through its webhook and reports what
// happened, and decides nothing (retries and classification are the
// pipeline's, see package pipeline).
//
// A Transport owns one pooled http.Transport (MaxIdleConnsPerHost near a
// batch's concurrency, so that connections do not churn). Each attempt is
// one request on the wire: the body it gives net/http cannot be rewound,
// so net/http never re-sends a request by itself on a reused connection
// that fails, and a failed attempt says whether its request was sent
// (invocation.OutcomeOf: not sent, answered, ambiguous). Every attempt
// carries the call's X-Request-Id and Idempotency-Key headers, header or
// basic auth; Signer, the signing stage, adds the per-attempt HMAC
// signature or JWT. Answers are read with a size limit; a 2xx body must be
// JSON or text; redirects are not followed (they could carry credentials
// to another host).
package httpinvoker
