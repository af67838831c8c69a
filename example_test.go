package invoker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/hooks"
	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// fakeN8N stands in for n8n's webhooks in the examples.
func fakeN8N() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/webhook/user-onboarding":
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("X-N8N-Execution-Id", "101")
			fmt.Fprintf(w, `{"received":%s}`, b)
		case "/webhook/broken":
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `{"message":"Error in workflow"}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"code":404,"message":"The requested webhook is not registered."}`)
		}
	}))
}

func exampleConfig(baseURL string) *config.Config {
	cfg, err := config.Parse([]byte(`
n8n:
  base_url: "`+baseURL+`"
workflows:
  user-onboarding: {path: user-onboarding}
  broken: {path: broken}
`), "example.yaml")
	if err != nil {
		panic(err)
	}
	return cfg
}

func ExampleManager_ExecuteWorkflow() {
	n8n := fakeN8N()
	defer n8n.Close()

	manager, err := invoker.New(exampleConfig(n8n.URL))
	if err != nil {
		panic(err)
	}
	defer manager.Close(context.Background())

	result, err := manager.ExecuteWorkflow(context.Background(), "user-onboarding",
		map[string]any{"email": "user@example.com", "plan": "premium"})
	if err != nil {
		panic(err)
	}
	fmt.Println(result.StatusCode, result.ExecutionID, string(result.Output))

	_, err = manager.ExecuteWorkflow(context.Background(), "broken", nil)
	var httpErr *invocation.HTTPError
	if errors.As(err, &httpErr) {
		fmt.Println(httpErr.StatusCode, errors.Is(err, invocation.ErrWorkflowFailed), invocation.ClassOf(err), invocation.AttemptsOf(err))
	}
	// Output:
	// 200 101 {"received":{"email":"user@example.com","plan":"premium"}}
	// 500 true permanent 1
}

func ExampleManager_ExecuteBatch() {
	n8n := fakeN8N()
	defer n8n.Close()
	manager, _ := invoker.New(exampleConfig(n8n.URL))
	defer manager.Close(context.Background())

	results, _ := manager.ExecuteBatch(context.Background(), []invoker.BatchItem{
		{Workflow: "user-onboarding", Params: map[string]any{"user_id": 1}},
		{Workflow: "broken", Params: map[string]any{"user_id": 2}},
		{Workflow: "user-onboarding", Params: map[string]any{"user_id": 3}},
	}, 5)
	for _, r := range results {
		if r.Err != nil {
			fmt.Println(r.Index, "failed:", invocation.ClassOf(r.Err))
			continue
		}
		fmt.Println(r.Index, string(r.Result.Output))
	}
	// Output:
	// 0 {"received":{"user_id":1}}
	// 1 failed: permanent
	// 2 {"received":{"user_id":3}}
}

// CustomMetricsHook counts executions; embedding HookBase gives the other
// methods their defaults.
type CustomMetricsHook struct {
	hooks.Base
	started int
}

func (h *CustomMetricsHook) PreExecution(_ context.Context, ec *hooks.ExecutionContext) error {
	h.started++
	ec.Params["source"] = "example" // pre hooks may change the parameters
	return nil
}

func ExampleManager_RegisterHook() {
	n8n := fakeN8N()
	defer n8n.Close()
	manager, _ := invoker.New(exampleConfig(n8n.URL))
	defer manager.Close(context.Background())

	hook := &CustomMetricsHook{}
	if err := manager.RegisterHook(hooks.StagePreExecution, hook); err != nil {
		panic(err)
	}
	res, _ := manager.ExecuteWorkflow(context.Background(), "user-onboarding", map[string]any{"email": "a@b.c"})
	fmt.Println(hook.started, string(res.Output))
	// Output: 1 {"received":{"email":"a@b.c","source":"example"}}
}
