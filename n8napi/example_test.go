package n8napi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/n8n-invoker/n8n-invoker/n8napi"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

func ExampleClient_Await() {
	// A stand-in for n8n's API: the execution runs, then succeeds.
	polls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		polls++
		status := "running"
		if polls > 2 {
			status = "success"
		}
		fmt.Fprintf(w, `{"id":"42","status":%q,"data":{"resultData":{"lastNodeExecuted":"Done","runData":{"Done":[{"data":{"main":[[{"json":{"ok":true}}]]}}]}}}}`, status)
	}))
	defer srv.Close()
	client, _ := n8napi.NewClient(srv.URL, secret.New("key"))
	e, calls, err := client.Await(context.Background(), "42", nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(e.Status, e.Data.LastOutput(), calls)
	// Output: success map[ok:true] 3
}
