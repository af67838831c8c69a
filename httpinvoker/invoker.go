package httpinvoker

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/policy"
)

// Header names sent with every attempt.
const (
	HeaderRequestID      = "X-Request-Id"
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderExecutionID is read from answers: a Respond to Webhook node
	// can set it to {{ $execution.id }}.
	HeaderExecutionID = "X-N8N-Execution-Id"
)

// Defaults of the options that config does not cover.
const (
	DefaultDialTimeout     = 10 * time.Second
	DefaultStartupGrace    = 60 * time.Second
	DefaultIdleConnTimeout = 90 * time.Second
	maxErrorBody           = 4 << 10
	maxDrain               = 64 << 10
	userAgent              = "n8n-invoker"
)

// Gate is consulted before every attempt: the seam for circuit breakers,
// rate limiters and retry budgets (policy.Guard implements it).
type Gate interface {
	// Allow is called before each attempt; prev is the previous attempt's
	// error, nil before the first. It returns done, called once with the
	// attempt's error (nil on success), or an error that ends the
	// invocation: the context's, a *CircuitOpenError, or
	// ErrRetryBudgetExhausted.
	Allow(ctx context.Context, workflow string, prev error) (done func(error), err error)
}

// Invoker calls n8n webhooks. It is safe for concurrent use.
type Invoker struct {
	base        *url.URL
	resolver    Resolver
	client      *http.Client
	transport   *http.Transport
	timeout     time.Duration
	retry       policy.Retry
	maxBody     int64
	classifiers policy.Chain
	gate        Gate
	wrap        []func(http.RoundTripper) http.RoundTripper
	poolConns   int
	poolMax     int
	tlsConfig   *tls.Config
	grace       time.Duration
	// unavailableAt is when n8n last looked unavailable (unix ns): a
	// connection failure, 502/503/504, or a starting n8n's HTML 404.
	unavailableAt atomic.Int64
}

// Option configures an Invoker.
type Option func(*Invoker) error

// WithResolver sets how workflow names map to webhooks. Required unless
// the invoker is built with FromConfig.
func WithResolver(r Resolver) Option {
	return func(i *Invoker) error {
		if r == nil {
			return errors.New("nil resolver")
		}
		i.resolver = r
		return nil
	}
}

// WithTimeout bounds each attempt (default config.DefaultTimeout).
func WithTimeout(d time.Duration) Option {
	return func(i *Invoker) error {
		if d <= 0 {
			return fmt.Errorf("timeout must be positive, got %s", d)
		}
		i.timeout = d
		return nil
	}
}

// WithRetryPolicy sets the whole retry policy.
func WithRetryPolicy(r policy.Retry) Option {
	return func(i *Invoker) error {
		if err := r.Validate(); err != nil {
			return err
		}
		i.retry = r
		return nil
	}
}

// WithRetries sets the number of retries after the first attempt and the
// seed's backoff factor: retry n waits a random time in
// [0, factor*2^(n-1) s), at most the maximum delay.
func WithRetries(maxRetries int, backoffFactor float64) Option {
	return func(i *Invoker) error {
		if maxRetries < 0 || !(backoffFactor >= 0) {
			return fmt.Errorf("retries (%d) and backoff factor (%v) must not be negative", maxRetries, backoffFactor)
		}
		i.retry.MaxRetries = maxRetries
		i.retry.BaseDelay = time.Duration(backoffFactor * float64(time.Second))
		return nil
	}
}

// WithMaxDelay caps the backoff delay (default policy.DefaultMaxDelay).
func WithMaxDelay(d time.Duration) Option {
	return func(i *Invoker) error {
		if d <= 0 {
			return fmt.Errorf("max delay must be positive, got %s", d)
		}
		i.retry.MaxDelay = d
		return nil
	}
}

// WithMaxRetryAfter caps the wait a Retry-After header may ask for
// (default policy.DefaultMaxRetryAfter). A longer request ends the
// invocation with a *RetryAfterError that carries the wait.
func WithMaxRetryAfter(d time.Duration) Option {
	return func(i *Invoker) error {
		if d <= 0 {
			return fmt.Errorf("max retry-after must be positive, got %s", d)
		}
		i.retry.MaxRetryAfter = d
		return nil
	}
}

// WithPool sets the idle pool: idle connections kept for up to
// connections hosts, maxSize per host.
func WithPool(connections, maxSize int) Option {
	return func(i *Invoker) error {
		if connections <= 0 || maxSize <= 0 {
			return fmt.Errorf("pool sizes must be positive, got %d and %d", connections, maxSize)
		}
		i.poolConns, i.poolMax = connections, maxSize
		return nil
	}
}

// WithMaxResponseBytes limits a response body (default
// config.DefaultMaxResponseBytes).
func WithMaxResponseBytes(n int64) Option {
	return func(i *Invoker) error {
		if n <= 0 {
			return fmt.Errorf("max response bytes must be positive, got %d", n)
		}
		i.maxBody = n
		return nil
	}
}

// WithClassifier adds a classifier consulted, in the order added, before
// the n8n rules (policy.N8N).
func WithClassifier(c policy.Classifier) Option {
	return func(i *Invoker) error {
		i.classifiers = append(i.classifiers, c)
		return nil
	}
}

// WithGate sets the gate consulted around every attempt.
func WithGate(g Gate) Option {
	return func(i *Invoker) error { i.gate = g; return nil }
}

// WithJitter replaces full jitter (a uniform random duration in [0, cap))
// with f, for tests.
func WithJitter(f func(cap time.Duration) time.Duration) Option {
	return func(i *Invoker) error { i.retry.Jitter = f; return nil }
}

// WithRoundTripper wraps the invoker's transport, e.g. to add tracing or
// to inject faults in tests. The wrapper handles single attempts only.
// Wrappers compose: each one given wraps those given before it.
func WithRoundTripper(wrap func(http.RoundTripper) http.RoundTripper) Option {
	return func(i *Invoker) error { i.wrap = append(i.wrap, wrap); return nil }
}

// WithStartupGrace sets how long after n8n last looked unavailable a 404
// "webhook not registered" counts as transient (default
// DefaultStartupGrace): a restarting n8n registers its webhooks a moment
// after it answers again. Outside that window the 404 is permanent.
func WithStartupGrace(d time.Duration) Option {
	return func(i *Invoker) error {
		if d < 0 {
			return fmt.Errorf("startup grace must not be negative, got %s", d)
		}
		i.grace = d
		return nil
	}
}

// WithTLSConfig sets the TLS configuration (verification stays on unless
// the given config turns it off).
func WithTLSConfig(c *tls.Config) Option {
	return func(i *Invoker) error { i.tlsConfig = c.Clone(); return nil }
}

// New returns an invoker for the n8n instance at baseURL.
func New(baseURL string, opts ...Option) (*Invoker, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("httpinvoker: base URL must be http(s)://host[/path], got %q", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	i := &Invoker{
		base:      u,
		timeout:   config.DefaultTimeout,
		retry:     policy.DefaultRetry(),
		maxBody:   config.DefaultMaxResponseBytes,
		poolConns: config.DefaultPoolConnections,
		poolMax:   config.DefaultPoolMaxSize,
		grace:     DefaultStartupGrace,
	}
	for _, o := range opts {
		if err := o(i); err != nil {
			return nil, fmt.Errorf("httpinvoker: %w", err)
		}
	}
	if i.resolver == nil {
		return nil, errors.New("httpinvoker: no resolver: use WithResolver or FromConfig")
	}
	tlsConf := i.tlsConfig
	if tlsConf == nil {
		tlsConf = &tls.Config{}
	}
	if tlsConf.MinVersion < tls.VersionTLS12 {
		tlsConf.MinVersion = tls.VersionTLS12
	}
	i.transport = &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            (&net.Dialer{Timeout: DefaultDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           i.poolConns * i.poolMax,
		MaxIdleConnsPerHost:    i.poolMax,
		IdleConnTimeout:        DefaultIdleConnTimeout,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
		TLSClientConfig:        tlsConf,
	}
	var rt http.RoundTripper = i.transport
	for _, w := range i.wrap {
		rt = w(rt)
	}
	i.client = &http.Client{
		Transport: rt,
		// Webhooks do not redirect; following one could carry auth
		// headers to another host. A 3xx is returned as a permanent error.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return i, nil
}

// FromConfig returns an invoker configured by cfg (n8n section, the
// retry settings of invokers.http, and the workflows as its resolver).
// Options given after override it. The breakers, budget and rate limiter
// are the caller's to add with WithGate (the Manager does).
func FromConfig(cfg *config.Config, opts ...Option) (*Invoker, error) {
	h := &cfg.Invokers.HTTP
	tlsConf, err := TLSFromConfig(cfg.N8N.TLS)
	if err != nil {
		return nil, err
	}
	base := []Option{
		WithTLSConfig(tlsConf),
		WithResolver(ResolverFromConfig(cfg)),
		WithTimeout(cfg.N8N.Timeout.D()),
		WithRetryPolicy(policy.RetryFromConfig(h)),
		WithPool(h.PoolConnections, h.PoolMaxSize),
		WithMaxResponseBytes(h.MaxResponseBytes),
	}
	return New(cfg.N8N.BaseURL, append(base, opts...)...)
}

// Close releases idle connections.
func (i *Invoker) Close() { i.transport.CloseIdleConnections() }

// call is the state of one invocation.
type call struct {
	req      *invocation.Request
	ep       *Endpoint
	method   string
	url      string // for errors: no query
	full     string // with query for GET
	body     []byte
	attempts int
}

// Invoke runs req's workflow and returns its result or a typed error:
// *HTTPError, *TransportError, *ResponseError, *RetryAfterError,
// *CircuitOpenError, *BudgetExhaustedError, or *AttemptsExhaustedError
// around the last of them; the caller's context error when it is
// canceled.
func (i *Invoker) Invoke(ctx context.Context, req *invocation.Request) (*invocation.Result, error) {
	start := time.Now()
	ep, err := i.resolver.Resolve(ctx, req.Workflow)
	if err != nil {
		return nil, err
	}
	c, err := i.prepare(req, ep)
	if err != nil {
		return nil, err
	}
	var last error
	unknownRetries := 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		done := func(error) {}
		if i.gate != nil {
			d, err := i.gate.Allow(ctx, req.Workflow, last)
			if err != nil {
				return nil, i.refused(ctx, c, err, last)
			}
			done = d
		}
		c.attempts++
		res, err := i.attempt(ctx, c)
		done(err)
		if err == nil {
			res.Duration = time.Since(start)
			return res, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err() // the caller's cancellation: not a failure
		}
		if errors.Is(err, invocation.ErrNotRegistered) {
			if inv, ok := i.resolver.(Invalidator); ok {
				inv.Invalidate(req.Workflow) // the next call resolves it afresh
			}
		}
		last = err
		class := invocation.ClassOf(err)
		retries := c.attempts - 1
		if class == invocation.Permanent {
			return nil, err
		}
		if retries >= i.retry.MaxRetries || (class == invocation.Unknown && unknownRetries >= 1) {
			return nil, i.exhausted(c, err)
		}
		if class == invocation.Unknown {
			unknownRetries++
		}
		var he *invocation.HTTPError
		hasRA := errors.As(err, &he) && he.HasRetryAfter
		var ra time.Duration
		if hasRA {
			ra = he.RetryAfter
		}
		wait, ok := i.retry.Wait(retries+1, ra, hasRA)
		if !ok {
			return nil, &invocation.RetryAfterError{Workflow: req.Workflow, Wait: wait, Attempts: c.attempts, Err: err}
		}
		if i.retry.MaxElapsed > 0 && time.Since(start)+wait > i.retry.MaxElapsed {
			return nil, i.exhausted(c, err)
		}
		if err := invocation.Sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

func (i *Invoker) exhausted(c *call, err error) error {
	if c.attempts == 1 {
		return err
	}
	return &invocation.AttemptsExhaustedError{Workflow: c.req.Workflow, Attempts: c.attempts, Last: err}
}

// refused completes the gate's refusal with the invocation's details.
func (i *Invoker) refused(ctx context.Context, c *call, err, last error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var coe *invocation.CircuitOpenError
	switch {
	case errors.As(err, &coe):
		e := *coe
		e.Workflow, e.Attempts, e.Last = c.req.Workflow, c.attempts, last
		return &e
	case errors.Is(err, invocation.ErrRetryBudgetExhausted):
		return &invocation.BudgetExhaustedError{Workflow: c.req.Workflow, Attempts: c.attempts, Last: last}
	}
	return err
}

func (i *Invoker) prepare(req *invocation.Request, ep *Endpoint) (*call, error) {
	c := &call{req: req, ep: ep, method: ep.Method}
	if c.method == "" {
		c.method = http.MethodPost
	}
	u := *i.base
	u.Path = i.base.Path + "/webhook/" + strings.TrimPrefix(ep.Path, "/")
	c.url = u.String()
	c.full = c.url
	switch c.method {
	case http.MethodGet, http.MethodHead:
		if len(req.Body) > 0 {
			return nil, fmt.Errorf("workflow %q: a %s webhook takes parameters, not a body", req.Workflow, c.method)
		}
		q := url.Values{}
		for k, v := range req.Params {
			if s, ok := v.(string); ok {
				q.Set(k, s)
			} else {
				b, err := json.Marshal(v)
				if err != nil {
					return nil, fmt.Errorf("workflow %q: parameter %q: %w", req.Workflow, k, err)
				}
				q.Set(k, string(b))
			}
		}
		u.RawQuery = q.Encode()
		c.full = u.String()
	default:
		switch {
		case len(req.Body) > 0:
			if !json.Valid(req.Body) {
				return nil, fmt.Errorf("workflow %q: request body is not valid JSON", req.Workflow)
			}
			c.body = req.Body
		case req.Params == nil:
			c.body = []byte("{}")
		default:
			b, err := json.Marshal(req.Params)
			if err != nil {
				return nil, fmt.Errorf("workflow %q: encoding parameters: %w", req.Workflow, err)
			}
			c.body = b
		}
	}
	return c, nil
}

// AttemptInfo is what the context of one attempt's request tells a
// RoundTripper (tracing, logging).
type AttemptInfo struct {
	// Workflow is the workflow name the caller gave.
	Workflow string
	// Attempt is 1 for the first attempt, 2 for the first retry, ...
	Attempt int
}

type attemptKey struct{}

// AttemptFromContext returns the attempt a request belongs to.
func AttemptFromContext(ctx context.Context) (AttemptInfo, bool) {
	a, ok := ctx.Value(attemptKey{}).(AttemptInfo)
	return a, ok
}

// attempt makes one attempt.
func (i *Invoker) attempt(ctx context.Context, c *call) (*invocation.Result, error) {
	timeout := i.timeout
	if c.ep.Timeout > 0 {
		timeout = c.ep.Timeout
	}
	actx, cancel := context.WithTimeoutCause(ctx, timeout, errAttemptTimeout)
	defer cancel()
	if len(i.wrap) > 0 { // only wrappers read it
		actx = context.WithValue(actx, attemptKey{}, AttemptInfo{Workflow: c.req.Workflow, Attempt: c.attempts})
	}

	var body io.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
	}
	hreq, err := http.NewRequestWithContext(actx, c.method, c.full, body)
	if err != nil {
		return nil, fmt.Errorf("workflow %q: building request: %w", c.req.Workflow, err)
	}
	h := hreq.Header
	if c.body != nil {
		h["Content-Type"] = contentTypeJSON
	}
	h["Accept"] = acceptHeader
	h["User-Agent"] = userAgentHeader
	if c.req.RequestID != "" {
		h[HeaderRequestID] = []string{c.req.RequestID}
	}
	if c.req.IdempotencyKey != "" {
		h[HeaderIdempotencyKey] = []string{c.req.IdempotencyKey}
	}
	switch a := c.ep.Auth; a.Type {
	case config.AuthHeader:
		h.Set(a.Name, a.Value.Reveal())
	case config.AuthBasic:
		hreq.SetBasicAuth(a.Username, a.Password.Reveal())
	case config.AuthHMAC:
		ts, sig := Sign(a.Secret, time.Now(), c.body)
		h[HeaderTimestamp] = []string{ts}
		h[HeaderSignature] = []string{sig}
	case config.AuthJWT:
		h["Authorization"] = []string{"Bearer " + JWT(a.Secret, time.Now(), c.req.RequestID)}
	}

	resp, err := i.client.Do(hreq)
	if err != nil {
		timedOut := ctx.Err() == nil && context.Cause(actx) == errAttemptTimeout
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		terr := &invocation.TransportError{Workflow: c.req.Workflow, Method: c.method, URL: c.url, Attempts: c.attempts,
			Err: cleanURLError(err), TimedOut: timedOut}
		if timedOut {
			terr.Err = fmt.Errorf("attempt timed out after %s", timeout)
		}
		terr.ErrClass = i.classifiers.Classify(&policy.Outcome{Err: err, TimedOut: timedOut})
		if terr.ErrClass == invocation.Transient {
			i.unavailableAt.Store(time.Now().UnixNano())
		}
		return nil, terr
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		herr := i.httpError(c, resp)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, herr
	}
	res, err := i.decode(c, resp)
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return res, err
}

var errAttemptTimeout = errors.New("attempt timeout")

// Constant header values, shared read-only by every request.
var (
	contentTypeJSON = []string{"application/json"}
	acceptHeader    = []string{"application/json, text/plain;q=0.9, */*;q=0.5"}
	userAgentHeader = []string{userAgent}
)

// cleanURLError drops the *url.Error wrapper, whose message repeats the
// URL with its query.
func cleanURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (i *Invoker) httpError(c *call, resp *http.Response) *invocation.HTTPError {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.CopyN(io.Discard, resp.Body, maxDrain) // let the connection be reused
	msg := invocation.MessageOf(b)
	e := &invocation.HTTPError{
		Workflow: c.req.Workflow, Method: c.method, URL: c.url, StatusCode: resp.StatusCode,
		Message: msg, Body: b, Header: resp.Header, Attempts: c.attempts,
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		e.RetryAfter, e.HasRetryAfter = policy.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	e.ErrClass = i.classifiers.Classify(&policy.Outcome{StatusCode: resp.StatusCode, Header: resp.Header, Message: msg})
	e.WorkflowFailed = resp.StatusCode == http.StatusInternalServerError && msg == policy.MessageWorkflowError
	e.NotRegistered = resp.StatusCode == http.StatusNotFound && strings.Contains(msg, "not registered")
	switch {
	case e.ErrClass == invocation.Transient && (resp.StatusCode == http.StatusNotFound || resp.StatusCode >= 502):
		i.unavailableAt.Store(time.Now().UnixNano())
	case e.NotRegistered && e.ErrClass == invocation.Permanent:
		if at := i.unavailableAt.Load(); at != 0 && time.Since(time.Unix(0, at)) < i.grace {
			e.ErrClass = invocation.Transient // n8n is still registering its webhooks
		}
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		e.Message = "redirect to " + redactURL(resp.Header.Get("Location")) + " not followed; configure n8n.base_url to the final address"
	}
	return e
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

func (i *Invoker) decode(c *call, resp *http.Response) (*invocation.Result, error) {
	res := &invocation.Result{
		Workflow: c.req.Workflow, WorkflowID: c.ep.ID, RequestID: c.req.RequestID, StatusCode: resp.StatusCode,
		Attempts: c.attempts, Completed: c.ep.ResponseMode != config.ResponseModeOnReceived,
	}
	invalid := func(reason string, err error) error {
		return &invocation.ResponseError{Workflow: c.req.Workflow, StatusCode: resp.StatusCode, Reason: reason, Attempts: c.attempts, Err: err}
	}
	if resp.ContentLength > i.maxBody {
		return nil, invalid(fmt.Sprintf("body of %d bytes exceeds the limit of %d", resp.ContentLength, i.maxBody), nil)
	}
	b, err := readBody(resp, i.maxBody)
	if err != nil {
		return nil, invalid("reading body", err)
	}
	if int64(len(b)) > i.maxBody {
		return nil, invalid(fmt.Sprintf("body exceeds the limit of %d bytes", i.maxBody), nil)
	}
	mt := mediaType(resp.Header.Get("Content-Type"))
	res.ContentType = mt
	switch {
	case len(bytes.TrimSpace(b)) == 0:
		res.Output = json.RawMessage("null")
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		if !json.Valid(b) {
			return nil, invalid("malformed JSON", nil)
		}
		res.Output = json.RawMessage(b)
	case mt == "" || strings.HasPrefix(mt, "text/"):
		if json.Valid(b) && mt == "" {
			res.Output = json.RawMessage(b)
			break
		}
		if !utf8.Valid(b) {
			return nil, invalid(fmt.Sprintf("%q body is not valid UTF-8", mt), nil)
		}
		s, _ := json.Marshal(string(b))
		res.Output = s
	default:
		return nil, invalid(fmt.Sprintf("unsupported content type %q (want JSON or text)", mt), nil)
	}
	res.ExecutionID = resp.Header.Get(HeaderExecutionID)
	if res.ExecutionID == "" {
		res.ExecutionID = executionIDOf(res.Output)
	}
	return res, nil
}

// executionIDOf returns a top-level "executionId" of a JSON object.
func executionIDOf(out json.RawMessage) string {
	if len(out) == 0 || out[0] != '{' || !bytes.Contains(out, []byte(`"executionId"`)) {
		return ""
	}
	var v struct {
		ID json.RawMessage `json:"executionId"`
	}
	if json.Unmarshal(out, &v) != nil || len(v.ID) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(v.ID, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(v.ID, &n) == nil {
		return n.String()
	}
	return ""
}

// readBody reads at most limit+1 bytes, in one allocation when the
// length is announced.
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	if n := resp.ContentLength; n >= 0 && n <= limit {
		b := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(io.LimitReader(resp.Body, limit+1))
}

// mediaType returns the media type of a Content-Type, parsing only what
// is not the common JSON case.
func mediaType(ct string) string {
	switch ct {
	case "":
		return ""
	case "application/json", "application/json; charset=utf-8":
		return "application/json"
	}
	mt, _, _ := mime.ParseMediaType(ct)
	return mt
}
