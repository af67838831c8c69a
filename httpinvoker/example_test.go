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

// The version 2 canonical string of a GET with a query: decoded values,
// percent-encoded byte by byte, sorted.
func ExampleCanonicalV2() {
	c, err := httpinvoker.CanonicalV2(&httpinvoker.SignedRequest{
		Method: "GET", Path: "/orders/:id", Params: map[string]string{"id": "A 7"},
		Query: map[string]string{"q": "a+b c", "empty": ""}, IdempotencyKey: "key-1",
	}, "1800000000")
	if err != nil {
		panic(err)
	}
	fmt.Println(string(c))
	// Output:
	// v2
	// GET
	// orders/:id
	// id=A%207
	// empty=&q=a%2Bb%20c
	// key-1
	// 1800000000
	// e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
}
