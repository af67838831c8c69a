package n8napi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// ErrUnsupported matches a call to an operation the running n8n does not
// have (an older line: 1.x has no POST /executions/{id}/stop, for
// example), as the OpenAPI spec it serves says, or, when it serves none,
// its answer for an unknown route (405, or 404 "not found"). Its error
// has code invocation.CodeRejected, the answer (if any) as its cause.
var ErrUnsupported = errors.New("this n8n does not have the operation")

func unsupported(method, path string, answer error) *invocation.Error {
	return &invocation.Error{Code: invocation.CodeRejected, Err: errors.Join(ErrUnsupported, answer),
		Message: fmt.Sprintf("n8n API: %s /api/v1/%s: this n8n does not have the operation (it is not in the spec it serves)", method, path)}
}

// specCache holds the operations of the spec the instance serves.
type specCache struct {
	// turn is held (a token in it) by the one call reading the spec:
	// a channel, not a mutex, so that a caller waiting for a slow read
	// keeps its context.
	turn chan struct{}
	once sync.Once
	mu   sync.Mutex
	ops  map[string][][]string // method -> path templates, split on "/"
}

// Supports reports whether the running n8n's public API has the
// operation method path (path relative to /api/v1/, such as
// "executions/12/stop"), from the OpenAPI spec the instance serves at
// /api/v1/openapi.yml, read once. The error is the spec's when it could
// not be read (then nothing is known).
func (c *Client) Supports(ctx context.Context, method, path string) (bool, error) {
	ops, err := c.operations(ctx)
	if err != nil {
		return false, err
	}
	segs := strings.Split(strings.Trim(strings.SplitN(path, "?", 2)[0], "/"), "/")
	for _, tmpl := range ops[strings.ToUpper(method)] {
		if matchTemplate(tmpl, segs) {
			return true, nil
		}
	}
	return false, nil
}

func matchTemplate(tmpl, segs []string) bool {
	if len(tmpl) != len(segs) {
		return false
	}
	for i, t := range tmpl {
		if !strings.HasPrefix(t, "{") && t != segs[i] {
			return false
		}
	}
	return true
}

func (c *Client) operations(ctx context.Context) (map[string][][]string, error) {
	c.spec.mu.Lock()
	ops := c.spec.ops
	c.spec.mu.Unlock()
	if ops != nil {
		return ops, nil
	}
	c.spec.once.Do(func() { c.spec.turn = make(chan struct{}, 1) })
	select {
	case c.spec.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.spec.turn }()
	c.spec.mu.Lock()
	ops = c.spec.ops
	c.spec.mu.Unlock()
	if ops != nil {
		return ops, nil
	}
	u, err := c.base.Parse("openapi.yml")
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if key, err := c.keys.Secret(ctx); err == nil {
		req.Header.Set(HeaderAPIKey, key.Reveal())
	}
	countCall(ctx)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("n8n API: reading the served spec: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("n8n API: reading the served spec: %w", err)
	}
	if resp.StatusCode != http.StatusOK || int64(len(b)) > c.maxBody {
		return nil, fmt.Errorf("n8n API: GET %s: HTTP %d", u.Path, resp.StatusCode)
	}
	ops, err = parseOperations(b)
	if err != nil {
		return nil, fmt.Errorf("n8n API: the served spec: %w", err)
	}
	c.spec.mu.Lock()
	c.spec.ops = ops
	c.spec.mu.Unlock()
	return ops, nil
}

// parseOperations reads an OpenAPI document's operations.
func parseOperations(b []byte) (map[string][][]string, error) {
	var doc struct {
		Paths map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	if len(doc.Paths) == 0 {
		return nil, errors.New("no paths")
	}
	ops := map[string][][]string{}
	for p, item := range doc.Paths {
		for m := range item {
			switch m = strings.ToUpper(m); m {
			case "GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS":
				ops[m] = append(ops[m], strings.Split(strings.Trim(p, "/"), "/"))
			}
		}
	}
	return ops, nil
}

// unsupported turns an answer that says the path or method is unknown
// into an error matching ErrUnsupported when the served spec lacks the operation.
func (c *Client) unsupported(ctx context.Context, method, path string, err error) error {
	var ae *APIError
	if !errors.As(err, &ae) || (ae.StatusCode != http.StatusNotFound && ae.StatusCode != http.StatusMethodNotAllowed) || strings.HasPrefix(ae.Message, "<") {
		return err
	}
	ok, serr := c.Supports(ctx, method, path)
	if serr != nil {
		// No spec to read (an n8n installed under a dot directory fails to
		// serve it): the answer to an unknown route says it, 405 "<M>
		// method not allowed" or 404 with exactly "not found" (an unknown
		// execution or workflow is "Not Found" or names it).
		ok = !(ae.StatusCode == http.StatusMethodNotAllowed || ae.Message == "not found")
	}
	if !ok {
		return unsupported(method, strings.TrimPrefix(path, "/"), err)
	}
	return err
}
