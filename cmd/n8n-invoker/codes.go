package main

import (
	"context"
	"errors"

	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
)

// exitCodes is the exit status of a command that ends with an error of
// each code: 2 for what the caller must change (usage), 3 for n8n out of
// reach or refusing for now, 1 for the rest; 130 for an interrupt.
var exitCodes = map[invocation.Code]int{
	invocation.CodeOK:               exitOK,
	invocation.CodeCanceled:         exitInterrupted,
	invocation.CodeCanceledInFlight: exitInterrupted,
	invocation.CodeNotSent:          exitUnreachable,
	invocation.CodeUnavailable:      exitUnreachable,
	invocation.CodeRateLimited:      exitUnreachable,
	invocation.CodeLost:             exitUnreachable,
	invocation.CodeAmbiguous:        exitFailed,
	invocation.CodeUnresolved:       exitFailed,
	invocation.CodeUnknown:          exitFailed,
	invocation.CodeRejected:         exitFailed,
	invocation.CodeWorkflowFailed:   exitFailed,
	invocation.CodeWorkflowAnswered: exitFailed,
	invocation.CodeInvalidAnswer:    exitFailed,
	invocation.CodeUnknownWorkflow:  exitUsage,
	invocation.CodeBadRequest:       exitUsage,
	invocation.CodeVetoed:           exitFailed,
	invocation.CodeCircuitOpen:      exitUnreachable,
	invocation.CodeBudgetExhausted:  exitUnreachable,
	invocation.CodeBulkheadFull:     exitUnreachable,
	invocation.CodeKeyConflict:      exitUsage,
	invocation.CodeKeyHeld:          exitFailed,
	invocation.CodeLeaseLost:        exitFailed,
}

// exitCode is the exit status of a command that failed with err: a
// configuration error is a usage error; a cancellation by our own
// --timeout (not an interrupt) means n8n did not answer in time.
func exitCode(ctx context.Context, err error) int {
	var cfg *config.Error
	if errors.As(err, &cfg) {
		return exitUsage
	}
	c := invocation.CodeOf(err)
	if (c == invocation.CodeCanceled || c == invocation.CodeCanceledInFlight) && !errors.Is(ctx.Err(), context.Canceled) && invocation.IsCanceled(err) {
		return exitUnreachable // our --timeout ran out
	}
	if code, ok := exitCodes[c]; ok {
		return code
	}
	return exitFailed
}

// errorOut is a failure as the CLI prints it: the error's code and its
// fields, and the whole message.
type errorOut struct {
	Error       string `json:"error"`
	Code        string `json:"code"`
	Class       string `json:"class"`
	Status      int    `json:"status,omitempty"`
	Message     string `json:"message,omitempty"`
	ExecutionID string `json:"execution_id,omitempty"`
	Node        string `json:"node,omitempty"`
	Attempts    int    `json:"attempts,omitempty"`
	DeadLetter  int64  `json:"dead_letter,omitempty"`
}

func errorJSON(err error) errorOut {
	c := invocation.CodeOf(err)
	o := errorOut{Error: err.Error(), Code: c.String(), Class: c.Class().String(), Attempts: invocation.AttemptsOf(err),
		DeadLetter: invocation.DeadLetterOf(err)}
	if c == invocation.CodeCanceled || c == invocation.CodeCanceledInFlight {
		o.Class = "canceled"
	}
	var h *invocation.HTTPError
	if errors.As(err, &h) {
		o.Status, o.Message = h.StatusCode, h.Message
	}
	var ie *invocation.Error
	if errors.As(err, &ie) {
		o.ExecutionID, o.Node = ie.ExecutionID, ie.Node
	}
	if x, node := executionOf(err); x != "" && o.ExecutionID == "" {
		o.ExecutionID, o.Node = x, node
	}
	return o
}

// executionOf returns the execution and failing node n8n reported for
// err's call, if it did.
func executionOf(err error) (string, string) {
	var fe *n8napi.ExecutionFailedError
	if errors.As(err, &fe) {
		return fe.ExecutionID, fe.Node
	}
	return "", ""
}
