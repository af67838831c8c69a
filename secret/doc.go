// Package secret holds credentials so that they never reach a log, an
// error, a span or an answer: a Secret prints, logs and marshals as
// REDACTED, and only Reveal returns its value. A Provider gives the
// current value of a rotating secret (Static, File, or a secrets manager
// of your own); a Provider that is also a Reloader reads its source again
// on demand.
//
// It is a leaf: every layer that needs a credential (the configuration,
// the webhook transport, the n8n API client) imports it and nothing
// else of the project.
package secret
