// Package invoker runs n8n workflows reliably from Go and tells what
// happened to each run.
//
// A Manager, built from a YAML file with FromConfig or from a
// *config.Config with New, passes every call through the resilience
// pipeline (package pipeline): it resolves the workflow name to its
// target, journals the call, runs the hooks, and retries the attempts of
// its transport (the webhook transport of package httpinvoker by
// default, or one given with WithTransport) under the retry budget, the
// circuit breaker and the rate limiter. Every invocation ends accounted
// for: an *invocation.Result, or a typed error whose class
// (invocation.ClassOf) says whether it is transient or permanent and
// which counts its attempts (invocation.AttemptsOf), or the caller's
// context error when it was canceled. Manager.Stages lists the stages.
package invoker
