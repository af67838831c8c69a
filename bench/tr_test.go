package bench

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/n8n-invoker/n8n-invoker/httpinvoker"
	"github.com/n8n-invoker/n8n-invoker/invocation"
)

func BenchmarkTransportOnly(b *testing.B) {
	tr, err := httpinvoker.New(stubURL, httpinvoker.WithPool(2, 256))
	if err != nil {
		b.Fatal(err)
	}
	tg := &invocation.Target{Path: "onboarding"}
	run(b, func() error {
		body, _ := json.Marshal(params)
		_, err := tr.Attempt(context.Background(), &invocation.Attempt{Request: &invocation.Request{Workflow: "onboarding", RequestID: "r", IdempotencyKey: "k"}, Target: tg, Number: 1, Body: body})
		return err
	})
}
