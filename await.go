package invoker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
	"github.com/n8n-invoker/n8n-invoker/pipeline"
)

// CallOption changes one call.
type CallOption func(*callOptions)

type callOptions struct {
	wait         bool
	await        n8napi.AwaitOptions
	replayOf     int64 // the dead-letter entry being replayed
	replayFailed bool
	rescue       bool // Rescue's call
}

// Wait makes the call follow the execution to its end through n8n's API
// (n8n.api_key is needed, or the call fails before sending): the webhook's
// own answer stays the result's Output (its status, content type and
// headers too, a Respond to Webhook node's answer included); Wait adds the
// execution's id, final Status and LastNodeOutput, every item of the last
// node. A failed execution returns an *ExecutionFailedError with n8n's
// message and failing node. Use it with webhooks that answer at once
// (onReceived) for long workflows, so that no proxy timeout cuts the
// call.
func Wait() CallOption { return func(o *callOptions) { o.wait = true } }

// WaitOptions tunes Wait's polling; it implies Wait.
func WaitOptions(a n8napi.AwaitOptions) CallOption {
	return func(o *callOptions) { o.wait, o.await = true, a }
}

// noAPI resolves nothing and says why.
type noAPI struct{}

func (noAPI) Resolve(_ context.Context, workflow string) (*invocation.Target, error) {
	return nil, pipeline.UnknownWorkflow(workflow, nil, "not a configured alias; to run workflows by n8n id or name, set n8n.api_key", nil)
}

// apiKeyRequired is the error of a call that needs n8n's API (Wait,
// retrying an execution) on a manager without n8n.api_key: refused
// before anything is sent (code invocation.CodeBadRequest).
func apiKeyRequired(what string) *invocation.Error {
	return &invocation.Error{Code: invocation.CodeBadRequest, Message: what + " needs n8n's API: set n8n.api_key (nothing was sent)"}
}

// API returns the n8n API client, nil when no API key is configured.
func (m *Manager) API() *n8napi.Client { return m.api }

// await follows res's execution to its end and returns the final result.
func (m *Manager) await(ctx context.Context, req *invocation.Request, res *invocation.Result, failed error, o *n8napi.AwaitOptions) (*invocation.Result, error) {
	if m.api == nil {
		if m.mcp != nil && res != nil && res.ExecutionID != "" && res.WorkflowID != "" {
			return m.awaitVia(ctx, req, res, failed, o, m.mcpExecution(res.WorkflowID, res.ExecutionID))
		}
		return nil, apiKeyRequired("waiting for an execution")
	}
	return m.awaitVia(ctx, req, res, failed, o, nil)
}

// mcpExecution follows an execution through the MCP server (no API key).
func (m *Manager) mcpExecution(workflowID, id string) func(context.Context) (*n8napi.Execution, error) {
	return func(ctx context.Context) (*n8napi.Execution, error) {
		return m.mcp.Execution(ctx, workflowID, id, true)
	}
}

// awaitVia is await with the execution read by get (nil: the public API).
func (m *Manager) awaitVia(ctx context.Context, req *invocation.Request, res *invocation.Result, failed error, o *n8napi.AwaitOptions, get func(context.Context) (*n8napi.Execution, error)) (*invocation.Result, error) {
	calls := 0
	execID, wfID := "", ""
	if res != nil {
		execID, wfID = res.ExecutionID, res.WorkflowID
	}
	if execID == "" {
		if wfID == "" {
			id, err := m.workflowID(ctx, req.Workflow)
			if err != nil {
				return nil, fmt.Errorf("workflow %q: finding its n8n id to track the execution: %w", req.Workflow, err)
			}
			wfID = id
		}
		id, n, err := m.api.Correlate(ctx, wfID, "x-request-id", req.RequestID, 30*time.Second)
		calls += n
		if err != nil {
			return nil, fmt.Errorf("workflow %q: finding execution of request %s: %w", req.Workflow, req.RequestID, err)
		}
		if id == "" {
			if failed != nil {
				return nil, failed
			}
			return nil, fmt.Errorf("workflow %q: no execution of request %s found in n8n", req.Workflow, req.RequestID)
		}
		execID = id
	}
	ao := n8napi.AwaitOptions{}
	if o != nil {
		ao = *o
	}
	if ao.WorkflowID == "" {
		ao.WorkflowID = wfID
	}
	var e *n8napi.Execution
	var polls int
	var err error
	if get != nil {
		e, polls, err = n8napi.Poll(ctx, get, nil, &ao)
	} else {
		e, polls, err = m.api.Await(ctx, execID, &ao)
	}
	calls += polls
	if err != nil {
		return nil, err
	}
	out := &invocation.Result{Workflow: req.Workflow, RequestID: req.RequestID}
	if res != nil {
		*out = *res
	}
	out.ExecutionID, out.WorkflowID, out.Status, out.WaitTill = execID, e.WorkflowID.String(), e.Status, e.WaitTill
	out.Completed = e.Terminal()
	out.APICalls += calls
	attempts := out.Attempts
	if attempts == 0 {
		attempts = invocation.AttemptsOf(failed)
	}
	if e.Status != n8napi.StatusSuccess && e.Status != n8napi.StatusWaiting {
		fe := &n8napi.ExecutionFailedError{Workflow: req.Workflow, ExecutionID: execID, Status: e.Status, Attempts: attempts}
		if e.Data != nil && e.Data.ResultData.Error != nil {
			fe.Message, fe.Node = e.Data.ResultData.Error.Message, e.Data.ResultData.Error.NodeName()
			if fe.Node == "" {
				fe.Node = e.Data.ResultData.LastNodeExecuted
			}
		}
		return nil, fe
	}
	if items := e.Data.LastItems(); items != nil {
		b, err := json.Marshal(items)
		if err != nil {
			return nil, err
		}
		out.LastNodeOutput = b
	}
	if res == nil { // the webhook's answer was an error: the output is the execution's
		out.Output, out.ContentType = out.LastNodeOutput, "application/json"
		if out.Output == nil {
			out.Output = json.RawMessage("null")
		}
	}
	return out, nil
}

// WorkflowID returns the n8n id of a workflow name: a configured alias
// (its id, or the workflow whose webhook serves its path), an n8n id or
// an exact name. It needs n8n.api_key unless the alias has an id.
func (m *Manager) WorkflowID(ctx context.Context, name string) (string, error) {
	return m.workflowID(ctx, name)
}

// workflowID finds the n8n id of a workflow name: a configured id, the
// workflow whose webhook serves the configured path, or the name itself
// resolved through the API.
func (m *Manager) workflowID(ctx context.Context, name string) (string, error) {
	if w, ok := m.cfg.Workflows[name]; ok && w.ID != "" {
		return w.ID, nil
	}
	if m.resolver == nil {
		return "", errors.New("no n8n API client: set n8n.api_key")
	}
	if w, ok := m.cfg.Workflows[name]; ok {
		return m.resolver.IDForPath(ctx, w.Method, w.Path)
	}
	return m.resolver.WorkflowID(ctx, name)
}

// RetryExecution asks n8n to run a failed execution again and returns the
// new execution's result (n8n runs the retry before answering).
// loadWorkflow runs the workflow's current version instead of the one the
// execution ran. n8n refuses to retry an execution that succeeded.
func (m *Manager) RetryExecution(ctx context.Context, executionID string, loadWorkflow bool, opts ...CallOption) (*invocation.Result, error) {
	if m.api == nil {
		return nil, apiKeyRequired("retrying an execution")
	}
	o := &callOptions{}
	for _, f := range opts {
		f(o)
	}
	e, _, err := m.api.Executions.Retry(ctx, executionID, loadWorkflow)
	if err != nil {
		return nil, fmt.Errorf("invoker: retrying execution %s: %w", executionID, err)
	}
	res := &invocation.Result{Workflow: e.WorkflowID.String(), WorkflowID: e.WorkflowID.String(), ExecutionID: e.ID.String(), APICalls: 1}
	return m.await(ctx, &invocation.Request{Workflow: res.Workflow}, res, nil, &o.await)
}
