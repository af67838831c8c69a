package pipeline_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/pipeline"
	"github.com/n8n-invoker/n8n-invoker/policy"
)

// TestReconcileWindowStartsAtFirstAmbiguousAttempt: every reconcile of a
// call looks back to its first attempt whose answer was lost, not to the
// latest: an execution of the first attempt that started late is still
// in the window of the second's reconcile.
func TestReconcileWindowStartsAtFirstAmbiguousAttempt(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var sent []time.Time
		tr := invocation.TransportFunc(func(ctx context.Context, a *invocation.Attempt) (*invocation.Result, error) {
			sent = append(sent, time.Now())
			if len(sent) == 1 {
				// Not sent at all: no reconcile, and not the window's start.
				return nil, &invocation.Error{Code: invocation.CodeNotSent, Workflow: "w"}
			}
			if len(sent) < 4 {
				return nil, &invocation.Error{Code: invocation.CodeLost, Workflow: "w"}
			}
			return &invocation.Result{Workflow: "w", StatusCode: 200, Output: []byte(`{}`)}, nil
		})
		var since []time.Time
		rec := pipeline.ReconcilerFunc(func(ctx context.Context, c *pipeline.Call, s time.Time) pipeline.Reconciled {
			since = append(since, s)
			if !c.FirstAmbiguous.Equal(s) {
				t.Errorf("Call.FirstAmbiguous %v, reconciled since %v", c.FirstAmbiguous, s)
			}
			time.Sleep(time.Second) // the reconcile takes time
			return pipeline.Reconciled{Verdict: pipeline.NotRun}
		})
		retry := policy.DefaultRetry()
		retry.BaseDelay, retry.MaxRetries = time.Second, 5
		p, err := pipeline.New(pipeline.Stages{
			Resolve:   pipeline.StaticResolver{"w": {Path: "w"}},
			Retry:     &pipeline.Retry{Policy: &retry, Reconciler: rec},
			Transport: tr,
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Invoke(t.Context(), &invocation.Request{Workflow: "w"}); err != nil {
			t.Fatal(err)
		}
		if len(sent) != 4 || len(since) != 2 {
			t.Fatalf("%d attempts, %d reconciles", len(sent), len(since))
		}
		for i, s := range since {
			if !s.Equal(sent[1]) {
				t.Errorf("reconcile %d since %v, want the first ambiguous attempt's %v (attempts at %v)", i, s, sent[1], sent)
			}
		}
	})
}
