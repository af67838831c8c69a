// Package telemetry traces and measures n8n-invoker through the
// OpenTelemetry API. It never sets OpenTelemetry globals: providers and
// the propagator are options, the globals are only read as defaults.
//
// Spans: one per execution ("n8n.execute", with n8n.workflow,
// n8n.workflow.id, n8n.execution.id, n8n.request.id and error.type), and
// one client span per HTTP attempt ("POST webhook", with
// http.request.resend_count), whose W3C traceparent goes to n8n, so that
// n8n's own workflow span (n8n 2.19 and later, with its OpenTelemetry
// module on) continues the trace.
//
// Metrics (low-cardinality attributes only: workflow name, outcome,
// class, endpoint): n8n_invoker.invocations, n8n_invoker.attempts,
// n8n_invoker.retries, n8n_invoker.duration (s), n8n_invoker.breaker.state
// (0 closed, 1 half-open, 2 open), n8n_invoker.dlq.depth and
// n8n_invoker.batch.in_flight.
package telemetry
