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
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

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

// Defaults of the transport's options.
const (
	DefaultTimeout          = 30 * time.Second
	DefaultMaxResponseBytes = 16 << 20
	DefaultPoolConnections  = 10
	DefaultPoolMaxSize      = 20
	DefaultDialTimeout      = 10 * time.Second
	DefaultIdleConnTimeout  = 90 * time.Second
	maxErrorBody            = 4 << 10
	maxDrain                = 64 << 10
	userAgent               = "n8n-invoker"
)

// Transport calls n8n webhooks, one attempt per call of Attempt and one
// request on the wire per attempt: it never retries, and it keeps
// net/http from re-sending a request by itself on a reused connection
// that fails (the body it gives net/http cannot be rewound). It reports
// whether a failed request had been sent. Retries, breakers and
// classification are the pipeline's. It is safe for concurrent use.
type Transport struct {
	base      *url.URL
	client    *http.Client
	transport *http.Transport
	timeout   time.Duration
	maxBody   int64
	wrap      []func(http.RoundTripper) http.RoundTripper
	poolConns int
	poolMax   int
	tlsConfig *tls.Config
	// prefix is the webhook URL prefix: base + "/webhook/".
	prefix string
	// idHeaders are the answer headers that may carry the execution id.
	idHeaders []string
	// others holds a client per other attempt timeout (a target's own),
	// made on first use: the timeout of the response headers is the
	// transport's.
	others sync.Map // time.Duration -> *http.Client
}

// Option configures a Transport.
type Option func(*Transport) error

// WithTimeout bounds each attempt (default DefaultTimeout); a target's
// own timeout overrides it.
func WithTimeout(d time.Duration) Option {
	return func(t *Transport) error {
		if d <= 0 {
			return fmt.Errorf("timeout must be positive, got %s", d)
		}
		t.timeout = d
		return nil
	}
}

// WithPool sets the idle pool: idle connections kept for up to
// connections hosts, maxSize per host. A batch to one n8n needs maxSize
// near its concurrency, or connections churn into TIME_WAIT.
func WithPool(connections, maxSize int) Option {
	return func(t *Transport) error {
		if connections <= 0 || maxSize <= 0 {
			return fmt.Errorf("pool sizes must be positive, got %d and %d", connections, maxSize)
		}
		t.poolConns, t.poolMax = connections, maxSize
		return nil
	}
}

// WithMaxResponseBytes limits a response body (default
// DefaultMaxResponseBytes).
func WithMaxResponseBytes(n int64) Option {
	return func(t *Transport) error {
		if n <= 0 {
			return fmt.Errorf("max response bytes must be positive, got %d", n)
		}
		t.maxBody = n
		return nil
	}
}

// WithRoundTripper wraps the net/http transport, e.g. to inject faults
// in tests. The wrapper handles single attempts only and must not
// re-send. Wrappers compose: each one given wraps those given before it.
func WithRoundTripper(wrap func(http.RoundTripper) http.RoundTripper) Option {
	return func(t *Transport) error { t.wrap = append(t.wrap, wrap); return nil }
}

// DefaultExecutionIDHeaders are the answer headers read for the
// execution id, in order.
var DefaultExecutionIDHeaders = []string{HeaderExecutionID, "X-Execution-Id"}

// WithExecutionIDHeaders sets the answer headers read for the execution
// id, in order (default DefaultExecutionIDHeaders): a Respond to Webhook
// node can set any of them to {{ $execution.id }}.
func WithExecutionIDHeaders(names ...string) Option {
	return func(t *Transport) error {
		for _, n := range names {
			if n == "" {
				return errors.New("empty execution id header name")
			}
		}
		t.idHeaders = names
		return nil
	}
}

// WithTLSConfig sets the TLS configuration (verification stays on unless
// the given config turns it off).
func WithTLSConfig(c *tls.Config) Option {
	return func(t *Transport) error { t.tlsConfig = c.Clone(); return nil }
}

// New returns a webhook transport for the n8n instance at baseURL.
func New(baseURL string, opts ...Option) (*Transport, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("httpinvoker: base URL must be http(s)://host[/path], got %q", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	t := &Transport{
		base:      u,
		timeout:   DefaultTimeout,
		maxBody:   DefaultMaxResponseBytes,
		poolConns: DefaultPoolConnections,
		poolMax:   DefaultPoolMaxSize,
		idHeaders: DefaultExecutionIDHeaders,
	}
	for _, o := range opts {
		if err := o(t); err != nil {
			return nil, fmt.Errorf("httpinvoker: %w", err)
		}
	}
	tlsConf := t.tlsConfig
	if tlsConf == nil {
		tlsConf = &tls.Config{}
	}
	if tlsConf.MinVersion < tls.VersionTLS12 {
		tlsConf.MinVersion = tls.VersionTLS12
	}
	dialer := &net.Dialer{Timeout: DefaultDialTimeout, KeepAlive: 30 * time.Second}
	t.transport = &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &writeDeadlineConn{Conn: c, timeout: t.timeout}, nil
		},
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           t.poolConns * t.poolMax,
		MaxIdleConnsPerHost:    t.poolMax,
		IdleConnTimeout:        DefaultIdleConnTimeout,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
		ResponseHeaderTimeout:  t.timeout,
		TLSClientConfig:        tlsConf,
	}
	t.client = t.newClient(t.transport)
	b := *u
	b.Path += "/webhook/"
	t.prefix = b.String()
	return t, nil
}

func (t *Transport) newClient(tr *http.Transport) *http.Client {
	var rt http.RoundTripper = tr
	for _, w := range t.wrap {
		rt = w(rt)
	}
	return &http.Client{
		Transport: rt,
		// Webhooks do not redirect; following one could carry auth
		// headers to another host. A 3xx is returned as a permanent error.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// clientFor returns the client whose response headers wait at most d.
func (t *Transport) clientFor(d time.Duration) *http.Client {
	if d == t.timeout {
		return t.client
	}
	if c, ok := t.others.Load(d); ok {
		return c.(*http.Client)
	}
	tr := t.transport.Clone()
	tr.ResponseHeaderTimeout = d
	c, _ := t.others.LoadOrStore(d, t.newClient(tr))
	return c.(*http.Client)
}

// Close releases idle connections.
func (t *Transport) Close() {
	t.transport.CloseIdleConnections()
	t.others.Range(func(_, c any) bool {
		c.(*http.Client).CloseIdleConnections()
		return true
	})
}

// writeDeadlineConn bounds every write by the attempt timeout, so that a
// request to a server that stopped reading cannot block forever when the
// caller's context cannot be canceled.
type writeDeadlineConn struct {
	net.Conn
	timeout  time.Duration
	deadline time.Time // the write deadline set last
}

// Write moves the deadline only when less than half the timeout is left
// (a connection is used by one request at a time): most writes set
// nothing.
func (c *writeDeadlineConn) Write(p []byte) (int, error) {
	if now := time.Now(); c.deadline.Sub(now) < c.timeout/2 {
		c.deadline = now.Add(c.timeout)
		if err := c.Conn.SetWriteDeadline(c.deadline); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(p)
}

// call is what one attempt needs of its request.
type call struct {
	workflow string
	target   *invocation.Target
	method   string
	url      string // for errors: no query
	attempt  int
}

// Attempt makes one attempt of a: one request to the target's webhook.
// It returns the result of a 2xx answer (Completed false for an
// onReceived webhook: n8n accepted the request), or a typed error:
// *invocation.HTTPError (answered), *invocation.TransportError (Sent
// says whether the request had been written), *invocation.ResponseError
// (answered with a body that fails validation); the context's error
// when ctx ends. Classification is left to the pipeline.
func (t *Transport) Attempt(ctx context.Context, a *invocation.Attempt) (*invocation.Result, error) {
	tg := a.Target
	c := call{workflow: a.Request.Workflow, target: tg, method: tg.Method, attempt: a.Number}
	if c.method == "" {
		c.method = http.MethodPost
	}
	path, err := invocation.FillPath(tg, a.Request)
	if err != nil {
		return nil, err
	}
	c.url = t.prefix + path
	full := c.url
	if c.method == http.MethodGet || c.method == http.MethodHead {
		q, err := query(a.Request)
		if err != nil {
			return nil, err
		}
		if q != "" {
			full += "?" + q
		}
	}
	timeout := t.timeout
	if tg.Timeout > 0 {
		timeout = tg.Timeout
	}
	// The attempt's timeout: a context deadline when the caller's context
	// can be canceled anyway; otherwise (net/http pays several
	// microseconds per request for a cancelable context) the transport's
	// limits bound each phase: the dial, the writes (writeDeadlineConn),
	// the response headers (ResponseHeaderTimeout) and the body (a timer
	// that closes it).
	actx := ctx
	if ctx.Done() != nil {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeoutCause(ctx, timeout, errAttemptTimeout)
		defer cancel()
	}
	start := time.Now()

	// A body net/http cannot rewind (no GetBody): it never re-sends the
	// request by itself, and what it read of the body tells whether the
	// request went out. A POST's is a bytes.Reader (net/http writes an
	// in-memory body with the headers, in one packet); a GET gets an
	// empty onceBody, since an empty bytes.Reader becomes NoBody, which
	// net/http re-sends.
	st := &attemptState{ids: [2]string{a.Request.RequestID, a.Request.IdempotencyKey}}
	var body io.Reader
	if a.Body != nil {
		st.body.Reset(a.Body)
		body = &st.body
	} else {
		body = &st.empty
	}
	hreq, err := http.NewRequestWithContext(actx, c.method, full, body)
	if err != nil {
		return nil, fmt.Errorf("workflow %q: building request: %w", c.workflow, err)
	}
	hreq.GetBody = nil
	hreq.ContentLength = int64(len(a.Body))
	h := hreq.Header
	if a.Body != nil {
		h["Content-Type"] = contentTypeJSON
	}
	h["User-Agent"] = userAgentHeader
	if a.Request.RequestID != "" {
		h[HeaderRequestID] = st.ids[0:1:1]
	}
	if a.Request.IdempotencyKey != "" {
		h[HeaderIdempotencyKey] = st.ids[1:2:2]
	}
	for k, v := range a.Header {
		h[k] = v
	}
	switch au := tg.Auth; au.Type {
	case invocation.AuthHeader:
		h.Set(au.Name, au.Value.Reveal())
	case invocation.AuthBasic:
		hreq.SetBasicAuth(au.Username, au.Password.Reveal())
	}

	resp, err := t.clientFor(timeout).Do(hreq)
	if err != nil {
		if ctx.Err() != nil {
			return nil, invocation.NewCanceled(ctx, c.workflow, c.attempt, st.sent(len(a.Body)))
		}
		var ne net.Error
		timedOut := context.Cause(actx) == errAttemptTimeout || (errors.As(err, &ne) && ne.Timeout())
		terr := &invocation.TransportError{Workflow: c.workflow, Method: c.method, URL: c.url, Attempts: c.attempt,
			Err: cleanURLError(err), TimedOut: timedOut, Sent: st.sent(len(a.Body))}
		if timedOut {
			terr.Err = fmt.Errorf("attempt timed out after %s", timeout)
			terr.Sent = terr.Sent || ne != nil // a response header timeout: the request was written
		}
		return nil, terr
	}
	defer resp.Body.Close()
	var bodyTimedOut atomic.Bool
	if actx == ctx {
		left := timeout - time.Since(start)
		stop := time.AfterFunc(max(left, 0), func() { bodyTimedOut.Store(true); resp.Body.Close() })
		defer stop.Stop()
	}

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		herr := t.httpError(&c, resp)
		if ctx.Err() != nil {
			return nil, invocation.NewCanceled(ctx, c.workflow, c.attempt, true)
		}
		if bodyTimedOut.Load() {
			return nil, t.bodyTimeout(&c, timeout)
		}
		return nil, herr
	}
	res, err := t.decode(&c, a.Request, resp)
	if err == nil && string(res.Output) == startingUp {
		// A starting n8n answers every request 200 with this text before
		// its database is migrated: nothing ran.
		return nil, &invocation.HTTPError{Workflow: c.workflow, Method: c.method, URL: c.url, StatusCode: resp.StatusCode,
			Message: "n8n is starting up", Header: resp.Header, Attempts: c.attempt, Starting: true}
	}
	if err != nil && ctx.Err() != nil {
		return nil, invocation.NewCanceled(ctx, c.workflow, c.attempt, true)
	}
	if err != nil && (bodyTimedOut.Load() || context.Cause(actx) == errAttemptTimeout) {
		return nil, t.bodyTimeout(&c, timeout)
	}
	return res, err
}

// bodyTimeout is the error of an answer whose body did not arrive within
// the attempt's timeout: the workflow ran, its answer is lost.
func (t *Transport) bodyTimeout(c *call, timeout time.Duration) error {
	return &invocation.TransportError{Workflow: c.workflow, Method: c.method, URL: c.url, Attempts: c.attempt,
		TimedOut: true, Sent: true, Err: fmt.Errorf("attempt timed out after %s reading the answer", timeout)}
}

// attemptState is what one attempt allocates: its body and its id
// header values, in one allocation.
type attemptState struct {
	body  bytes.Reader
	empty onceBody
	ids   [2]string
}

// sent reports whether net/http started to take the request's body, so
// that the request may have reached n8n.
func (s *attemptState) sent(size int) bool { return s.empty.read || s.body.Len() < size }

// onceBody is a request body that can be read once: net/http has no
// GetBody to rewind it with, so it does not re-send. read says whether
// the connection started to take it, i.e. the request may have been
// sent.
type onceBody struct {
	b    []byte
	off  int
	read bool
}

func (r *onceBody) Read(p []byte) (int, error) {
	r.read = true
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

// query encodes the parameters of a GET or HEAD webhook.
func query(req *invocation.Request) (string, error) {
	m, err := queryValues(req)
	if err != nil || len(m) == 0 {
		return "", err
	}
	q := make(url.Values, len(m))
	for k, v := range m {
		q.Set(k, v)
	}
	return q.Encode(), nil
}

// queryValues returns the query parameters of a GET or HEAD webhook,
// decoded: strings as they are, other values as JSON.
func queryValues(req *invocation.Request) (map[string]string, error) {
	if len(req.Params) == 0 {
		return nil, nil
	}
	q := make(map[string]string, len(req.Params))
	for k, v := range req.Params {
		if s, ok := v.(string); ok {
			q[k] = s
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("workflow %q: parameter %q: %w", req.Workflow, k, err)
		}
		q[k] = string(b)
	}
	return q, nil
}

var errAttemptTimeout = errors.New("attempt timeout")

// startingUp is the body a starting n8n answers to every request, as a
// JSON string.
const startingUp = `"n8n is starting up. Please wait"`

// Constant header values, shared read-only by every request.
var (
	contentTypeJSON = []string{"application/json"}
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

func (t *Transport) httpError(c *call, resp *http.Response) *invocation.HTTPError {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.CopyN(io.Discard, resp.Body, maxDrain) // let the connection be reused
	msg := invocation.MessageOf(b)
	e := &invocation.HTTPError{
		Workflow: c.workflow, Method: c.method, URL: c.url, StatusCode: resp.StatusCode,
		Message: msg, Body: b, Header: resp.Header, Attempts: c.attempt, ResponseMode: c.target.ResponseMode,
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		e.RetryAfter, e.HasRetryAfter = policy.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	e.WorkflowFailed = resp.StatusCode == http.StatusInternalServerError && msg == policy.MessageWorkflowError
	e.NotRegistered = resp.StatusCode == http.StatusNotFound && strings.Contains(msg, "not registered")
	if resp.StatusCode >= 300 && resp.StatusCode < 400 && e.ResponseMode != invocation.ResponseModeResponseNode {
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

func (t *Transport) decode(c *call, req *invocation.Request, resp *http.Response) (*invocation.Result, error) {
	res := &invocation.Result{
		Workflow: c.workflow, WorkflowID: c.target.WorkflowID, RequestID: req.RequestID, StatusCode: resp.StatusCode,
		Attempts: c.attempt, Completed: c.target.ResponseMode != invocation.ResponseModeOnReceived,
	}
	invalid := func(reason string, err error) error {
		return &invocation.ResponseError{Workflow: c.workflow, StatusCode: resp.StatusCode, Reason: reason, Attempts: c.attempt, Err: err}
	}
	if resp.ContentLength > t.maxBody {
		return nil, invalid(fmt.Sprintf("body of %d bytes exceeds the limit of %d", resp.ContentLength, t.maxBody), nil)
	}
	b, err := readBody(resp, t.maxBody)
	if err != nil {
		return nil, invalid("reading body", err)
	}
	if int64(len(b)) > t.maxBody {
		return nil, invalid(fmt.Sprintf("body exceeds the limit of %d bytes", t.maxBody), nil)
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
	res.Header = invocation.Header(resp.Header)
	for _, h := range t.idHeaders {
		if res.ExecutionID = resp.Header.Get(h); res.ExecutionID != "" {
			break
		}
	}
	if res.ExecutionID == "" {
		res.ExecutionID = executionIDOf(res.Output)
	}
	return res, nil
}

// executionIDOf returns a top-level "executionId" of a JSON object: a
// string or a number, as a decoder reads it. It scans instead of decoding
// the whole output; an output with escapes or invalid UTF-8 (where a key
// or value can be spelled another way) is decoded instead.
func executionIDOf(out json.RawMessage) string {
	if len(out) == 0 || out[0] != '{' {
		return ""
	}
	if bytes.IndexByte(out, '\\') >= 0 || !utf8.Valid(out) {
		return decodedExecutionID(out)
	}
	key := []byte(`"executionId"`)
	var value []byte // after the last top-level key, as a decoder keeps the last
	for from := 0; ; {
		j := bytes.Index(out[from:], key)
		if j < 0 {
			break
		}
		at := from + j
		from = at + len(key)
		if !topLevel(out[:at]) {
			continue
		}
		rest := bytes.TrimLeft(out[from:], " \t\r\n")
		if len(rest) == 0 || rest[0] != ':' {
			continue // a string value spelled like the key, not the key
		}
		value = bytes.TrimLeft(rest[1:], " \t\r\n")
	}
	switch {
	case len(value) > 0 && value[0] == '"':
		end := bytes.IndexByte(value[1:], '"') // no escapes here
		if end < 0 {
			return ""
		}
		return string(value[1 : 1+end])
	case len(value) > 0 && (value[0] == '-' || value[0] >= '0' && value[0] <= '9'):
		n := 1
		for n < len(value) && (value[n] >= '0' && value[n] <= '9' || value[n] == '.' || value[n] == 'e' || value[n] == 'E' || value[n] == '+' || value[n] == '-') {
			n++
		}
		var num json.Number
		if json.Unmarshal(value[:n], &num) != nil {
			return ""
		}
		return num.String()
	}
	return ""
}

// decodedExecutionID is executionIDOf by a decoder.
func decodedExecutionID(out json.RawMessage) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(out, &m) != nil {
		return ""
	}
	v, ok := m["executionId"]
	if !ok {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var num json.Number
	if json.Unmarshal(v, &num) == nil {
		return num.String()
	}
	return ""
}

// topLevel reports whether the end of prefix (the text of a JSON object
// before a key) is at depth one, outside any string.
func topLevel(prefix []byte) bool {
	depth, inString, escaped := 0, false, false
	for _, c := range prefix {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
		}
	}
	return depth == 1 && !inString
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
