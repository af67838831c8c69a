// Package invoker runs n8n workflows reliably from Go and tells what
// happened to each run.
//
// A Manager, built from a YAML file with FromConfig or from a
// *config.Config with New, resolves a workflow name to its webhook,
// invokes it through an Invoker (the HTTP webhook invoker by default),
// retries transient failures with backoff, and runs the registered hooks
// around every execution. Every invocation ends accounted for: a *Result,
// or a typed error (*HTTPError, *TransportError, *ResponseError,
// *RetryAfterError, *AttemptsExhaustedError, *UnknownWorkflowError) whose
// Class says whether it is transient or permanent, or the caller's
// context error when it was canceled.
package invoker
