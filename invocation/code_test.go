package invocation_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// TestCodeTable: every code has a unique name that parses back, and the
// class and wire outcome the table gives.
func TestCodeTable(t *testing.T) {
	t.Parallel()
	want := map[invocation.Code]struct {
		name    string
		class   invocation.Class
		outcome invocation.Outcome
	}{
		invocation.CodeOK:               {"ok", invocation.Unknown, invocation.Answered},
		invocation.CodeCanceled:         {"canceled", invocation.Permanent, invocation.NotSent},
		invocation.CodeCanceledInFlight: {"canceled-in-flight", invocation.Permanent, invocation.Ambiguous},
		invocation.CodeNotSent:          {"not-sent", invocation.Transient, invocation.NotSent},
		invocation.CodeUnavailable:      {"unavailable", invocation.Transient, invocation.Answered},
		invocation.CodeRateLimited:      {"rate-limited", invocation.Transient, invocation.Answered},
		invocation.CodeLost:             {"lost", invocation.Transient, invocation.Ambiguous},
		invocation.CodeAmbiguous:        {"ambiguous", invocation.Unknown, invocation.Ambiguous},
		invocation.CodeUnresolved:       {"unresolved", invocation.Unknown, invocation.Ambiguous},
		invocation.CodeUnknown:          {"unknown", invocation.Unknown, invocation.Ambiguous},
		invocation.CodeRejected:         {"rejected", invocation.Permanent, invocation.Answered},
		invocation.CodeWorkflowFailed:   {"workflow-failed", invocation.Permanent, invocation.Answered},
		invocation.CodeWorkflowAnswered: {"workflow-answered", invocation.Permanent, invocation.Answered},
		invocation.CodeInvalidAnswer:    {"invalid-answer", invocation.Permanent, invocation.Answered},
		invocation.CodeUnknownWorkflow:  {"unknown-workflow", invocation.Permanent, invocation.NotSent},
		invocation.CodeBadRequest:       {"bad-request", invocation.Permanent, invocation.NotSent},
		invocation.CodeVetoed:           {"vetoed", invocation.Permanent, invocation.NotSent},
		invocation.CodeCircuitOpen:      {"circuit-open", invocation.Transient, invocation.NotSent},
		invocation.CodeBudgetExhausted:  {"budget-exhausted", invocation.Transient, invocation.NotSent},
		invocation.CodeBulkheadFull:     {"bulkhead-full", invocation.Transient, invocation.NotSent},
		invocation.CodeKeyConflict:      {"key-conflict", invocation.Permanent, invocation.NotSent},
		invocation.CodeKeyHeld:          {"key-held", invocation.Transient, invocation.NotSent},
		invocation.CodeLeaseLost:        {"lease-lost", invocation.Transient, invocation.Ambiguous},
	}
	if len(want) != len(invocation.Codes()) {
		t.Fatalf("%d codes, the test knows %d", len(invocation.Codes()), len(want))
	}
	for _, c := range invocation.Codes() {
		w, ok := want[c]
		if !ok {
			t.Errorf("code %d (%s) is not in the test", c, c)
			continue
		}
		if c.String() != w.name || c.Class() != w.class || c.Outcome() != w.outcome {
			t.Errorf("%d: %s %s %s, want %s %s %s", c, c, c.Class(), c.Outcome(), w.name, w.class, w.outcome)
		}
		if got, ok := invocation.ParseCode(c.String()); !ok || got != c {
			t.Errorf("ParseCode(%q) = %s, %v", c, got, ok)
		}
		e := &invocation.Error{Code: c, Workflow: "w"}
		if invocation.CodeOf(e) != c || invocation.ClassOf(e) != c.Class() || (c != invocation.CodeOK && invocation.OutcomeOf(e) != c.Outcome()) {
			t.Errorf("%s: CodeOf %s ClassOf %s OutcomeOf %s", c, invocation.CodeOf(e), invocation.ClassOf(e), invocation.OutcomeOf(e))
		}
		// A permanent code matches ErrPermanent, except a cancellation
		// (not a failure); no other code does.
		permanent := c.Class() == invocation.Permanent && c != invocation.CodeCanceled && c != invocation.CodeCanceledInFlight
		if errors.Is(e, invocation.ErrPermanent) != permanent {
			t.Errorf("%s: Is(ErrPermanent) = %v", c, !permanent)
		}
		wrapped := fmt.Errorf("outer: %w", e)
		if invocation.CodeOf(wrapped) != c {
			t.Errorf("%s: CodeOf of a wrapped error = %s", c, invocation.CodeOf(wrapped))
		}
	}
}

// TestCodeOf: the codes of the wire's errors, of the sentinels and of a
// context's error; errors that say nothing was sent are not ambiguous.
func TestCodeOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want invocation.Code
	}{
		{"nil", nil, invocation.CodeOK},
		{"workflow failed", &invocation.HTTPError{StatusCode: 500, WorkflowFailed: true}, invocation.CodeWorkflowFailed},
		{"not registered", &invocation.HTTPError{StatusCode: 404, NotRegistered: true, ErrClass: invocation.Permanent}, invocation.CodeRejected},
		{"404 in the startup grace", &invocation.HTTPError{StatusCode: 404, NotRegistered: true, ErrClass: invocation.Transient}, invocation.CodeUnavailable},
		{"403", &invocation.HTTPError{StatusCode: 403}, invocation.CodeRejected},
		{"429", &invocation.HTTPError{StatusCode: 429}, invocation.CodeRateLimited},
		{"503", &invocation.HTTPError{StatusCode: 503}, invocation.CodeUnavailable},
		{"starting up", &invocation.HTTPError{StatusCode: 200, Starting: true}, invocation.CodeUnavailable},
		{"proxy 502", &invocation.HTTPError{StatusCode: 502}, invocation.CodeLost},
		{"proxy 524", &invocation.HTTPError{StatusCode: 524}, invocation.CodeLost},
		{"500 of a Respond node", &invocation.HTTPError{StatusCode: 500}, invocation.CodeUnknown},
		{"refused", &invocation.TransportError{Err: errors.New("refused"), ErrClass: invocation.Transient}, invocation.CodeNotSent},
		{"bad certificate", &invocation.TransportError{Err: errors.New("x509"), ErrClass: invocation.Permanent}, invocation.CodeBadRequest},
		{"reset after sending", &invocation.TransportError{Err: errors.New("reset"), Sent: true}, invocation.CodeLost},
		{"unreadable answer", &invocation.ResponseError{Reason: "malformed"}, invocation.CodeInvalidAnswer},
		{"canceled", context.Canceled, invocation.CodeCanceled},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), invocation.CodeCanceled},
		{"closed", invocation.ErrClosed, invocation.CodeCanceled},
		{"sentinel", fmt.Errorf("%w: nope", invocation.ErrUnknownWorkflow), invocation.CodeUnknownWorkflow},
		{"plain", errors.New("?"), invocation.CodeUnknown},
		{"path parameter", pathErr(t), invocation.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := invocation.CodeOf(tt.err); got != tt.want {
				t.Errorf("CodeOf(%v) = %s, want %s", tt.err, got, tt.want)
			}
		})
	}
	// The errors whose own message says nothing was sent are NotSent.
	for _, c := range []invocation.Code{invocation.CodeUnknownWorkflow, invocation.CodeBadRequest} {
		if o := invocation.OutcomeOf(&invocation.Error{Code: c}); o != invocation.NotSent {
			t.Errorf("%s: outcome %s", c, o)
		}
	}
	if o := invocation.OutcomeOf(&invocation.Error{Code: invocation.CodeWorkflowFailed}); o != invocation.Answered {
		t.Errorf("workflow failed: outcome %s", o)
	}
}

func pathErr(t *testing.T) error {
	_, err := invocation.FillPath(&invocation.Target{Path: "orders/:id", WebhookID: "w"}, &invocation.Request{Workflow: "orders"})
	if err == nil {
		t.Fatal("a missing path parameter was accepted")
	}
	return err
}

// TestErrorMessageAndCauses: the message names the workflow, the cause
// stays reachable, DeadLetter matches ErrDeadLettered.
func TestErrorMessageAndCauses(t *testing.T) {
	t.Parallel()
	he := &invocation.HTTPError{Workflow: "w", Method: http.MethodPost, URL: "/webhook/w", StatusCode: 503}
	e := &invocation.Error{Code: invocation.CodeUnavailable, Workflow: "w", Attempts: 7, Message: "gave up after 7 attempts", Err: he, DeadLetter: 3}
	var got *invocation.HTTPError
	if !errors.As(e, &got) || got != he || !errors.Is(e, invocation.ErrDeadLettered) || invocation.DeadLetterOf(e) != 3 || invocation.AttemptsOf(e) != 7 {
		t.Errorf("causes of %v", e)
	}
	if s := e.Error(); s != `workflow "w": gave up after 7 attempts: `+he.Error()+" (stored in the dead-letter queue as entry 3)" {
		t.Errorf("message %q", s)
	}
	if s := (&invocation.Error{Code: invocation.CodeBulkheadFull}).Error(); s != "bulkhead full" {
		t.Errorf("message of a bare code %q", s)
	}
	c := invocation.NewCanceled(context.Background(), "w", 2, true)
	if invocation.CodeOf(c) != invocation.CodeCanceledInFlight || !errors.Is(c, context.Canceled) || !invocation.IsCanceled(c) {
		t.Errorf("canceled in flight: %v", c)
	}
}
