package httpinvoker

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/policy"
)

// TestAnswerRule is the one rule for what an answer means, on the wire:
// status × body × the target's response mode → code, class, outcome. n8n's
// own answers are recognised by their bodies; any other answer of a
// workflow that answers through a Respond node is that workflow's answer
// (it ran: permanent, never re-sent); any other answer in another mode
// may come after a run (outcome ambiguous: reconciled, never blindly
// re-sent).
func TestAnswerRule(t *testing.T) {
	t.Parallel()
	const (
		rn = invocation.ResponseModeResponseNode
		ln = invocation.ResponseModeLastNode
		or = invocation.ResponseModeOnReceived
	)
	var (
		perm, trans, unk     = invocation.Permanent, invocation.Transient, invocation.Unknown
		answered, ambiguous  = invocation.Answered, invocation.Ambiguous
		workflowError        = `{"message":"Error in workflow"}`
		notRegistered        = `{"code":404,"message":"The requested webhook \"POST x\" is not registered.","hint":"..."}`
		envoyReset           = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
		nginx503             = "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>"
		nginx429             = "<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n<body>\r\n<center><h1>429 Too Many Requests</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>"
		dbNotReady           = `{"code":503,"message":"Database is not ready!"}`
		problem              = `{"code":0,"message":"There was a problem executing the workflow"}`
		workflowBody         = `{"error":"the order was refused","orderId":7}`
		html, text, js, none = "text/html; charset=utf-8", "text/plain", "application/json", ""
	)
	tests := []struct {
		name   string
		mode   string
		status int
		ctype  string
		body   string
		code   invocation.Code
		class  invocation.Class
		out    invocation.Outcome
	}{
		// n8n's own answers, in every mode.
		{"Error in workflow, responseNode", rn, 500, js, workflowError, invocation.CodeWorkflowFailed, perm, answered},
		{"Error in workflow, lastNode", ln, 500, js, workflowError, invocation.CodeWorkflowFailed, perm, answered},
		{"not registered, responseNode", rn, 404, js, notRegistered, invocation.CodeRejected, perm, answered},
		{"header auth wrong, responseNode", rn, 403, none, "Authorization data is wrong!", invocation.CodeRejected, perm, answered},
		{"basic auth missing, responseNode", rn, 401, text, "Authorization is required!", invocation.CodeRejected, perm, answered},
		{"basic auth wrong, responseNode", rn, 401, text, "Authentication data is wrong!", invocation.CodeRejected, perm, answered},
		{"starting n8n's HTML 404, responseNode", rn, 404, html, "<!DOCTYPE html><html><body><pre>Cannot POST /webhook/x</pre></body></html>", invocation.CodeUnavailable, trans, answered},
		{"n8n's database not ready, responseNode", rn, 503, js, dbNotReady, invocation.CodeUnavailable, trans, answered},
		{"n8n's problem executing, responseNode: may have run", rn, 500, js, problem, invocation.CodeUnknown, unk, ambiguous},
		// A Respond node's own answer: the workflow ran.
		{"respond node 500", rn, 500, js, workflowBody, invocation.CodeWorkflowAnswered, perm, answered},
		{"respond node 500 text", rn, 500, html, "it broke", invocation.CodeWorkflowAnswered, perm, answered},
		{"respond node 400", rn, 400, js, workflowBody, invocation.CodeWorkflowAnswered, perm, answered},
		{"respond node 404 JSON", rn, 404, js, workflowBody, invocation.CodeWorkflowAnswered, perm, answered},
		{"respond node 422", rn, 422, js, workflowBody, invocation.CodeWorkflowAnswered, perm, answered},
		{"respond node 501", rn, 501, js, workflowBody, invocation.CodeWorkflowAnswered, perm, answered},
		{"respond node 429 of its own", rn, 429, js, workflowBody, invocation.CodeWorkflowAnswered, perm, answered},
		{"respond node 503 of its own", rn, 503, js, workflowBody, invocation.CodeWorkflowAnswered, perm, answered},
		{"respond node 503 empty", rn, 503, none, "", invocation.CodeWorkflowAnswered, perm, answered},
		{"respond node 502 of its own", rn, 502, js, workflowBody, invocation.CodeWorkflowAnswered, perm, answered},
		{"respond node 302", rn, 302, none, "", invocation.CodeWorkflowAnswered, perm, answered},
		// A proxy's answers in front of a Respond node's workflow.
		{"proxy 503 before a respond node: not run", rn, 503, html, nginx503, invocation.CodeUnavailable, trans, answered},
		{"proxy 429 before a respond node: not run", rn, 429, html, nginx429, invocation.CodeRateLimited, trans, answered},
		{"envoy 503 reset before headers, responseNode", rn, 503, text, envoyReset, invocation.CodeLost, trans, ambiguous},
		{"envoy 503 no healthy upstream, responseNode", rn, 503, text, "no healthy upstream", invocation.CodeUnavailable, trans, answered},
		{"proxy 504 page, responseNode", rn, 504, html, "<html><head><title>504 Gateway Time-out</title></head></html>", invocation.CodeLost, trans, ambiguous},
		{"proxy 502 empty, responseNode", rn, 502, none, "", invocation.CodeLost, trans, ambiguous},
		// Other modes: anything unexplained may come after a run.
		{"500 lastNode", ln, 500, js, workflowBody, invocation.CodeUnknown, unk, ambiguous},
		{"500 empty mode", "", 500, js, `{"message":"something else"}`, invocation.CodeUnknown, unk, ambiguous},
		{"520 lastNode", ln, 520, html, "<html>520</html>", invocation.CodeUnknown, unk, ambiguous},
		{"501 lastNode", ln, 501, none, "", invocation.CodeUnknown, unk, ambiguous},
		{"507 lastNode", ln, 507, none, "", invocation.CodeUnknown, unk, ambiguous},
		{"418 lastNode", ln, 418, none, "", invocation.CodeUnknown, unk, ambiguous},
		{"500 onReceived", or, 500, js, `{"message":"Workflow Webhook Error: Workflow could not be started!"}`, invocation.CodeUnknown, unk, ambiguous},
		{"429 lastNode", ln, 429, js, workflowBody, invocation.CodeRateLimited, trans, answered},
		{"503 lastNode", ln, 503, js, workflowBody, invocation.CodeUnavailable, trans, answered},
		{"envoy 503 reset before headers, lastNode", ln, 503, text, envoyReset, invocation.CodeLost, trans, ambiguous},
		{"502 lastNode", ln, 502, none, "", invocation.CodeLost, trans, ambiguous},
		{"504 lastNode", ln, 504, none, "", invocation.CodeLost, trans, ambiguous},
		{"400 lastNode", ln, 400, js, `{"message":"bad"}`, invocation.CodeRejected, perm, answered},
		{"404 JSON lastNode", ln, 404, js, workflowBody, invocation.CodeRejected, perm, answered},
		{"403 lastNode", ln, 403, none, "Authorization data is wrong!", invocation.CodeRejected, perm, answered},
		{"302 lastNode: not followed", ln, 302, none, "", invocation.CodeRejected, perm, answered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.ctype != "" {
					w.Header().Set("Content-Type", tt.ctype)
				}
				if tt.status/100 == 3 {
					w.Header().Set("Location", "http://elsewhere.test/x")
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			tr, err := New(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			_, err = tr.Attempt(t.Context(), attempt("wf", &invocation.Target{Path: "hook", ResponseMode: tt.mode}))
			var he *invocation.HTTPError
			if !errors.As(err, &he) {
				t.Fatalf("err = %v (%T), want an *HTTPError", err, err)
			}
			// As the pipeline does: the classifiers' class goes on the error.
			he.ErrClass = policy.Chain(nil).Classify(err)
			if got := invocation.CodeOf(err); got != tt.code {
				t.Errorf("code = %s, want %s", got, tt.code)
			}
			if got := invocation.ClassOf(err); got != tt.class {
				t.Errorf("class = %s, want %s", got, tt.class)
			}
			if got := invocation.OutcomeOf(err); got != tt.out {
				t.Errorf("outcome = %s, want %s", got, tt.out)
			}
			if he.StatusCode != tt.status || string(he.Body) != tt.body {
				t.Errorf("the error lost the answer: %d %q", he.StatusCode, he.Body)
			}
		})
	}
}
