package n8ntest

import (
	"bytes"
	"context"
	"errors"
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
	next       http.RoundTripper
	router     routers.Router
	line       int
	operations int

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
	ops := 0
	for _, item := range doc.Paths.Map() {
		ops += len(item.Operations())
	}
	return &Contract{next: tr, router: router, line: i.Line(), operations: ops, checked: map[string]int{}}
}

// Operations returns the number of operations in the line's spec.
func (c *Contract) Operations() int { return c.operations }

// Deviation is a known difference between an n8n line's real answers and
// its own spec, tolerated instead of loosening the validation: the
// field at the end of a JSON pointer, in an operation's answer, with the
// schema's complaint.
type Deviation struct {
	Line      int
	Operation string // "GET /executions/{id}"; "" for every operation
	// Field is the pointer's last element; "" for a deviation of the
	// answer as a whole (a status the spec does not list).
	Field  string
	Reason string // a substring of the schema error's (or the answer's) reason
	Why    string
}

// KnownDeviations lists them per line.
var KnownDeviations = []Deviation{
	{Line: 1, Field: "id", Reason: "must be a number", Why: "1.x documents execution ids as numbers and sends numeric strings"},
	{Line: 1, Field: "workflowId", Reason: "must be a number", Why: "1.x documents workflowId as a number and sends the workflow's string id"},
	{Line: 1, Field: "retryOf", Reason: "must be a string", Why: "1.x's retry answer carries retryOf as a number"},
	{Line: 1, Field: "retryOf", Reason: "must be a number", Why: "1.x documents retryOf as a number and lists it as a string"},
	{Line: 1, Field: "name", Reason: "is unsupported", Why: "1.x's activeVersion carries the workflow's name, which its schema does not list"},
	{Line: 1, Field: "description", Reason: "is unsupported", Why: "1.x's activeVersion carries a description, which its schema does not list"},
	{Line: 1, Field: "startedAt", Reason: "not nullable", Why: "1.x lists an execution not started yet with startedAt null"},
	{Line: 1, Operation: "POST /executions/{id}/retry", Reason: "status is not supported", Why: "1.x refuses the retry of a succeeded execution with a 400 its spec does not list (2.x: 409)"},
}

func init() {
	// 1.x's workflow answers carry fields its workflow schema
	// (additionalProperties: false) does not list.
	for _, f := range []string{"activeVersionId", "isArchived", "meta", "pinData", "triggerCount", "versionCounter", "versionId"} {
		KnownDeviations = append(KnownDeviations, Deviation{Line: 1, Field: f, Reason: "is unsupported",
			Why: "1.x's workflows carry " + f + ", which its workflow schema does not list"})
	}
}

// tolerated reports whether every schema error in err is a known
// deviation of the contract's line; it returns the rest.
func (c *Contract) tolerated(op string, err error) []string {
	var re *openapi3filter.ResponseError
	if !errors.As(err, &re) {
		return []string{firstLines(err.Error(), 6)}
	}
	if re.Err == nil {
		for _, d := range KnownDeviations {
			if d.Line == c.line && d.Field == "" && (d.Operation == "" || d.Operation == op) && strings.Contains(re.Reason, d.Reason) {
				return nil
			}
		}
		return []string{firstLines(err.Error(), 6)}
	}
	var me openapi3.MultiError
	if !errors.As(re.Err, &me) {
		me = openapi3.MultiError{re.Err}
	}
	var rest []string
	for _, e := range me {
		var se *openapi3.SchemaError
		if e == nil {
			continue
		}
		if !errors.As(e, &se) || !c.known(op, se) {
			rest = append(rest, firstLines(e.Error(), 6))
		}
	}
	return rest
}

func (c *Contract) known(op string, se *openapi3.SchemaError) bool {
	// The field is the pointer's last element, or, for a property the
	// schema does not list, that property.
	field := ""
	if name, ok := strings.CutPrefix(se.Reason, `property "`); ok && strings.HasSuffix(name, `" is unsupported`) {
		field = strings.TrimSuffix(name, `" is unsupported`)
	} else if ptr := se.JSONPointer(); len(ptr) > 0 {
		field = ptr[len(ptr)-1]
	}
	for _, d := range KnownDeviations {
		if d.Line == c.line && d.Field != "" && (d.Operation == "" || d.Operation == op) && d.Field == field && strings.Contains(se.Reason, d.Reason) {
			return true
		}
	}
	return false
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
	if strings.HasSuffix(req.URL.Path, "/api/v1/openapi.yml") { // the spec itself (n8napi's Supports)
		return c.next.RoundTrip(req)
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
		if rest := c.tolerated(req.Method+" "+route.Path, err); len(rest) > 0 {
			c.fail("response %d to %s %s: %v", resp.StatusCode, req.Method, route.Path, strings.Join(rest, "; "))
			return resp, nil // counted once, as a violation
		}
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
