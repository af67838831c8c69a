package bench

import (
	"context"
	"fmt"
	"testing"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
)

func managerT(t *testing.T) *invoker.Manager {
	cfg, err := config.Parse([]byte(fmt.Sprintf("n8n: {base_url: %q}\ninvokers: {http: {pool_maxsize: 256}}\nworkflows: {onboarding: {path: onboarding}}\n", stubURL)), "bench.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := invoker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}
