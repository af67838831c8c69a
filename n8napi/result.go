package n8napi

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// ResultInput is what ResultOf needs besides the execution: the call's
// request and target (for the response mode) and what the call cost.
type ResultInput struct {
	Request *invocation.Request
	// Target is the workflow's resolved target; nil means a lastNode
	// webhook answering its first item.
	Target *invocation.Target
	// WorkflowID is n8n's id of the workflow (Target's when empty).
	WorkflowID string
	// Attempts and Duration are the call's own (webhook attempts made,
	// wall time so far); APICalls the API requests the call made.
	Attempts int
	Duration time.Duration
	APICalls int
}

// transportMCP is the MCP transport's name (mcpinvoker.Name): a run
// through MCP has no webhook answer; its output is the last node's first
// item, as a lastNode webhook answers.
const transportMCP = "mcp"

// startedAnswer is n8n's answer of an onReceived webhook.
var startedAnswer = json.RawMessage(`{"message":"Workflow was started"}`)

// ResultOf maps an execution a reconcile found to the call's outcome,
// the one mapping every reconcile uses (the retry loop's, takeover,
// re-submission and replay):
//   - success: a Result with Reconciled set, StatusCode 0 and Output what
//     the webhook would have answered for the target's response mode
//     (see invocation.Result.Reconciled); LastNodeOutput is always the
//     last node's items;
//   - error, crashed, canceled: an *ExecutionFailedError (code
//     workflow-failed) with n8n's message and failing node;
//   - new, running, waiting, unknown (not ended): an *invocation.Error of
//     code unresolved; never failed. An onReceived webhook, though, had
//     answered as soon as the execution started: that answer is the
//     result, with Completed false.
func ResultOf(e *Execution, in *ResultInput) (*invocation.Result, error) {
	req, tgt := in.Request, in.Target
	if tgt == nil {
		tgt = &invocation.Target{ResponseMode: invocation.ResponseModeLastNode}
	}
	wfID := in.WorkflowID
	if wfID == "" {
		wfID = tgt.WorkflowID
	}
	onReceived := tgt.ResponseMode == invocation.ResponseModeOnReceived && tgt.Transport != transportMCP
	res := &invocation.Result{Workflow: req.Workflow, WorkflowID: wfID, RequestID: req.RequestID, ExecutionID: e.ID.String(),
		Status: e.Status, Completed: e.Status == StatusSuccess, Reconciled: true, Attempts: in.Attempts, Duration: in.Duration,
		APICalls: in.APICalls, WaitTill: e.WaitTill, Output: json.RawMessage("null")}
	switch {
	case onReceived && (!e.Terminal() || e.Status == StatusSuccess):
		res.Output, res.ContentType, res.Completed = startedAnswer, "application/json", false
		res.LastNodeOutput = lastItemsJSON(e)
		return res, nil
	case !e.Terminal():
		return nil, &invocation.Error{Code: invocation.CodeUnresolved, Workflow: req.Workflow, Attempts: in.Attempts,
			Message: fmt.Sprintf("unresolved: its execution %s is still %s in n8n (not re-sent)", e.ID, e.Status)}
	case e.Status != StatusSuccess:
		fe := &ExecutionFailedError{Workflow: req.Workflow, ExecutionID: e.ID.String(), Status: e.Status, Attempts: in.Attempts}
		if e.Data != nil {
			if xe := e.Data.ResultData.Error; xe != nil {
				fe.Message, fe.Node = xe.Message, xe.NodeName()
			}
			if fe.Node == "" {
				fe.Node = e.Data.ResultData.LastNodeExecuted
			}
		}
		return nil, fe
	}
	res.LastNodeOutput = lastItemsJSON(e)
	items := e.Data.LastItems()
	switch {
	case tgt.Transport == transportMCP:
		res.Output = firstJSON(items)
	case tgt.ResponseMode == invocation.ResponseModeResponseNode, tgt.ResponseData == invocation.ResponseDataFirstBinary:
		res.NotReconstructed = true
	case tgt.ResponseData == invocation.ResponseDataAllEntries:
		if items == nil {
			items = []map[string]any{}
		}
		if b, err := json.Marshal(items); err == nil {
			res.Output = b
		}
	case tgt.ResponseData == invocation.ResponseDataNoData:
	default:
		res.Output = firstJSON(items)
	}
	if string(res.Output) != "null" {
		res.ContentType = "application/json"
	}
	return res, nil
}

func firstJSON(items []map[string]any) json.RawMessage {
	if len(items) == 0 {
		return json.RawMessage("null")
	}
	b, err := json.Marshal(items[0])
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}

func lastItemsJSON(e *Execution) json.RawMessage {
	items := e.Data.LastItems()
	if items == nil {
		return nil
	}
	b, err := json.Marshal(items)
	if err != nil {
		return nil
	}
	return b
}
