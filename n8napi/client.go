package n8napi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// HeaderAPIKey is the header that carries the API key.
const HeaderAPIKey = "X-N8N-API-KEY"

// DefaultMaxResponseBytes limits a response body (executions with data
// can be large).
const DefaultMaxResponseBytes = 64 << 20

// Client talks to n8n's public API. It is safe for concurrent use.
type Client struct {
	base    *url.URL // ends in /api/v1/
	keys    secret.Provider
	hc      *http.Client
	maxBody int64
	tls     *tls.Config
	retry   RetryPolicy
	paused  pause
	spec    specCache
	// noStartedAfter is set once n8n refused the startedAfter filter (1.x).
	noStartedAfter atomic.Bool

	Workflows   *WorkflowsService
	Executions  *ExecutionsService
	Credentials *CredentialsService
	Tags        *TagsService
}

type service struct{ c *Client }

// Option configures a Client.
type Option func(*Client) error

// WithHTTPClient sets the HTTP client (default: a pooled client with a
// 30 s timeout).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("nil http client")
		}
		c.hc = hc
		return nil
	}
}

// WithKeySource takes the API key from p (a file that is reloaded when
// it changes, a secrets manager...) instead of a fixed value. After a
// 401, a p that is a secret.Reloader is reloaded and the call retried
// once with the new key.
func WithKeySource(p secret.Provider) Option {
	return func(c *Client) error {
		if p == nil {
			return errors.New("nil key source")
		}
		c.keys = p
		return nil
	}
}

// WithTLSConfig sets the TLS configuration of the default HTTP client.
func WithTLSConfig(t *tls.Config) Option {
	return func(c *Client) error { c.tls = t.Clone(); return nil }
}

// WithMaxResponseBytes limits a response body.
func WithMaxResponseBytes(n int64) Option {
	return func(c *Client) error {
		if n <= 0 {
			return fmt.Errorf("max response bytes must be positive, got %d", n)
		}
		c.maxBody = n
		return nil
	}
}

// NewClient returns a client for the n8n instance at baseURL (the
// instance's address, without /api/v1).
func NewClient(baseURL string, apiKey secret.Secret, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("n8napi: base URL must be http(s)://host[/path], got %q", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/v1/"
	c := &Client{base: u, maxBody: DefaultMaxResponseBytes, retry: RetryPolicy{}.withDefaults()}
	if !apiKey.IsZero() {
		c.keys = secret.Static(apiKey)
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, fmt.Errorf("n8napi: %w", err)
		}
	}
	if c.keys == nil {
		return nil, errors.New("n8napi: no API key (set n8n.api_key or n8n.api_key_file)")
	}
	if c.tls == nil {
		c.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if c.hc == nil {
		c.hc = &http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				Proxy:                  http.ProxyFromEnvironment,
				DialContext:            (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConnsPerHost:    16,
				IdleConnTimeout:        90 * time.Second,
				TLSHandshakeTimeout:    10 * time.Second,
				TLSClientConfig:        c.tls,
				MaxResponseHeaderBytes: 1 << 20,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	s := service{c}
	c.Workflows, c.Executions = (*WorkflowsService)(&s), (*ExecutionsService)(&s)
	c.Credentials, c.Tags = (*CredentialsService)(&s), (*TagsService)(&s)
	return c, nil
}

// Close releases the idle connections of the client's transport.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Response is an API answer.
type Response struct {
	*http.Response
	// NextCursor is the cursor of the next page of a list, "" on the last.
	NextCursor string
	// RateLimit is what the X-RateLimit-* headers said; nil without them.
	RateLimit *RateLimit
}

// APIError is an answer with a status that is not a success.
type APIError struct {
	Method     string
	URL        string // path and query, no host credentials
	StatusCode int
	// Message is n8n's "message", or the start of the body.
	Message string
	// RetryAfter is how long a 429 asked to wait (its Retry-After, else
	// until its X-RateLimit-Reset); RateLimit its X-RateLimit-* headers.
	RetryAfter time.Duration
	RateLimit  *RateLimit
}

// Error returns the message.
func (e *APIError) Error() string {
	return fmt.Sprintf("n8n API: %s %s: HTTP %d: %s", e.Method, e.URL, e.StatusCode, e.Message)
}

// Class classifies the answer: 429 and 5xx are transient, other 4xx
// permanent, except a 404 HTML page (a starting n8n serves its editor's
// page before the API's routes are up) and a 409 that asks to try again
// in a moment (a workflow still being unpublished).
func (e *APIError) Class() invocation.Class {
	switch {
	case e.StatusCode == 429 || e.StatusCode == 502 || e.StatusCode == 503 || e.StatusCode == 504:
		return invocation.Transient
	case e.StatusCode == 404 && strings.HasPrefix(e.Message, "<"):
		return invocation.Transient
	case e.StatusCode == 409 && strings.Contains(strings.ToLower(e.Message), "try again"):
		return invocation.Transient // n8n is busy with the workflow (unpublishing): it did nothing
	case e.StatusCode >= 400 && e.StatusCode < 500:
		return invocation.Permanent
	}
	return invocation.Unknown
}

// Is matches invocation.ErrPermanent for a permanent answer.
func (e *APIError) Is(target error) bool {
	return target == invocation.ErrPermanent && e.Class() == invocation.Permanent
}

// ErrorCode returns the code of the answer: invocation.CodeRateLimited
// for a 429, invocation.CodeUnavailable for another transient one,
// invocation.CodeRejected for a permanent one, invocation.CodeUnknown
// otherwise.
func (e *APIError) ErrorCode() invocation.Code {
	switch c := e.Class(); {
	case e.StatusCode == 429:
		return invocation.CodeRateLimited
	case c == invocation.Transient:
		return invocation.CodeUnavailable
	case c == invocation.Permanent:
		return invocation.CodeRejected
	}
	return invocation.CodeUnknown
}

// IsNotFound reports whether err is an API 404.
func IsNotFound(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.StatusCode == http.StatusNotFound && !strings.HasPrefix(e.Message, "<")
}

// NewRequest builds a request for path (relative to /api/v1/) with body
// encoded as JSON.
func (c *Client) NewRequest(ctx context.Context, method, path string, query url.Values, body any) (*http.Request, error) {
	u, err := c.base.Parse(strings.TrimPrefix(path, "/"))
	if err != nil {
		return nil, err
	}
	if len(query) > 0 {
		u.RawQuery = query.Encode()
	}
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), r)
	if err != nil {
		return nil, err
	}
	key, err := c.keys.Secret(ctx)
	if err != nil {
		return nil, fmt.Errorf("n8napi: API key: %w", err)
	}
	req.Header.Set(HeaderAPIKey, key.Reveal())
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// Do sends req and decodes a JSON answer into v (when not nil).
func (c *Client) Do(req *http.Request, v any) (*Response, error) {
	countCall(req.Context())
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, &invocation.TransportError{Workflow: "(n8n API)", Method: req.Method, URL: req.URL.Path, Attempts: 1, ErrClass: invocation.Transient, Err: err}
	}
	defer resp.Body.Close()
	r := &Response{Response: resp, RateLimit: parseRateLimit(resp.Header, time.Now())}
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	countBytes(req.Context(), len(b))
	if err != nil {
		return r, fmt.Errorf("n8n API: %s %s: reading body: %w", req.Method, req.URL.Path, err)
	}
	if int64(len(b)) > c.maxBody {
		return r, fmt.Errorf("n8n API: %s %s: body exceeds %d bytes", req.Method, req.URL.Path, c.maxBody)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ae := &APIError{Method: req.Method, URL: req.URL.RequestURI(), StatusCode: resp.StatusCode, Message: invocation.MessageOf(b)}
		c.noteLimits(resp, ae)
		return r, ae
	}
	c.noteLimits(resp, nil)
	if bytes.HasPrefix(b, []byte("n8n is starting up")) {
		// n8n answers every path with this text and a 200 while its
		// migrations run: not an answer.
		return r, &APIError{Method: req.Method, URL: req.URL.RequestURI(), StatusCode: http.StatusServiceUnavailable, Message: "n8n is starting up (a 200 with text, not the API's answer)"}
	}
	if v == nil || len(bytes.TrimSpace(b)) == 0 {
		return r, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return r, fmt.Errorf("n8n API: %s %s: decoding answer: %w", req.Method, req.URL.Path, err)
	}
	return r, nil
}

// call is NewRequest plus Do, retried by the client's RetryPolicy; after
// a 401 it reloads a reloadable key and tries once more. An answer that
// says the path or method is unknown (404, 405) for an operation the
// running n8n's spec does not have is an error matching ErrUnsupported.
func (c *Client) call(ctx context.Context, method, path string, query url.Values, body, v any) (*Response, error) {
	for try := 1; ; try++ {
		if err := c.paused.wait(ctx); err != nil {
			return nil, err
		}
		resp, err := c.once(ctx, method, path, query, body, v)
		if err == nil || ctx.Err() != nil {
			return resp, err
		}
		wait, ok := c.retryWait(method, resp, err, try)
		if !ok {
			return resp, c.unsupported(ctx, method, path, err)
		}
		if serr := invocation.Sleep(ctx, wait); serr != nil {
			return resp, serr
		}
	}
}

func (c *Client) once(ctx context.Context, method, path string, query url.Values, body, v any) (*Response, error) {
	req, err := c.NewRequest(ctx, method, path, query, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req, v)
	var ae *APIError
	if errors.As(err, &ae) && ae.StatusCode == http.StatusUnauthorized {
		if r, ok := c.keys.(secret.Reloader); ok {
			if changed, rerr := r.Reload(ctx); rerr == nil && changed {
				if req, err = c.NewRequest(ctx, method, path, query, body); err != nil {
					return nil, err
				}
				return c.Do(req, v)
			}
		}
	}
	return resp, err
}

// page is a list answer.
type page[T any] struct {
	Data       []T     `json:"data"`
	NextCursor *string `json:"nextCursor"`
}

func list[T any](ctx context.Context, c *Client, path string, q url.Values) ([]T, *Response, error) {
	var p page[T]
	resp, err := c.call(ctx, http.MethodGet, path, q, nil, &p)
	if err != nil {
		return nil, resp, err
	}
	if p.NextCursor != nil {
		resp.NextCursor = *p.NextCursor
	}
	return p.Data, resp, nil
}

// all iterates every page of a list.
func all[T any](ctx context.Context, c *Client, path string, q url.Values) func(yield func(T, error) bool) {
	return func(yield func(T, error) bool) {
		q := cloneValues(q)
		for {
			items, resp, err := list[T](ctx, c, path, q)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
			if resp.NextCursor == "" {
				return
			}
			q.Set("cursor", resp.NextCursor)
		}
	}
}

func cloneValues(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	return out
}
