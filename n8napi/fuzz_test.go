package n8napi

import (
	"encoding/json"
	"testing"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// FuzzExecution: the tolerant models decode any JSON without a panic, and
// the helpers work on whatever decoded.
func FuzzExecution(f *testing.F) {
	f.Add([]byte(`{"id":"1","status":"success","data":{"resultData":{"lastNodeExecuted":"A","runData":{"A":[{"data":{"main":[[{"json":{"x":1}}]]}}]}}}}`))
	f.Add([]byte(`{"id":5,"retryOf":null,"data":{"resultData":{"error":{"message":"boom","node":{"name":"Code"}}}}}`))
	f.Add([]byte(`{"data":{"resultData":{"runData":{"A":[]}}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Execution
		if json.Unmarshal(b, &e) != nil {
			return
		}
		_ = e.Terminal()
		_ = e.Data.LastOutput()
		_ = headerOf(&e, "x-request-id")
		_, _ = e.TriggerItem("")
		_, _ = e.TriggerItem("Webhook")
		for _, mode := range []string{"lastNode", "onReceived", "responseNode"} {
			_, _ = ResultOf(&e, &ResultInput{Request: &invocation.Request{}, Target: &invocation.Target{ResponseMode: mode, ResponseData: "allEntries"}})
		}
		if e.Data != nil {
			_ = e.Data.ResultData.Error.NodeName()
		}
	})
}
