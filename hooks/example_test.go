package hooks_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/n8n-invoker/n8n-invoker/hooks"
)

// A pre-execution hook that vetoes calls without a tenant and adds a
// source to the others' parameters.
func ExampleFunc() {
	h := hooks.Func(func(_ context.Context, ec *hooks.ExecutionContext) error {
		if ec.Params["tenant"] == nil {
			return errors.New("no tenant")
		}
		ec.Params["source"] = "example"
		return nil
	})
	ec := &hooks.ExecutionContext{Workflow: "report", Params: map[string]any{"tenant": "acme"}}
	fmt.Println(h.PreExecution(context.Background(), ec), ec.Params["source"])
	fmt.Println(h.PreExecution(context.Background(), &hooks.ExecutionContext{Params: map[string]any{}}))
	// Output:
	// <nil> example
	// no tenant
}
