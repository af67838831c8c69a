package dlq_test

import (
	"testing"

	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// TestReasonOfEveryCode: every code has its dead-letter reason; a code
// that says the workflow ran is "failed" (replaying runs it again), one
// refused before sending for good is "rejected".
func TestReasonOfEveryCode(t *testing.T) {
	t.Parallel()
	for _, c := range invocation.Codes() {
		r := dlq.ReasonOf(c)
		switch {
		case c.Ran() && r != dlq.ReasonFailed:
			t.Errorf("%s: %s, want failed", c, r)
		case !c.Ran() && r == dlq.ReasonFailed:
			t.Errorf("%s did not run: reason failed", c)
		case c.Class() == invocation.Permanent && c.Outcome() == invocation.NotSent && c != invocation.CodeCanceled && c != invocation.CodeCanceledInFlight && r != dlq.ReasonRejected:
			t.Errorf("%s: %s, want rejected", c, r)
		case c.Outcome() == invocation.Ambiguous && (r == dlq.ReasonRejected):
			t.Errorf("%s may have run: reason rejected", c)
		}
	}
	for c, want := range map[invocation.Code]string{
		invocation.CodeAmbiguous: dlq.ReasonAmbiguous, invocation.CodeUnresolved: dlq.ReasonUnresolved,
		invocation.CodeCircuitOpen: dlq.ReasonCircuitOpen, invocation.CodeBudgetExhausted: dlq.ReasonRetryBudget,
		invocation.CodeBulkheadFull: dlq.ReasonBulkhead, invocation.CodeUnavailable: dlq.ReasonExhausted,
		invocation.CodeRejected: dlq.ReasonRejected, invocation.CodeWorkflowFailed: dlq.ReasonFailed,
	} {
		if dlq.ReasonOf(c) != want {
			t.Errorf("%s: %s, want %s", c, dlq.ReasonOf(c), want)
		}
	}
}
