package httpinvoker_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/n8n-invoker/n8n-invoker/httpinvoker"
	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// The transport makes one attempt and reports what happened; retrying
// is the pipeline's (see package pipeline).
func ExampleNew() {
	n8n := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"request":%q}`, r.Header.Get(httpinvoker.HeaderRequestID))
	}))
	defer n8n.Close()

	tr, err := httpinvoker.New(n8n.URL, httpinvoker.WithTimeout(10*time.Second))
	if err != nil {
		panic(err)
	}
	defer tr.Close()
	res, err := tr.Attempt(context.Background(), &invocation.Attempt{
		Request: &invocation.Request{Workflow: "report", RequestID: "r-1"},
		Target:  &invocation.Target{Path: "daily-report"},
		Number:  1,
		Body:    []byte(`{}`),
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.StatusCode, string(res.Output))
	// Output: 200 {"request":"r-1"}
}
