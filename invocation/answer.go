package invocation

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
)

// The one rule for what an answer that is not a success means, decided
// by evidence (who wrote the answer), not by its status alone:
//
//   - n8n's own answers are recognised by their bodies: 500 "Error in
//     workflow" (it ran and failed), 404 "... not registered", its
//     webhook authentication's 401/403 texts, 200 "n8n is starting up",
//     503 "Database is not ready!" and a starting n8n's HTML 404 (nothing
//     ran), 500 "There was a problem executing the workflow" (it may have
//     run).
//   - A proxy's or service mesh's "reset before headers" 503 (Envoy's
//     "upstream connect error or disconnect/reset before headers"), like a
//     502, 504 or 524, may come after n8n took the request: CodeLost.
//   - Any other answer of a workflow that answers through a Respond to
//     Webhook node (ResponseModeResponseNode) is that workflow's answer:
//     CodeWorkflowAnswered (it ran; never re-sent). Only a 429 or 503 that
//     cannot be the workflow's (a proxy's page, n8n's own body) says "not
//     run", and a 502, 504 or 524 with a proxy's page (or none) is lost.
//   - In the other modes a 429 is CodeRateLimited and a 503
//     CodeUnavailable (a workflow cannot choose them), the 4xx statuses
//     n8n and proxies refuse with (400, 401, 403, 404, 405, 408, 409, 410,
//     413, 422) and an unfollowed redirect are CodeRejected, and any other
//     answer (a 500 that n8n did not explain, a 501, a proxy's 520, an
//     unusual 4xx) may come after a run: CodeUnknown, whose outcome is
//     Ambiguous (reconciled before any re-send, never re-sent blindly).

// Bodies of n8n's own answers.
const (
	// messageWorkflowError is n8n's 500 of a workflow that ran and failed.
	messageWorkflowError = "Error in workflow"
	// messageProblem is n8n's 500 when running the workflow threw (it may
	// have run) or the body was over its limit (it did not).
	messageProblem = "There was a problem executing the workflow"
	// messageNotStarted ends n8n's 500 of a webhook whose workflow could
	// not be started.
	messageNotStarted = "Workflow could not be started!"
	// messageDatabaseNotReady is n8n's 503 before its database connects.
	messageDatabaseNotReady = "Database is not ready!"
	// envoyReset starts Envoy's 503 of a connection to the upstream that
	// failed or was reset before its answer's headers: the request may
	// have been forwarded.
	envoyReset = "upstream connect error or disconnect/reset before headers"
)

// n8n's webhook authentication's answers (the Webhook node's
// WebhookAuthorizationError), 401 and 403 as plain text.
var webhookAuthMessages = []string{
	"Authorization is required!", "Authorization data is wrong!", "Authentication data is wrong!",
	"Authorization problem!", "No token provided",
}

// proxyTexts are the plain-text bodies of proxies' own answers (Envoy,
// Traefik, HAProxy and Go's reverse proxy) that say nothing was run.
var proxyTexts = []string{"no healthy upstream", "no available server", "upstream request timeout", "Bad Gateway", "Service Unavailable", "Too Many Requests", "Gateway Timeout"}

// AnswerCode returns the code of the answer by the evidence of its
// status, body and the target's response mode, before any classifier's
// class adjusts it (see the rule above HTTPError.ErrorCode).
func (e *HTTPError) AnswerCode() Code {
	s := e.StatusCode
	switch {
	case e.WorkflowFailed || (s == http.StatusInternalServerError && e.Message == messageWorkflowError):
		return CodeWorkflowFailed
	case e.Starting:
		return CodeUnavailable
	case e.NotRegistered || (s == http.StatusNotFound && strings.Contains(e.Message, "not registered")):
		return CodeRejected
	case e.n8nAuth():
		return CodeRejected
	case s == http.StatusNotFound && e.html():
		// A starting n8n serves its editor's 404 until the webhooks are
		// registered.
		return CodeUnavailable
	case s == http.StatusServiceUnavailable && strings.HasPrefix(e.Message, envoyReset):
		return CodeLost
	case s == http.StatusServiceUnavailable && e.Message == messageDatabaseNotReady:
		return CodeUnavailable
	case s == http.StatusInternalServerError && (e.Message == messageProblem || strings.HasSuffix(e.Message, messageNotStarted)):
		return CodeUnknown // n8n's own, and it may have run
	}
	if e.ResponseMode == ResponseModeResponseNode {
		return e.respondNodeCode()
	}
	switch s {
	case http.StatusTooManyRequests:
		return CodeRateLimited
	case http.StatusServiceUnavailable:
		return CodeUnavailable
	case http.StatusBadGateway, http.StatusGatewayTimeout, 524:
		return CodeLost
	case 400, 401, 403, 404, 405, 408, 409, 410, 413, 422:
		return CodeRejected
	}
	if s >= 300 && s < 400 {
		return CodeRejected // a redirect not followed: nothing ran
	}
	return CodeUnknown
}

// respondNodeCode is the code of an answer of a workflow that answers
// through a Respond to Webhook node that is not one of n8n's own: the
// workflow's, unless it cannot be.
func (e *HTTPError) respondNodeCode() Code {
	switch e.StatusCode {
	case http.StatusTooManyRequests:
		if e.proxyPage() {
			return CodeRateLimited
		}
	case http.StatusServiceUnavailable:
		if e.proxyPage() {
			return CodeUnavailable
		}
	case http.StatusBadGateway, http.StatusGatewayTimeout, 524:
		if len(bytes.TrimSpace(e.Body)) == 0 || e.proxyPage() {
			return CodeLost
		}
	}
	return CodeWorkflowAnswered
}

// n8nAuth reports n8n's webhook authentication's refusal.
func (e *HTTPError) n8nAuth() bool {
	if e.StatusCode != http.StatusUnauthorized && e.StatusCode != http.StatusForbidden {
		return false
	}
	for _, m := range webhookAuthMessages {
		if e.Message == m {
			return true
		}
	}
	return false
}

// proxyPage reports a body a proxy writes for its own answer of the
// status: an HTML page titled with the status ("503 Service Temporarily
// Unavailable", "429 Too Many Requests"), Cloudflare's "error code: 5xx",
// or a known plain text.
func (e *HTTPError) proxyPage() bool {
	b := bytes.TrimSpace(e.Body)
	code := strconv.Itoa(e.StatusCode)
	if e.html() {
		lb := bytes.ToLower(b)
		return bytes.Contains(lb, []byte("<title>"+code)) || bytes.Contains(lb, []byte("<h1>"+code))
	}
	if string(b) == "error code: "+code {
		return true
	}
	for _, t := range proxyTexts {
		if strings.EqualFold(string(b), t) || strings.EqualFold(string(b), code+" "+t) {
			return true
		}
	}
	return false
}

// html reports an HTML body.
func (e *HTTPError) html() bool {
	for _, ct := range e.Header["Content-Type"] {
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "text/html") {
			// A Respond node's text answers text/html too: only a page
			// counts.
			return bytes.HasPrefix(bytes.TrimSpace(e.Body), []byte("<")) || e.ResponseMode != ResponseModeResponseNode
		}
	}
	return strings.HasPrefix(e.Message, "<")
}
