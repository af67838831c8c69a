package server

import (
	"net/http"
	"strings"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// codeStatus is the HTTP status the service answers for an error of each
// invocation code, where a request ends with one (a submission refused
// before it was stored). The API's error code is the invocation code's
// name in snake case (apiCode).
var codeStatus = map[invocation.Code]int{
	invocation.CodeOK:               http.StatusOK,
	invocation.CodeCanceled:         http.StatusServiceUnavailable,
	invocation.CodeCanceledInFlight: http.StatusServiceUnavailable,
	invocation.CodeNotSent:          http.StatusServiceUnavailable,
	invocation.CodeUnavailable:      http.StatusServiceUnavailable,
	invocation.CodeRateLimited:      http.StatusTooManyRequests,
	invocation.CodeLost:             http.StatusBadGateway,
	invocation.CodeAmbiguous:        http.StatusBadGateway,
	invocation.CodeUnresolved:       http.StatusGatewayTimeout,
	invocation.CodeUnknown:          http.StatusInternalServerError,
	invocation.CodeRejected:         http.StatusBadGateway,
	invocation.CodeWorkflowFailed:   http.StatusBadGateway,
	invocation.CodeWorkflowAnswered: http.StatusBadGateway,
	invocation.CodeInvalidAnswer:    http.StatusBadGateway,
	invocation.CodeUnknownWorkflow:  http.StatusNotFound,
	invocation.CodeBadRequest:       http.StatusBadRequest,
	invocation.CodeVetoed:           http.StatusForbidden,
	invocation.CodeCircuitOpen:      http.StatusServiceUnavailable,
	invocation.CodeBudgetExhausted:  http.StatusServiceUnavailable,
	invocation.CodeBulkheadFull:     http.StatusServiceUnavailable,
	invocation.CodeKeyConflict:      http.StatusConflict,
	invocation.CodeKeyHeld:          http.StatusConflict,
	invocation.CodeLeaseLost:        http.StatusConflict,
}

// StatusOf returns the HTTP status the service answers for an error of
// code c.
func StatusOf(c invocation.Code) int {
	if s, ok := codeStatus[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// apiCode is the API's error code of an invocation code: its name in
// snake case ("unknown_workflow", "key_conflict").
func apiCode(c invocation.Code) string { return strings.ReplaceAll(c.String(), "-", "_") }

// writeCodeError answers err, an error with an invocation code, with the
// code's status and API error code.
func writeCodeError(w http.ResponseWriter, err error) {
	c := invocation.CodeOf(err)
	writeError(w, StatusOf(c), apiCode(c), err.Error())
}
