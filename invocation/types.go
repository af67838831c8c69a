package invocation

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Request is one workflow invocation, independent of the transport.
type Request struct {
	// Workflow names the workflow: a configured alias such as
	// "user-onboarding".
	Workflow string
	// Params is encoded as the JSON object body (for GET and HEAD webhooks,
	// as the query string). Ignored when Body is set.
	Params map[string]any
	// Body, when set, is sent as-is as the JSON body. It must be valid JSON.
	Body json.RawMessage
	// PathParams fill the :name segments of a webhook path such as
	// orders/:orderId (percent-encoded). A missing one is an error before
	// anything is sent.
	PathParams map[string]string
	// RequestID identifies the invocation. It is sent on every attempt
	// (header X-Request-Id) and stays the same across retries.
	RequestID string
	// IdempotencyKey is sent on every attempt (header Idempotency-Key) and
	// stays the same across retries and replays, so that a workflow can
	// recognise a repeated delivery.
	IdempotencyKey string
}

// Result is the outcome of an invocation that n8n answered with success.
type Result struct {
	// Workflow is the workflow the request named.
	Workflow string `json:"workflow"`
	// RequestID is the request id sent with every attempt.
	RequestID string `json:"request_id"`
	// ExecutionID is n8n's execution id when the response carried it
	// (header X-N8N-Execution-Id or an "executionId" field in the output),
	// empty otherwise.
	ExecutionID string `json:"execution_id,omitempty"`
	// StatusCode is the HTTP status of the final attempt; 0 when the
	// result was Reconciled (no answer was received: it was found in
	// n8n's executions).
	StatusCode int `json:"status"`
	// ContentType is the media type of the response, without parameters.
	ContentType string `json:"content_type,omitempty"`
	// Header is the answer's header as n8n sent it. Marshalled (in a
	// journal record, a CLI output) it is redacted: cookies, credentials
	// and anything named like a token, key or secret print REDACTED.
	Header Header `json:"header,omitempty"`
	// Output is the response body as JSON: a JSON body as it came, a text
	// body as a JSON string, an empty body as null.
	Output json.RawMessage `json:"output"`
	// Completed is false when the webhook answers before the workflow ends
	// (response mode onReceived): Output then only says it started.
	Completed bool `json:"completed"`
	// WorkflowID is n8n's id of the workflow, when known.
	WorkflowID string `json:"workflow_id,omitempty"`
	// LastNodeOutput is, with Wait or when Reconciled, every item the
	// last node of the execution output (a JSON array), next to Output,
	// which stays the webhook's own answer.
	LastNodeOutput json.RawMessage `json:"last_node_output,omitempty"`
	// Status is n8n's execution status when the execution was tracked
	// through the API (success, waiting, ...), empty otherwise.
	Status string `json:"execution_status,omitempty"`
	// WaitTill is when a waiting execution resumes.
	WaitTill *time.Time `json:"wait_till,omitempty"`
	// APICalls counts the n8n API requests this invocation made: resolution
	// (when not cached), reconciliation (every page and retry), polling.
	APICalls int `json:"api_calls,omitempty"`
	// Deduplicated is true when the result is the one recorded for an
	// idempotency key that already succeeded: n8n was not called again.
	Deduplicated bool `json:"deduplicated,omitempty"`
	// Degraded is true when the result comes from the manager's fallback,
	// not from n8n.
	Degraded bool `json:"degraded,omitempty"`
	// Reconciled is true when an attempt's answer was lost and the result
	// was found in n8n's executions instead (by the idempotency key): the
	// workflow ran once and was not sent again. StatusCode is then 0,
	// Header empty, and Output what the webhook would have answered,
	// rebuilt for its response mode: lastNode, the last node's first
	// item's JSON (its items as an array with responseData allEntries);
	// onReceived, n8n's {"message":"Workflow was started"}; a Respond to
	// Webhook node's answer cannot be rebuilt: null, with
	// NotReconstructed. Attempts and Duration are the call's.
	Reconciled bool `json:"reconciled,omitempty"`
	// NotReconstructed is true when a Reconciled result's Output could
	// not be rebuilt (the workflow answers through a Respond to Webhook
	// node, or with binary data): Output is null, LastNodeOutput holds
	// the execution's last items.
	NotReconstructed bool `json:"not_reconstructed,omitempty"`
	// Attempts is the number of attempts made, at least 1.
	Attempts int `json:"attempts"`
	// Duration is the wall time of the invocation, retries included.
	Duration time.Duration `json:"duration_ns"`
}

// Decode unmarshals the output into v.
func (r *Result) Decode(v any) error {
	return json.Unmarshal(r.Output, v)
}

// Sleep waits d or until ctx ends, returning ctx's error then. A d of
// zero or less returns ctx's error at once (nil when it is live).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return waitEnded(ctx)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return waitEnded(ctx)
	case <-t.C:
		return nil
	}
}

// waitEnded is the error of a wait that ctx ended, nil when it has not:
// code CodeCanceled (nothing was sent while waiting), the context's
// error as cause.
func waitEnded(ctx context.Context) error {
	if ctx.Err() == nil {
		return nil
	}
	return &Error{Code: CodeCanceled, Message: "canceled while waiting, before sending", Err: ctx.Err()}
}

// Header is an answer's header. It marshals with secret values redacted.
type Header map[string][]string

// Get returns the first value of key (canonical or not).
func (h Header) Get(key string) string { return http.Header(h).Get(key) }

// MarshalJSON encodes the header with secret values redacted.
func (h Header) MarshalJSON() ([]byte, error) {
	out := make(map[string][]string, len(h))
	for k, v := range h {
		if secretHeader(k) {
			v = []string{"REDACTED"}
		}
		out[k] = v
	}
	return json.Marshal(out)
}

// secretHeader reports whether a header's value must never be shown.
func secretHeader(k string) bool {
	k = strings.ToLower(k)
	switch k {
	case "set-cookie", "cookie", "authorization", "proxy-authorization", "www-authenticate":
		return true
	}
	for _, w := range []string{"token", "key", "secret", "password", "auth", "session", "signature"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}
