package config_test

import (
	"fmt"

	"github.com/n8n-invoker/n8n-invoker/config"
)

func ExampleParse() {
	lookup := func(name string) (string, bool) {
		return map[string]string{"N8N_API_KEY": "n8n_api_123"}[name], name == "N8N_API_KEY"
	}
	cfg, err := config.Parse([]byte(`
n8n:
  base_url: "${N8N_URL:-http://127.0.0.1:5678}"
  api_key: "${N8N_API_KEY}"
workflows:
  user-onboarding: {path: user-onboarding}
`), "config.yaml", config.WithLookupEnv(lookup))
	if err != nil {
		panic(err)
	}
	fmt.Println(cfg.N8N.BaseURL, cfg.N8N.APIKey, cfg.N8N.Timeout.D(), cfg.Invokers.HTTP.MaxRetries)
	fmt.Println(cfg.Workflows["user-onboarding"].Method, cfg.Workflows["user-onboarding"].ResponseMode)
	// Output:
	// http://127.0.0.1:5678 REDACTED 30s 6
	// POST lastNode
}

func ExampleParse_error() {
	_, err := config.Parse([]byte(`
n8n:
  base_url: "http://127.0.0.1:5678"
invokers:
  http:
    max_retries: -1
`), "config.yaml")
	fmt.Println(err)
	// Output: config.yaml:6:5: invokers.http.max_retries: must be between 0 and 100, got -1
}
