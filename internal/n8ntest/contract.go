package n8ntest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/n8n-invoker/n8n-invoker/n8napi"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// Contract is an http.RoundTripper that checks every request n8napi sends
// and every answer it gets against the OpenAPI spec the running n8n
// ships (node_modules/n8n/dist/public-api/v1/openapi.yml). Violations
// are collected; Check fails the test with them.
type Contract struct {
	next   http.RoundTripper
	router routers.Router

	mu         sync.Mutex
	violations []string
	checked    map[string]int
}

// NewContract loads the spec from the instance.
func (i *Instance) NewContract(t testing.TB) *Contract {
	t.Helper()
	if i.OpenAPISpec == "" {
		t.Fatal("the env file names no OpenAPI spec (N8N_INVOKER_OPENAPI); restart n8n with scripts/n8n start")
	}
	spec, err := os.ReadFile(i.OpenAPISpec)
	if err != nil {
		t.Fatalf("reading n8n's OpenAPI spec: %v", err)
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(spec)
	if err != nil {
		t.Fatalf("loading n8n's OpenAPI spec: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: i.BaseURL + "/api/v1"}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("routing n8n's OpenAPI spec: %v", err)
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &Contract{next: tr, router: router, checked: map[string]int{}}
}

// API returns an n8napi client whose traffic the contract checks.
func (c *Contract) API(t testing.TB, i *Instance) *n8napi.Client {
	t.Helper()
	api, err := n8napi.NewClient(i.BaseURL, secret.New(i.APIKey), n8napi.WithHTTPClient(&http.Client{Transport: c}))
	if err != nil {
		t.Fatal(err)
	}
	return api
}

func (c *Contract) fail(format string, args ...any) {
	c.mu.Lock()
	c.violations = append(c.violations, fmt.Sprintf(format, args...))
	c.mu.Unlock()
}

// RoundTrip validates the request, sends it, and validates the answer.
func (c *Contract) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		c.fail("%s %s: not in the spec: %v", req.Method, req.URL.Path, err)
		return c.next.RoundTrip(req)
	}
	vreq := req.Clone(context.Background())
	vreq.Body = io.NopCloser(bytes.NewReader(body))
	in := &openapi3filter.RequestValidationInput{
		Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
	}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		c.fail("request %s %s: %v", req.Method, route.Path, err)
	}
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(rb))
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(rb)), Options: &openapi3filter.Options{MultiError: true, IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		c.fail("response %d to %s %s: %v", resp.StatusCode, req.Method, route.Path, firstLines(err.Error(), 6))
	}
	c.mu.Lock()
	c.checked[req.Method+" "+route.Path]++
	c.mu.Unlock()
	return resp, nil
}

func firstLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, "\n")
}

// Check fails t with every violation seen, and returns the operations
// checked.
func (c *Contract) Check(t testing.TB) map[string]int {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range c.violations {
		t.Errorf("contract: %s", v)
	}
	return c.checked
}

// Calls returns the number of API calls seen.
func (c *Contract) Calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.checked {
		n += v
	}
	return n + len(c.violations)
}
