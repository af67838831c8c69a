// Package n8ntest gives integration tests the real n8n started by
// scripts/n8n. Tests call Require, which skips with a clear message when
// no n8n is running, unless N8N_INVOKER_REQUIRE_N8N=1 is set (as in CI),
// which turns the skip into a failure.
package n8ntest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/n8n-invoker/n8n-invoker/config"
)

// Instance is a running n8n with the fixture workflows of
// testdata/workflows active.
type Instance struct {
	BaseURL       string
	APIKey        string
	HeaderName    string
	HeaderValue   string
	BasicUser     string
	BasicPassword string
	// OpenAPISpec is the path of the OpenAPI spec the n8n package ships.
	OpenAPISpec string
	// JWTSecret and HMACSecret are the secrets of the jwt-auth and signed
	// fixtures.
	JWTSecret, HMACSecret string
	// MCPToken is the instance MCP server's token (2.x; empty on 1.x).
	MCPToken string
	// Version is the running n8n's version, as scripts/n8n installed it.
	Version string
}

// Line returns the n8n line running: 1 or 2.
func (i *Instance) Line() int {
	if strings.HasPrefix(i.Version, "1.") {
		return 1
	}
	return 2
}

// EnvFile returns the env file scripts/n8n writes: $N8N_INVOKER_ENV, or
// .n8n/env at the repository's root (the directory with scripts/n8n, so
// that the tests of the workspace's other modules find it too).
func EnvFile() string {
	if f := os.Getenv("N8N_INVOKER_ENV"); f != "" {
		return f
	}
	return filepath.Join(Root(), ".n8n", "env")
}

// Root returns the repository's root: the nearest directory up from the
// working directory that holds scripts/n8n.
func Root() string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "n8n")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "."
		}
		dir = parent
	}
}

// Require returns the running n8n or skips the test (fails it when
// N8N_INVOKER_REQUIRE_N8N=1).
func Require(t testing.TB) *Instance {
	t.Helper()
	inst, err := load()
	if err != nil {
		msg := fmt.Sprintf("no real n8n available (%v); start one with `scripts/n8n start`", err)
		if os.Getenv("N8N_INVOKER_REQUIRE_N8N") == "1" {
			t.Fatal(msg + " (N8N_INVOKER_REQUIRE_N8N=1 forbids skipping)")
		}
		t.Skip(msg)
	}
	return inst
}

func load() (*Instance, error) { return loadFile(EnvFile()) }

func loadFile(f string) (*Instance, error) {
	vars, err := readEnv(f)
	if err != nil {
		return nil, err
	}
	inst := instanceFrom(vars)
	if inst.BaseURL == "" {
		return nil, fmt.Errorf("%s has no N8N_BASE_URL", f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", inst.BaseURL+"/healthz/readiness", nil)
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("n8n at %s does not answer: %v", inst.BaseURL, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("n8n at %s is not ready: HTTP %d", inst.BaseURL, resp.StatusCode)
	}
	return inst, nil
}

func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	vars := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), "="); ok {
			vars[k] = v
		}
	}
	return vars, s.Err()
}

// Workflow names of the fixtures, as Config maps them.
const (
	Onboarding = "user-onboarding"
	Echo       = "echo"
	EchoGet    = "echo-get"
	Fail       = "fail"
	HeaderAuth = "header-auth"
	BasicAuth  = "basic-auth"
	OnReceived = "on-received"
	Missing    = "missing"
	Signed     = "signed"
	JWTAuth    = "jwt-auth"
	// Orders is the fixture whose webhook path has a parameter
	// (invoker-orders/:orderId), served under OrdersWebhookID.
	Orders          = "orders"
	OrdersWebhookID = "5b0c1d2e-3f40-4a51-9c62-7d8e9fa0b1c2"
	// SlowAnswer answers with its last node after body.delay_ms
	// milliseconds (at most 60 s): an execution still running when a
	// test kills something.
	SlowAnswer = "slow-answer"
	// SignedGet is the HMAC-verifying fixture on Signed's path with the
	// GET method; SignedOrders the one with a path parameter
	// (invoker-signed-orders/:orderId), served under
	// SignedOrdersWebhookID. Both run the template's verification code.
	SignedGet             = "signed-get"
	SignedOrders          = "signed-orders"
	SignedOrdersWebhookID = "7b2d1e5f-3c40-4d6e-9f70-8b9cad0e1f30"
	// Respond500 runs a Code node and then answers 500 through a Respond
	// to Webhook node (invoker-respond-500): a workflow that ran and
	// chose an error status.
	Respond500 = "respond-500"
)

// ConfigYAML returns a configuration for the instance that maps the
// fixture workflows, with retries fast enough for tests.
func (i *Instance) ConfigYAML() string {
	return fmt.Sprintf(`n8n:
  base_url: %q
  api_key: %q
  timeout: 60
invokers:
  http:
    max_retries: 2
    backoff_factor: 0.05
workflows:
  %s: {path: user-onboarding}
  %s: {path: invoker-echo}
  %s: {path: invoker-echo-get, method: GET}
  %s: {path: invoker-fail}
  %s:
    path: invoker-header-auth
    auth: {type: header, name: %q, value: %q}
  %s:
    path: invoker-basic-auth
    auth: {type: basic, username: %q, password: %q}
  %s: {path: invoker-on-received, response_mode: onReceived}
  %s: {path: invoker-no-such-webhook}
  %s:
    path: invoker-signed
    auth: {type: hmac, secret: %q}
  %s:
    path: invoker-jwt-auth
    auth: {type: jwt, secret: %q}
  %s: {path: "invoker-orders/:orderId", webhook_id: %s}
  %s: {path: invoker-slow-answer}
  %s:
    path: invoker-signed
    method: GET
    auth: {type: hmac, secret: %q}
  %s:
    path: "invoker-signed-orders/:orderId"
    webhook_id: %s
    auth: {type: hmac, secret: %q}
  %s: {path: invoker-respond-500, response_mode: responseNode}
`, i.BaseURL, i.APIKey, Onboarding, Echo, EchoGet, Fail, HeaderAuth, i.HeaderName, i.HeaderValue,
		BasicAuth, i.BasicUser, i.BasicPassword, OnReceived, Missing, Signed, i.HMACSecret, JWTAuth, i.JWTSecret, Orders, OrdersWebhookID, SlowAnswer,
		SignedGet, i.HMACSecret, SignedOrders, SignedOrdersWebhookID, i.HMACSecret, Respond500)
}

// Config parses ConfigYAML.
func (i *Instance) Config(t testing.TB) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(i.ConfigYAML()), "n8ntest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// instanceFrom maps the variables of an env file written by scripts/n8n.
func instanceFrom(vars map[string]string) *Instance {
	return &Instance{
		BaseURL: vars["N8N_BASE_URL"], APIKey: vars["N8N_API_KEY"],
		HeaderName: vars["N8N_INVOKER_HEADER_AUTH_NAME"], HeaderValue: vars["N8N_INVOKER_HEADER_AUTH_VALUE"],
		BasicUser: vars["N8N_INVOKER_BASIC_USER"], BasicPassword: vars["N8N_INVOKER_BASIC_PASSWORD"],
		OpenAPISpec: vars["N8N_INVOKER_OPENAPI"],
		JWTSecret:   vars["N8N_INVOKER_JWT_SECRET"], HMACSecret: vars["N8N_INVOKER_HMAC_SECRET"],
		MCPToken: vars["N8N_MCP_TOKEN"], Version: vars["N8N_INVOKER_N8N_VERSION"],
	}
}
