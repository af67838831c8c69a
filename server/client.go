package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/outbox"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// Client talks to a running n8n-invoker service. It is an outbox.Queue
// whose invocations the service stores and delivers: the CLI's
// `--server URL` uses it, so enqueue and invocations work the same
// against a local store or a service. Start and Stop do nothing (the
// service's workers deliver).
type Client struct {
	base  *url.URL
	token secret.Secret
	hc    *http.Client
}

var _ outbox.Queue = (*Client)(nil)

// NewClient returns a client of the service at baseURL with token (a
// submit and read token for enqueue and invocations). hc nil means a
// client with a 2-minute timeout per request.
func NewClient(baseURL string, token secret.Secret, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server: service URL must be http(s)://host[:port], got %q", baseURL)
	}
	if token.IsZero() {
		return nil, errors.New("server: a service token is required (--token-file or N8N_INVOKER_TOKEN)")
	}
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Minute}
	}
	return &Client{base: u, token: token, hc: hc}, nil
}

// refusal is the error of a refusal of the service: an *invocation.Error
// whose code is the one the service answered (its API error code is the
// invocation code's name in snake case), else one that follows from the
// status. It matches outbox.ErrInvalid for a 400 or 413 and
// outbox.ErrNotFound for a "not_found".
func refusal(status int, code, message string) *invocation.Error {
	e := &invocation.Error{Message: fmt.Sprintf("n8n-invoker service: HTTP %d %s: %s", status, code, message)}
	c, known := invocation.ParseCode(strings.ReplaceAll(code, "_", "-"))
	switch {
	case known && c != invocation.CodeOK:
		e.Code = c
	case status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge:
		e.Code, e.Err = invocation.CodeBadRequest, outbox.ErrInvalid
	case code == "not_found":
		e.Code, e.Err = invocation.CodeBadRequest, outbox.ErrNotFound
	case status == http.StatusConflict:
		e.Code = invocation.CodeKeyConflict
	case status == http.StatusTooManyRequests:
		e.Code = invocation.CodeRateLimited
	case status >= 400 && status < 500:
		e.Code = invocation.CodeRejected
	default:
		e.Code = invocation.CodeUnavailable
	}
	return e
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) (int, error) {
	u := c.base.JoinPath(strings.Split(path, "?")[0])
	if i := strings.IndexByte(path, '?'); i >= 0 {
		u.RawQuery = path[i+1:]
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token.Reveal())
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("n8n-invoker service: %s %s: %w", method, u.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		var e apiError
		_ = json.Unmarshal(b, &e)
		if e.Error.Code == "" {
			e.Error.Code, e.Error.Message = "http_"+strconv.Itoa(resp.StatusCode), strings.TrimSpace(string(b[:min(len(b), 200)]))
		}
		return resp.StatusCode, refusal(resp.StatusCode, e.Error.Code, e.Error.Message)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("n8n-invoker service: decoding the answer: %w", err)
		}
	}
	return resp.StatusCode, nil
}

// Submit stores an invocation with the service; created is false when
// its idempotency key was known with the same body (outbox.Submitter).
func (c *Client) Submit(ctx context.Context, req *invocation.Request) (string, bool, error) {
	in := SubmitRequest{Workflow: req.Workflow, PathParams: req.PathParams, IdempotencyKey: req.IdempotencyKey}
	switch {
	case len(req.Body) > 0:
		in.Params = req.Body
	case req.Params != nil:
		b, err := json.Marshal(req.Params)
		if err != nil {
			return "", false, fmt.Errorf("%w: %v", outbox.ErrInvalid, err)
		}
		in.Params = b
	}
	var inv outbox.Invocation
	status, err := c.do(ctx, http.MethodPost, "/v1/invocations", in, &inv)
	if invocation.CodeOf(err) == invocation.CodeKeyConflict {
		return "", false, outbox.Conflict(req.IdempotencyKey, "")
	}
	if err != nil {
		return "", false, err
	}
	return inv.ID, status == http.StatusAccepted, nil
}

// Enqueue stores an invocation with the service and returns its id.
func (c *Client) Enqueue(ctx context.Context, req *invocation.Request) (string, error) {
	id, _, err := c.Submit(ctx, req)
	return id, err
}

// Get returns invocation id.
func (c *Client) Get(ctx context.Context, id string) (*outbox.Invocation, error) {
	var inv outbox.Invocation
	if _, err := c.do(ctx, http.MethodGet, "/v1/invocations/"+url.PathEscape(id), nil, &inv); err != nil {
		return nil, err
	}
	return &inv, nil
}

// Await long-polls the service until invocation id has ended or ctx
// ends.
func (c *Client) Await(ctx context.Context, id string) (*outbox.Invocation, error) {
	for {
		var inv outbox.Invocation
		status, err := c.do(ctx, http.MethodGet, "/v1/invocations/"+url.PathEscape(id)+"/await?timeout=60s", nil, &inv)
		if err != nil {
			return nil, err
		}
		if status == http.StatusOK && inv.Done() {
			return &inv, nil
		}
		if err := ctx.Err(); err != nil {
			return &inv, err
		}
	}
}

// List returns invocations, newest first.
func (c *Client) List(ctx context.Context, f outbox.Filter) ([]*outbox.Invocation, error) {
	q := url.Values{}
	if f.Status != "" {
		q.Set("status", f.Status)
	}
	if f.Workflow != "" {
		q.Set("workflow", f.Workflow)
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out struct {
		Invocations []*outbox.Invocation `json:"invocations"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/v1/invocations?"+q.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return out.Invocations, nil
}

// Start does nothing: the service's workers deliver.
func (c *Client) Start(context.Context) error { return nil }

// Stop does nothing.
func (c *Client) Stop(context.Context) error { return nil }
