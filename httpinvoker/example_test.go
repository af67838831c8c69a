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

func ExampleNew() {
	// A stand-in for n8n that is overloaded once, then answers.
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

	inv, err := httpinvoker.New(n8n.URL,
		httpinvoker.WithResolver(httpinvoker.StaticResolver{"report": {Path: "daily-report"}}),
		httpinvoker.WithTimeout(10*time.Second),
		httpinvoker.WithRetries(3, 0.01),
	)
	if err != nil {
		panic(err)
	}
	defer inv.Close()
	res, err := inv.Invoke(context.Background(), &invocation.Request{Workflow: "report", RequestID: "r-1"})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Attempts, string(res.Output))
	// Output: 2 {"request":"r-1"}
}
