package invoker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/httpinvoker"
	"github.com/n8n-invoker/n8n-invoker/internal/n8ntest"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// apiManager returns a manager with no workflow aliases and an API client
// whose traffic is checked against n8n's OpenAPI spec.
func apiManager(t *testing.T, aliases bool) (*invoker.Manager, *n8ntest.Instance, *n8ntest.Contract) {
	t.Helper()
	n8n := n8ntest.Require(t)
	cfg := n8n.Config(t)
	if !aliases {
		cfg.Workflows = nil
	}
	contract := n8n.NewContract(t)
	m, err := invoker.New(cfg, invoker.WithAPIClient(contract.API(t, n8n)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = m.Close(context.Background())
		contract.Check(t)
	})
	return m, n8n, contract
}

func TestRealN8NRunByID(t *testing.T) {
	t.Parallel()
	m, n8n, contract := apiManager(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	echoID := n8n.WorkflowID(t, "n8n-invoker echo")

	first := contract.Calls()
	res, err := m.ExecuteWorkflow(ctx, echoID, map[string]any{"by": "id"})
	if err != nil {
		t.Fatal(err)
	}
	// APICalls counts every API request the call made: here the lookup.
	if n := contract.Calls() - first; res.APICalls != n || n == 0 {
		t.Errorf("APICalls %d, the API saw %d", res.APICalls, n)
	}
	var out echoOut
	if err := res.Decode(&out); err != nil || out.Received["by"] != "id" || res.WorkflowID != echoID || res.ExecutionID == "" {
		t.Fatalf("by id: %+v %s %v", res, res.Output, err)
	}
	// The warm path makes no API call: the webhook is cached.
	before := contract.Calls()
	for range 3 {
		res, err := m.ExecuteWorkflow(ctx, echoID, map[string]any{"by": "id"})
		if err != nil {
			t.Fatal(err)
		}
		if res.APICalls != 0 {
			t.Errorf("warm call reports %d API calls", res.APICalls)
		}
	}
	if n := contract.Calls() - before; n != 0 {
		t.Errorf("warm path made %d API calls", n)
	}
	// By exact name too.
	res, err = m.ExecuteWorkflow(ctx, "n8n-invoker echo", map[string]any{"by": "name"})
	if err != nil || res.WorkflowID != echoID {
		t.Fatalf("by name: %+v %v", res, err)
	}
}

func TestRealN8NRunByIDErrors(t *testing.T) {
	t.Parallel()
	m, _, _ := apiManager(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := m.ExecuteWorkflow(ctx, "NoSuchWorkflow123", nil)
	if invocation.CodeOf(err) != invocation.CodeUnknownWorkflow || !errors.Is(err, invocation.ErrUnknownWorkflow) || invocation.ClassOf(err) != invocation.Permanent {
		t.Errorf("unknown id: %v", err)
	}
	// Header auth needs its secret in the configuration.
	_, err = m.ExecuteWorkflow(ctx, "n8n-invoker header auth", nil)
	if invocation.CodeOf(err) != invocation.CodeBadRequest || !strings.Contains(err.Error(), "credentials.") {
		t.Errorf("auth without secret: %v", err)
	}

	noKey := n8ntest.Require(t).Config(t)
	noKey.N8N.APIKey = secret.Secret{}
	m2, err := invoker.New(noKey)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close(context.Background())
	if _, err := m2.ExecuteWorkflow(ctx, "abc123", nil); !errors.Is(err, invocation.ErrUnknownWorkflow) || !strings.Contains(err.Error(), "n8n.api_key") {
		t.Errorf("no API key: %v", err)
	}
}

func TestRealN8NWaitForSlowWorkflow(t *testing.T) {
	t.Parallel()
	m, n8n, contract := apiManager(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	slowID := n8n.WorkflowID(t, "n8n-invoker slow")
	before := contract.Calls()
	start := time.Now()
	res, err := m.ExecuteWorkflow(ctx, slowID, map[string]any{"job": 42}, invoker.Wait())
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Done        bool           `json:"done"`
		Received    map[string]any `json:"received"`
		RequestID   string         `json:"requestId"`
		ExecutionID string         `json:"executionId"`
	}
	if err := lastItem(res, &out); err != nil || !out.Done || out.Received["job"] != float64(42) || out.ExecutionID != res.ExecutionID || out.RequestID != res.RequestID {
		t.Fatalf("result %+v last node output %s", res, res.LastNodeOutput)
	}
	if res.Status != n8napi.StatusSuccess || !res.Completed || time.Since(start) < 3*time.Second {
		t.Errorf("status %q completed %v after %s", res.Status, res.Completed, time.Since(start))
	}
	// Resolution and every poll are counted (the test runs alone in this
	// manager: the contract saw only its calls).
	if n := contract.Calls() - before; res.APICalls != n || n < 2 {
		t.Errorf("APICalls %d, the API saw %d", res.APICalls, n)
	}
	t.Logf("await: a 3 s workflow answered at once and was followed to its end in %s with %d API calls",
		time.Since(start).Round(time.Millisecond), res.APICalls)
}

func TestRealN8NWaitSurfacesError(t *testing.T) {
	t.Parallel()
	m, n8n, _ := apiManager(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := m.ExecuteWorkflow(ctx, n8ntest.Fail, map[string]any{"x": 1}, invoker.Wait())
	var fe *n8napi.ExecutionFailedError
	if !errors.As(err, &fe) || fe.Status != n8napi.StatusError || fe.Node != "Fail" || !strings.Contains(fe.Message, "boom from code node") ||
		!errors.Is(err, invocation.ErrWorkflowFailed) || fe.ExecutionID == "" {
		t.Fatalf("err = %v (%+v)", err, fe)
	}
	// Manual retry of the failed execution: it runs again and fails again.
	_, err = m.RetryExecution(ctx, fe.ExecutionID, false)
	var fe2 *n8napi.ExecutionFailedError
	if !errors.As(err, &fe2) || fe2.ExecutionID == fe.ExecutionID || fe2.Status != n8napi.StatusError {
		t.Fatalf("retry: %v", err)
	}
	e, _, err := m.API().Executions.Get(ctx, fe2.ExecutionID, false)
	if err != nil || e.RetryOf.String() != fe.ExecutionID || e.Mode != "retry" {
		t.Errorf("retry execution %+v, %v", e, err)
	}
	// A successful execution cannot be retried.
	res, err := m.ExecuteWorkflow(ctx, n8ntest.Echo, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.RetryExecution(ctx, res.ExecutionID, false)
	want := http.StatusConflict
	if n8n.Line() == 1 {
		want = http.StatusBadRequest // 1.x: 400 "The execution succeeded, so it cannot be retried."
	}
	var ae *n8napi.APIError
	if !errors.As(err, &ae) || ae.StatusCode != want || ae.Class() != invocation.Permanent {
		t.Errorf("retry of a success: %v, want HTTP %d", err, want)
	}
}

func TestRealN8NCorrelationUnderConcurrency(t *testing.T) {
	t.Parallel()
	m, _, _ := apiManager(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	results := make([]*invocation.Result, 10)
	errs := make([]error, 10)
	for i := range 10 {
		wg.Go(func() {
			// onReceived answers "Workflow was started": the execution is
			// found by the request id through the API.
			results[i], errs[i] = m.ExecuteWorkflow(ctx, n8ntest.OnReceived, map[string]any{"i": i}, invoker.Wait())
		})
	}
	wg.Wait()
	ids := map[string]bool{}
	for i, res := range results {
		if errs[i] != nil {
			t.Errorf("item %d: %v", i, errs[i])
			continue
		}
		var out echoOut
		if err := lastItem(res, &out); err != nil || out.Received["i"] != float64(i) || out.ExecutionID != res.ExecutionID || ids[res.ExecutionID] {
			t.Errorf("item %d: execution %s last node output %s", i, res.ExecutionID, res.LastNodeOutput)
		}
		if !strings.Contains(string(res.Output), "Workflow was started") {
			t.Errorf("item %d: Wait replaced the webhook's answer: %s", i, res.Output)
		}
		ids[res.ExecutionID] = true
	}
	t.Logf("correlation: 10 concurrent onReceived calls each matched to its own execution; API calls per call: %d", results[0].APICalls)
}

// TestRealN8NStopOnCancel cancels a caller waiting on a slow workflow and
// checks that the opt-in stop ended the execution in n8n.
func TestRealN8NStopOnCancel(t *testing.T) {
	t.Parallel()
	m, n8n, _ := apiManager(t, false)
	slowID := n8n.WorkflowID(t, "n8n-invoker slow")
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	_, err := m.ExecuteWorkflow(ctx, slowID, map[string]any{"stop": true}, invoker.WaitOptions(n8napi.AwaitOptions{StopOnCancel: true}))
	if !invocation.IsCanceled(err) {
		t.Fatalf("err = %v, want the context's", err)
	}
	// The execution of this call is the newest one of the workflow.
	bg, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	var last *n8napi.Execution
	for range 20 {
		execs, _, err := m.API().Executions.List(bg, &n8napi.ExecutionListOptions{WorkflowID: slowID, Limit: 1})
		if err == nil && len(execs) > 0 && execs[0].Status == n8napi.StatusCanceled && execs[0].StartedAt != nil && time.Since(*execs[0].StartedAt) < time.Minute {
			last = execs[0]
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if last == nil {
		t.Fatal("no canceled execution of the slow workflow in the last minute")
	}
	t.Logf("stop on cancel: execution %s is %s", last.ID, last.Status)
}

// lastItem decodes the only item of the last node's output.
func lastItem(res *invocation.Result, v any) error {
	var items []json.RawMessage
	if err := json.Unmarshal(res.LastNodeOutput, &items); err != nil {
		return err
	}
	if len(items) != 1 {
		return fmt.Errorf("%d items, want 1", len(items))
	}
	return json.Unmarshal(items[0], v)
}

// TestRealN8NWaitKeepsTheAnswer: with Wait, a Respond to Webhook node's
// answer (its status, content type, body and headers) stays the result's
// Output; Wait adds the execution's status and the last node's items.
func TestRealN8NWaitKeepsTheAnswer(t *testing.T) {
	t.Parallel()
	m, _, _ := apiManager(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	params := map[string]any{"email": "wait@example.com", "plan": "premium"}
	plain, err := m.ExecuteWorkflow(ctx, n8ntest.Onboarding, params)
	if err != nil {
		t.Fatal(err)
	}
	waited, err := m.ExecuteWorkflow(ctx, n8ntest.Onboarding, params, invoker.Wait())
	if err != nil {
		t.Fatal(err)
	}
	if waited.StatusCode != plain.StatusCode || waited.ContentType != plain.ContentType || len(waited.Output) == 0 ||
		!sameKeys(t, plain.Output, waited.Output) || waited.Header.Get(httpinvoker.HeaderExecutionID) == "" {
		t.Errorf("Wait changed the answer:\n plain  %d %s %s\n waited %d %s %s", plain.StatusCode, plain.ContentType, plain.Output,
			waited.StatusCode, waited.ContentType, waited.Output)
	}
	if waited.Status != n8napi.StatusSuccess || len(waited.LastNodeOutput) == 0 || waited.LastNodeOutput[0] != '[' {
		t.Errorf("status %q, last node output %s", waited.Status, waited.LastNodeOutput)
	}
}

// sameKeys reports whether two JSON objects have the same keys (the
// values differ per execution: ids).
func sameKeys(t *testing.T, a, b json.RawMessage) bool {
	t.Helper()
	var ma, mb map[string]any
	if json.Unmarshal(a, &ma) != nil || json.Unmarshal(b, &mb) != nil {
		return string(a) == string(b)
	}
	if len(ma) != len(mb) {
		return false
	}
	for k := range ma {
		if _, ok := mb[k]; !ok {
			return false
		}
	}
	return true
}
