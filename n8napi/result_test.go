package n8napi

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// TestResultOf: one mapping from an execution to the call's outcome, per
// response mode and status.
func TestResultOf(t *testing.T) {
	t.Parallel()
	exec := func(status string) *Execution {
		var e Execution
		raw := `{"id":"9","status":"` + status + `","data":{"resultData":{"lastNodeExecuted":"Last","runData":{
			"Webhook":[{"startTime":1,"data":{"main":[[{"json":{"headers":{"idempotency-key":"k"}}}]]}}],
			"Last":[{"startTime":2,"data":{"main":[[{"json":{"n":0}}]]}},{"startTime":3,"data":{"main":[[{"json":{"n":1}},{"json":{"n":2}}]]}}]}`
		if status == StatusError {
			raw += `,"error":{"message":"boom","node":{"name":"Code"}}`
		}
		raw += `}}}`
		if err := json.Unmarshal([]byte(raw), &e); err != nil {
			t.Fatal(err)
		}
		return &e
	}
	const items = `[{"n":1},{"n":2}]`
	for _, tc := range []struct {
		name, status          string
		target                invocation.Target
		output                string
		completed, notRebuilt bool
		code                  invocation.Code // of the error, when not a result
	}{
		{"lastNode", StatusSuccess, invocation.Target{ResponseMode: "lastNode"}, `{"n":1}`, true, false, 0},
		{"lastNode firstEntryJson", StatusSuccess, invocation.Target{ResponseMode: "lastNode", ResponseData: "firstEntryJson"}, `{"n":1}`, true, false, 0},
		{"allEntries", StatusSuccess, invocation.Target{ResponseMode: "lastNode", ResponseData: "allEntries"}, items, true, false, 0},
		{"noData", StatusSuccess, invocation.Target{ResponseMode: "lastNode", ResponseData: "noData"}, `null`, true, false, 0},
		{"binary", StatusSuccess, invocation.Target{ResponseMode: "lastNode", ResponseData: "firstEntryBinary"}, `null`, true, true, 0},
		{"onReceived", StatusSuccess, invocation.Target{ResponseMode: "onReceived"}, `{"message":"Workflow was started"}`, false, false, 0},
		{"onReceived running", StatusRunning, invocation.Target{ResponseMode: "onReceived"}, `{"message":"Workflow was started"}`, false, false, 0},
		{"respond node", StatusSuccess, invocation.Target{ResponseMode: "responseNode"}, `null`, true, true, 0},
		{"mcp", StatusSuccess, invocation.Target{ResponseMode: "onReceived", Transport: "mcp"}, `{"n":1}`, true, false, 0},
		{"failed", StatusError, invocation.Target{ResponseMode: "lastNode"}, "", false, false, invocation.CodeWorkflowFailed},
		{"onReceived failed", StatusError, invocation.Target{ResponseMode: "onReceived"}, "", false, false, invocation.CodeWorkflowFailed},
		{"canceled", StatusCanceled, invocation.Target{ResponseMode: "responseNode"}, "", false, false, invocation.CodeWorkflowFailed},
		{"running", StatusRunning, invocation.Target{ResponseMode: "lastNode"}, "", false, false, invocation.CodeUnresolved},
		{"waiting", StatusWaiting, invocation.Target{ResponseMode: "responseNode"}, "", false, false, invocation.CodeUnresolved},
		{"new", StatusNew, invocation.Target{ResponseMode: "lastNode", ResponseData: "allEntries"}, "", false, false, invocation.CodeUnresolved},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tgt := tc.target
			tgt.WorkflowID = "wf"
			res, err := ResultOf(exec(tc.status), &ResultInput{Request: &invocation.Request{Workflow: "w", RequestID: "r"}, Target: &tgt,
				Attempts: 3, Duration: 2 * time.Second, APICalls: 7})
			if tc.code != 0 {
				if res != nil || invocation.CodeOf(err) != tc.code || invocation.AttemptsOf(err) != 3 {
					t.Fatalf("got %+v, %v (code %v), want code %v", res, err, invocation.CodeOf(err), tc.code)
				}
				var fe *ExecutionFailedError
				if tc.code == invocation.CodeWorkflowFailed && (!errors.As(err, &fe) || fe.ExecutionID != "9" || fe.Node == "") {
					t.Errorf("failed error %#v", err)
				}
				if tc.status == StatusError && (fe.Node != "Code" || fe.Message != "boom") {
					t.Errorf("failed error %#v", fe)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(res.Output) != tc.output || res.Completed != tc.completed || res.NotReconstructed != tc.notRebuilt {
				t.Errorf("output %s completed %v not reconstructed %v", res.Output, res.Completed, res.NotReconstructed)
			}
			if string(res.LastNodeOutput) != items || !res.Reconciled || res.StatusCode != 0 || res.Attempts != 3 || res.Duration != 2*time.Second ||
				res.ExecutionID != "9" || res.WorkflowID != "wf" || res.RequestID != "r" || res.APICalls != 7 {
				t.Errorf("%+v", res)
			}
		})
	}
}

// TestReconcileRefusesWhatN8NMayHaveLost: a key not found is "not run"
// only when n8n cannot have pruned its execution or left it unsaved.
func TestReconcileRefusesWhatN8NMayHaveLost(t *testing.T) {
	t.Parallel()
	ret := Retention{MaxAge: DefaultRetentionMaxAge, MaxCount: 1000}
	for _, tc := range []struct {
		name     string
		ago      time.Duration // the window's start
		settings string
		execs    int // executions since the window's start
		legacy   bool
		want     string // in the reason; "" when not run
	}{
		{"recent", time.Minute, "", 10, false, ""},
		{"older than the age", 15 * 24 * time.Hour, "", 10, false, "retention of 336h0m0s"},
		{"no successful executions saved", time.Minute, `{"saveDataSuccessExecution":"none"}`, 10, false, "saveDataSuccessExecution"},
		{"no failed executions saved", time.Minute, `{"saveDataErrorExecution":"none","saveDataSuccessExecution":"all"}`, 10, false, "saveDataErrorExecution"},
		{"more executions than kept", time.Minute, "", 1000, false, "retention of 1000"},
		{"more executions than kept, 1.x", time.Minute, "", 1000, true, "retention of 1000"},
		{"fewer than kept, 1.x", time.Minute, "", 900, true, ""},
		{"other workflows' executions before the window", time.Minute, "", 10, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, s := reconcileStub(t)
			s.settings, s.noStartedAfter = tc.settings, tc.legacy
			since := time.Now().Add(-tc.ago)
			s.add(1, since.Add(-time.Hour), StatusSuccess, nil)
			if tc.execs == 10 && !tc.legacy {
				// Many executions of other workflows (the instance's ids) before the window.
				s.add(2000, since.Add(-time.Minute), StatusSuccess, func(_ int, e *stubExec) { e.workflow = "other" })
			}
			s.add(tc.execs, since.Add(time.Second), StatusSuccess, func(i int, e *stubExec) { e.key = "other" })
			r, err := c.Reconcile(t.Context(), "wf", "idempotency-key", "k", since,
				&ReconcileOptions{Settle: time.Millisecond, Timeout: 5 * time.Second, Retention: ret, MaxPages: 50})
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if r.Unresolved || r.Execution != nil {
					t.Errorf("want not run: %+v", r)
				}
				return
			}
			if !r.Unresolved || !strings.Contains(r.Reason, tc.want) {
				t.Errorf("want unresolved (%q): %+v", tc.want, r)
			}
		})
	}
}
