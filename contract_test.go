package invoker_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/n8n-invoker/n8n-invoker/internal/n8ntest"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
)

// TestRealN8NContractOfAPIClient makes every call of n8napi's services
// against the running n8n, through the contract that checks request and
// answer against the OpenAPI spec that n8n line ships (with the line's
// known deviations, n8ntest.KnownDeviations): on 2.x and on 1.x.
func TestRealN8NContractOfAPIClient(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	contract := n8n.NewContract(t)
	api := contract.API(t, n8n)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	post := func(path, body string) {
		t.Helper()
		resp, err := http.Post(n8n.BaseURL+"/webhook/"+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	defer http.DefaultClient.CloseIdleConnections()

	// Workflows: list (paged), get, unknown.
	active := true
	ids := map[string]string{}
	for w, err := range api.Workflows.All(ctx, &n8napi.WorkflowListOptions{Active: &active, Limit: 5}) {
		if err != nil {
			t.Fatal(err)
		}
		ids[w.Name] = w.ID.String()
	}
	echoID, failID := ids["n8n-invoker echo"], ids["n8n-invoker fail"]
	if _, _, err := api.Workflows.Get(ctx, echoID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := api.Workflows.Get(ctx, "NoSuchWorkflow"); !n8napi.IsNotFound(err) {
		t.Errorf("unknown workflow: %v", err)
	}

	// Executions: list, get, find, unknown.
	post("invoker-echo", `{"contract":true}`)
	var ok *n8napi.Execution
	for range 40 {
		execs, _, err := api.Executions.List(ctx, &n8napi.ExecutionListOptions{WorkflowID: echoID, Limit: 3, IncludeData: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(execs) > 0 && execs[0].Terminal() {
			ok = execs[0]
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if ok == nil {
		t.Fatal("no ended execution of the echo workflow")
	}
	if _, _, err := api.Executions.Get(ctx, ok.ID.String(), true); err != nil {
		t.Fatal(err)
	}
	if e, _, err := api.Executions.Find(ctx, echoID, ok.ID.String(), false); err != nil || e.ID != ok.ID {
		t.Fatalf("find: %v", err)
	}
	if _, _, err := api.Executions.Get(ctx, "999999999", false); !n8napi.IsNotFound(err) {
		t.Errorf("unknown execution: %v", err)
	}

	// Retry: a failed execution runs again; a succeeded one is refused
	// (409 on 2.x, 400 on 1.x), permanently.
	post("invoker-fail", `{"contract":true}`)
	var failed *n8napi.Execution
	for range 40 {
		execs, _, err := api.Executions.List(ctx, &n8napi.ExecutionListOptions{WorkflowID: failID, Status: n8napi.StatusError, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(execs) > 0 {
			failed = execs[0]
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if failed == nil {
		t.Fatal("no failed execution of the fail workflow")
	}
	retried, _, err := api.Executions.Retry(ctx, failed.ID.String(), false)
	if err != nil || retried.ID == "" || retried.RetryOf.String() != failed.ID.String() {
		t.Fatalf("retry: %+v %v", retried, err)
	}
	var ae *n8napi.APIError
	if _, _, err := api.Executions.Retry(ctx, ok.ID.String(), false); !errors.As(err, &ae) || ae.Class() != invocation.Permanent {
		t.Errorf("retry of a success: %v", err)
	}

	// Stop: on 2.x a finished execution is refused (409); 1.x has no stop
	// at all: n8napi.ErrUnsupported, read from the spec it serves.
	switch n8n.Line() {
	case 1:
		// Not through the contract: the operation is not in 1.x's spec.
		_, _, err = n8n.API(t).Executions.Stop(ctx, ok.ID.String())
		if !errors.Is(err, n8napi.ErrUnsupported) {
			t.Errorf("stop on 1.x: %v, want n8napi.ErrUnsupported", err)
		}
	default:
		_, _, err = api.Executions.Stop(ctx, ok.ID.String())
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusConflict {
			t.Errorf("stop of a finished execution: %v, want a 409", err)
		}
	}
	if has, err := api.Supports(ctx, http.MethodPost, "executions/1/stop"); err != nil || has != (n8n.Line() == 2) {
		t.Errorf("Supports(stop) = %v, %v on line %d", has, err, n8n.Line())
	}
	if _, err := api.Executions.Delete(ctx, retried.ID.String()); err != nil {
		t.Errorf("delete execution: %v", err)
	}

	// A workflow's life: create, activate, deactivate, delete.
	path := fmt.Sprintf("invoker-contract-%d", time.Now().UnixNano())
	wf := &n8napi.Workflow{Name: "n8n-invoker contract " + path, Settings: []byte(`{"executionOrder":"v1"}`),
		Nodes: []n8napi.Node{{Name: "Webhook", Type: "n8n-nodes-base.webhook", TypeVersion: 2.1, Position: []float64{0, 0},
			Parameters: map[string]any{"httpMethod": "POST", "path": path, "responseMode": "onReceived", "options": map[string]any{}}}},
		Connections: []byte(`{}`)}
	created, _, err := api.Workflows.Create(ctx, wf)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := api.Workflows.Activate(ctx, created.ID.String()); err != nil {
		t.Error(err)
	}
	if _, _, err := api.Workflows.Deactivate(ctx, created.ID.String()); err != nil {
		t.Error(err)
	}
	// 2.x unpublishes asynchronously: a DELETE right after answers 409
	// "still being unpublished" (the client retries that) or, racing it,
	// a 500 its spec does not list. Give it a moment.
	time.Sleep(1500 * time.Millisecond)
	if _, err := api.Workflows.Delete(ctx, created.ID.String()); err != nil {
		t.Error(err)
	}

	// Tags and credentials.
	tag, _, err := api.Tags.Create(ctx, fmt.Sprintf("inv%d", time.Now().UnixNano()%1e9))
	if err != nil || tag.ID == "" {
		t.Fatalf("tag: %v", err)
	}
	if _, _, err := api.Tags.List(ctx, 10, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := api.Credentials.Create(ctx, &n8napi.Credential{Name: "n8n-invoker contract " + path, Type: "httpHeaderAuth",
		Data: map[string]any{"name": "X-Contract", "value": "v"}}); err != nil {
		t.Errorf("credential: %v", err)
	}

	checked := contract.Check(t)
	ops := make([]string, 0, len(checked))
	for op := range checked {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	t.Logf("contract of n8n %s: %d operations checked against its spec's %d: %s", n8n.Version, len(ops), contract.Operations(), strings.Join(ops, ", "))
}
