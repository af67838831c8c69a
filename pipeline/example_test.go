package pipeline_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/n8n-invoker/n8n-invoker/httpinvoker"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/pipeline"
	"github.com/n8n-invoker/n8n-invoker/policy"
)

// A pipeline over the webhook transport: the retry loop re-sends the
// attempt n8n answered 503 (not run), after the server's Retry-After.
func ExampleNew() {
	calls := 0
	n8n := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if calls == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"request":%q}`, r.Header.Get(httpinvoker.HeaderRequestID))
	}))
	defer n8n.Close()

	tr, err := httpinvoker.New(n8n.URL)
	if err != nil {
		panic(err)
	}
	defer tr.Close()
	retry := policy.DefaultRetry()
	retry.BaseDelay = 0
	p, err := pipeline.New(pipeline.Stages{
		Resolve:   pipeline.StaticResolver{"report": {Path: "daily-report"}},
		Retry:     &pipeline.Retry{Policy: &retry},
		Sign:      httpinvoker.Signer{},
		Transport: tr,
	})
	if err != nil {
		panic(err)
	}
	res, err := p.Invoke(context.Background(), &invocation.Request{Workflow: "report", RequestID: "r-1"})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Attempts, string(res.Output))
	fmt.Println(p.Names())
	// Output:
	// 2 {"request":"r-1"}
	// [resolve retry sign transport]
}
