// Package httpinvoker runs n8n workflows through their webhooks.
//
// An Invoker owns one pooled http.Transport. Each invocation resolves the
// workflow name to its webhook (path, method, response mode, auth), sends
// the parameters as JSON, and retries transient failures with exponential
// backoff and full jitter, honouring Retry-After. Every attempt carries
// the same X-Request-Id and Idempotency-Key headers.
//
// Classification of an attempt's outcome (the first definite answer of the
// configured classifiers, then the n8n rules):
//
//   - Transient, retried: connection failures, 408, 429, 502, 503, 504, 524.
//   - Permanent, returned at once: 400, 401, 403, 404 (webhook not
//     registered), 405, 409, 410, 413, 422, redirects, and n8n's 500
//     "Error in workflow", which means the workflow ran and failed: it is
//     not re-sent. A success status whose body fails validation (too large,
//     malformed JSON) is permanent too: the workflow ran.
//   - Unknown, retried at most once: other statuses and attempt timeouts
//     (n8n may still be running the workflow).
//
// Cancellation of the caller's context ends the invocation with the
// context's error and is never counted as a failure.
package httpinvoker
