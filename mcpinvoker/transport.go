package mcpinvoker

import (
	"bufio"
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
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// Name is the transport's name in a Target and in the configuration
// (transport: mcp).
const Name = "mcp"

// Path is where n8n serves its instance MCP server.
const Path = "/mcp-server/http"

// Defaults of Options. n8n limits its MCP server to 100 requests per 5
// minutes per client IP by default, counting every method (polls too);
// its Retry-After is then up to the whole window.
const (
	DefaultRateRequests     = 100
	DefaultRatePer          = 5 * time.Minute
	DefaultTimeout          = 30 * time.Second
	DefaultMaxResponseBytes = 16 << 20
	// DefaultMaxRetryAfter is the longest 429 wait MCP calls honour: the
	// server's whole window, longer than the webhooks' 60 s.
	DefaultMaxRetryAfter = 5*time.Minute + 5*time.Second
	// DefaultPublishGrace is how long after a workflow is published an
	// answer "has no published version" counts as transient (n8n takes
	// up to ~0.75 s to publish after /activate returns).
	DefaultPublishGrace = 2 * time.Second
)

// Options configure a Transport; zero fields take the defaults.
type Options struct {
	// BaseURL is the n8n instance (the MCP endpoint is BaseURL + Path).
	BaseURL string
	// Token is the instance MCP server's access token (a bearer JWT,
	// apart from the public API key): a fixed secret.Static or a
	// secret.File reloaded after a 401.
	Token secret.Provider
	// HTTPClient replaces the default pooled client.
	HTTPClient *http.Client
	// TLSConfig is the default client's TLS configuration (verification
	// on, TLS 1.2 at least, unless it says otherwise).
	TLSConfig *tls.Config
	// Timeout bounds one MCP request (default 30 s).
	Timeout time.Duration
	// MaxResponseBytes limits an answer (default 16 MiB).
	MaxResponseBytes int64
	// RateRequests per RatePer is this process's own limit toward the MCP
	// server (default 100 per 5 minutes, n8n's default): every MCP request
	// takes a slot. RateRequests < 0 turns it off (for a server whose
	// N8N_MCP_SERVER_RATE_LIMIT is 0).
	RateRequests int
	RatePer      time.Duration
	// MaxRetryAfter caps the hold every request takes after a 429
	// (default DefaultMaxRetryAfter): a Retry-After of a day holds the
	// transport for MaxRetryAfter, not a day.
	MaxRetryAfter time.Duration
}

// Transport starts workflows by id through n8n's instance MCP server:
// one attempt is one execute_workflow call, whose outcome is Accepted
// with the execution's id (n8n does not wait for the end); following the
// execution belongs to the await stage (the public API when a key is
// configured, else Execution). It is safe for concurrent use.
type Transport struct {
	endpoint string
	token    secret.Provider
	hc       *http.Client
	own      bool
	timeout  time.Duration
	maxBody  int64
	limiter  *rate.Limiter
	maxHold  time.Duration
	nextID   atomic.Int64

	mu       sync.Mutex
	heldTill time.Time         // a 429's reset: every request waits
	triggers map[string]string // workflow id -> trigger node name
}

var _ invocation.Transport = (*Transport)(nil)

// New validates o and returns a Transport.
func New(o Options) (*Transport, error) {
	u, err := url.Parse(o.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("mcpinvoker: base URL must be http(s)://host[/path], got %q", o.BaseURL)
	}
	if o.Token == nil {
		return nil, errors.New("mcpinvoker: no MCP token (set invokers.mcp.token or token_file)")
	}
	if o.Timeout < 0 || o.MaxResponseBytes < 0 || o.RatePer < 0 || o.MaxRetryAfter < 0 {
		return nil, errors.New("mcpinvoker: negative option")
	}
	t := &Transport{endpoint: strings.TrimSuffix(u.String(), "/") + Path, token: o.Token, hc: o.HTTPClient,
		timeout: o.Timeout, maxBody: o.MaxResponseBytes, maxHold: o.MaxRetryAfter, triggers: map[string]string{}}
	if t.maxHold == 0 {
		t.maxHold = DefaultMaxRetryAfter
	}
	if t.timeout == 0 {
		t.timeout = DefaultTimeout
	}
	if t.maxBody == 0 {
		t.maxBody = DefaultMaxResponseBytes
	}
	if o.RateRequests >= 0 {
		n, per := o.RateRequests, o.RatePer
		if n == 0 {
			n = DefaultRateRequests
		}
		if per == 0 {
			per = DefaultRatePer
		}
		// A burst of a tenth and the rest spread over the window: no
		// window of the server's length ever sees more than n.
		burst := max(1, n/10)
		t.limiter = rate.NewLimiter(rate.Limit(float64(n-burst)/per.Seconds()), burst)
		if n == burst {
			t.limiter = rate.NewLimiter(rate.Limit(float64(n)/per.Seconds()), burst)
		}
	}
	if t.hc == nil {
		tc := o.TLSConfig
		if tc == nil {
			tc = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		t.own = true
		t.hc = &http.Client{
			Transport: &http.Transport{
				Proxy:                  http.ProxyFromEnvironment,
				DialContext:            (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConnsPerHost:    16,
				IdleConnTimeout:        90 * time.Second,
				TLSHandshakeTimeout:    10 * time.Second,
				TLSClientConfig:        tc.Clone(),
				MaxResponseHeaderBytes: 1 << 20,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return t, nil
}

// Close releases the idle connections of the transport's own client.
func (t *Transport) Close() {
	if t.own {
		t.hc.CloseIdleConnections()
	}
}

// Attempt makes one execute_workflow call for a's workflow. What MCP
// cannot carry is refused before anything is sent (code invocation.CodeBadRequest):
// path parameters, a body that is not a JSON object, a webhook with
// authentication (MCP bypasses it), a Respond to Webhook node's answer,
// a GET or HEAD webhook's query parameters.
func (t *Transport) Attempt(ctx context.Context, a *invocation.Attempt) (*invocation.Result, error) {
	req, tgt := a.Request, a.Target
	if err := carry(a); err != nil {
		return nil, err
	}
	if tgt.WorkflowID == "" {
		return nil, cannotCarry(req.Workflow, "a workflow without its n8n id (give the workflow's id)")
	}
	trigger, err := t.trigger(ctx, tgt)
	if err != nil {
		return nil, err
	}
	headers := map[string]string{}
	for k, v := range a.Header {
		if len(v) > 0 {
			headers[strings.ToLower(k)] = v[0]
		}
	}
	if req.RequestID != "" {
		headers["x-request-id"] = req.RequestID
	}
	if req.IdempotencyKey != "" {
		headers["idempotency-key"] = req.IdempotencyKey
	}
	body := json.RawMessage(a.Body)
	if len(bytes.TrimSpace(body)) == 0 {
		body = json.RawMessage(`{}`)
	}
	method := tgt.Method
	if method == "" {
		method = http.MethodPost
	}
	args := map[string]any{
		"workflowId": tgt.WorkflowID, "executionMode": "production", "triggerNodeName": trigger,
		"inputs": map[string]any{"webhookData": map[string]any{"method": method, "body": body, "headers": headers, "query": map[string]string{}}},
	}
	var out struct {
		ExecutionID *string `json:"executionId"`
		Status      string  `json:"status"`
		Error       string  `json:"error"`
	}
	timeout := t.timeout
	if tgt.Timeout > 0 {
		timeout = tgt.Timeout
	}
	actx, cancel := context.WithTimeoutCause(ctx, timeout, errAttemptTimeout)
	defer cancel()
	if err := t.callTool(actx, req.Workflow, "execute_workflow", args, &out); err != nil {
		if ctx.Err() == nil && context.Cause(actx) == errAttemptTimeout {
			err = attemptTimedOut(err, timeout)
		}
		return nil, attempts(err, a.Number)
	}
	if out.Status == "error" || out.ExecutionID == nil || *out.ExecutionID == "" {
		return nil, &ToolError{Workflow: req.Workflow, Tool: "execute_workflow", Message: out.Error, Attempts: a.Number}
	}
	return &invocation.Result{Workflow: req.Workflow, RequestID: req.RequestID, ExecutionID: *out.ExecutionID,
		WorkflowID: tgt.WorkflowID, StatusCode: http.StatusOK, ContentType: "application/json",
		Output: json.RawMessage(fmt.Sprintf(`{"executionId":%q,"status":"started"}`, *out.ExecutionID)), Completed: false}, nil
}

// carry refuses what an MCP run cannot express.
func carry(a *invocation.Attempt) error {
	req, tgt := a.Request, a.Target
	what := ""
	switch {
	case len(req.PathParams) > 0:
		what = "path parameters (the trigger item has no params)"
	case tgt.Auth.Type != "" && tgt.Auth.Type != invocation.AuthNone:
		what = "webhook authentication (" + tgt.Auth.Type + "): MCP bypasses it"
	case tgt.ResponseMode == invocation.ResponseModeResponseNode:
		what = "a Respond to Webhook node's answer (an MCP run's output is the execution's)"
	case tgt.Method == http.MethodGet || tgt.Method == http.MethodHead:
		if len(req.Params) > 0 {
			what = "query parameters of a " + tgt.Method + " webhook"
		}
	default:
		if b := bytes.TrimSpace(a.Body); len(b) > 0 && b[0] != '{' {
			what = "a body that is not a JSON object"
		}
	}
	if what != "" {
		return cannotCarry(req.Workflow, what)
	}
	return nil
}

func attempts(err error, n int) error {
	switch e := err.(type) {
	case *invocation.HTTPError:
		e.Attempts = n
	case *invocation.TransportError:
		e.Attempts = n
	case *ToolError:
		e.Attempts = n
	case *invocation.Error:
		e.Attempts = n
	}
	return err
}

// trigger returns the target's trigger node, resolved once per workflow
// through get_workflow_details when the target does not name it.
func (t *Transport) trigger(ctx context.Context, tgt *invocation.Target) (string, error) {
	if tgt.TriggerNode != "" {
		return tgt.TriggerNode, nil
	}
	t.mu.Lock()
	name, ok := t.triggers[tgt.WorkflowID]
	t.mu.Unlock()
	if ok {
		return name, nil
	}
	name, err := t.TriggerNode(ctx, tgt.Workflow, tgt.WorkflowID)
	if err != nil {
		return "", err
	}
	t.mu.Lock()
	t.triggers[tgt.WorkflowID] = name
	t.mu.Unlock()
	return name, nil
}

// TriggerNode asks the MCP server for workflowID's webhook trigger
// node's name (get_workflow_details).
func (t *Transport) TriggerNode(ctx context.Context, workflow, workflowID string) (string, error) {
	var out struct {
		Workflow struct {
			Nodes []struct {
				Name string `json:"name"`
				Type string `json:"type"`
			} `json:"nodes"`
		} `json:"workflow"`
		Error string `json:"error"`
	}
	if err := t.callTool(ctx, workflow, "get_workflow_details", map[string]any{"workflowId": workflowID}, &out); err != nil {
		return "", err
	}
	for _, n := range out.Workflow.Nodes {
		if n.Type == "n8n-nodes-base.webhook" {
			return n.Name, nil
		}
	}
	msg := out.Error
	if msg == "" {
		msg = "the workflow has no Webhook trigger node"
	}
	return "", &ToolError{Workflow: workflow, Tool: "get_workflow_details", Message: msg}
}

// Execution returns execution id of workflowID through the MCP server
// (get_workflow_execution), with its run data when withData: the await
// stage's source when no API key is configured.
func (t *Transport) Execution(ctx context.Context, workflowID, id string, withData bool) (*n8napi.Execution, error) {
	var out struct {
		Execution *n8napi.Execution     `json:"execution"`
		Data      *n8napi.ExecutionData `json:"data"`
		Error     string                `json:"error"`
	}
	args := map[string]any{"workflowId": workflowID, "executionId": id}
	if withData {
		args["includeData"] = true
	}
	if err := t.callTool(ctx, "", "get_workflow_execution", args, &out); err != nil {
		return nil, err
	}
	if out.Execution == nil {
		return nil, &ToolError{Tool: "get_workflow_execution", Message: out.Error}
	}
	out.Execution.Data = out.Data
	return out.Execution, nil
}

// wait holds a request for the own limiter and a 429's reset.
func (t *Transport) wait(ctx context.Context, workflow string) error {
	t.mu.Lock()
	held := time.Until(t.heldTill)
	t.mu.Unlock()
	if held > 0 {
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < held {
			return &invocation.HTTPError{Workflow: workflow, Method: http.MethodPost, URL: t.endpoint, StatusCode: http.StatusTooManyRequests,
				Message: "held by the MCP server's last 429 (not sent)", ErrClass: invocation.Transient, RetryAfter: held, HasRetryAfter: true}
		}
		if err := invocation.Sleep(ctx, held); err != nil {
			return err
		}
	}
	if t.limiter == nil {
		return nil
	}
	r := t.limiter.Reserve()
	d := r.Delay()
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		r.Cancel()
		return &invocation.HTTPError{Workflow: workflow, Method: http.MethodPost, URL: t.endpoint, StatusCode: http.StatusTooManyRequests,
			Message: "the MCP rate limit of this process (not sent)", ErrClass: invocation.Transient, RetryAfter: d, HasRetryAfter: true}
	}
	if err := invocation.Sleep(ctx, d); err != nil {
		r.Cancel()
		return err
	}
	return nil
}

// callTool sends tools/call name(args) and decodes its structured
// content into out. After a 401 a reloadable token is reloaded and the
// call made once more.
func (t *Transport) callTool(ctx context.Context, workflow, name string, args, out any) error {
	params := map[string]any{"name": name, "arguments": args}
	res, err := t.rpc(ctx, workflow, "tools/call", params)
	var he *invocation.HTTPError
	if errors.As(err, &he) && he.StatusCode == http.StatusUnauthorized {
		if r, ok := t.token.(secret.Reloader); ok {
			if changed, rerr := r.Reload(ctx); rerr == nil && changed {
				res, err = t.rpc(ctx, workflow, "tools/call", params)
			}
		}
	}
	if err != nil {
		return err
	}
	var tr struct {
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
		Structured json.RawMessage `json:"structuredContent"`
		IsError    bool            `json:"isError"`
	}
	if err := json.Unmarshal(res, &tr); err != nil {
		return &invocation.ResponseError{Workflow: workflow, StatusCode: 200, Reason: "an MCP tool result that is not an object", Err: err}
	}
	if tr.IsError {
		msg := ""
		if len(tr.Content) > 0 {
			msg = tr.Content[0].Text
		}
		return &ToolError{Workflow: workflow, Tool: name, Message: msg, Invalid: true}
	}
	body := tr.Structured
	if len(body) == 0 && len(tr.Content) > 0 {
		body = json.RawMessage(tr.Content[0].Text)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return &invocation.ResponseError{Workflow: workflow, StatusCode: 200, Reason: "an MCP tool result that is not the expected JSON", Err: err}
	}
	return nil
}

// rpc sends one JSON-RPC request and returns its result.
func (t *Transport) rpc(ctx context.Context, workflow, method string, params any) (json.RawMessage, error) {
	if err := t.wait(ctx, workflow); err != nil {
		return nil, err
	}
	id := t.nextID.Add(1)
	payload, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	if err != nil {
		return nil, err
	}
	token, err := t.token.Secret(ctx)
	if err != nil {
		return nil, &invocation.TransportError{Workflow: workflow, Method: http.MethodPost, URL: t.endpoint, ErrClass: invocation.Permanent, Err: fmt.Errorf("MCP token: %w", err)}
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, t.endpoint, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Authorization", "Bearer "+token.Reveal())
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json, text/event-stream")
	var wrote atomic.Bool
	hreq.Body = &sentReader{r: bytes.NewReader(payload), sent: &wrote}
	hreq.GetBody = nil
	resp, err := t.hc.Do(hreq)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		timedOut := errors.Is(err, context.DeadlineExceeded) || isTimeout(err)
		return nil, &invocation.TransportError{Workflow: workflow, Method: http.MethodPost, URL: t.endpoint, ErrClass: invocation.Transient,
			TimedOut: timedOut, Sent: wrote.Load(), Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, t.maxBody+1))
	if err != nil {
		return nil, &invocation.TransportError{Workflow: workflow, Method: http.MethodPost, URL: t.endpoint, ErrClass: invocation.Transient, Sent: true, Err: err}
	}
	if int64(len(b)) > t.maxBody {
		return nil, &invocation.ResponseError{Workflow: workflow, StatusCode: resp.StatusCode, Reason: fmt.Sprintf("an MCP answer over %d bytes", t.maxBody)}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, t.httpError(workflow, resp, b)
	}
	msg := b
	if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "text/event-stream") {
		if msg, err = sseMessage(b, id); err != nil {
			return nil, &invocation.ResponseError{Workflow: workflow, StatusCode: resp.StatusCode, Reason: "an MCP event stream without the answer", Err: err}
		}
	}
	var rr struct {
		ID     json.RawMessage `json:"id"`
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg, &rr); err != nil {
		return nil, &invocation.ResponseError{Workflow: workflow, StatusCode: resp.StatusCode, Reason: "an MCP answer that is not JSON-RPC", Err: err}
	}
	if rr.Error != nil {
		return nil, rpcError(workflow, rr.Error.Code, rr.Error.Message)
	}
	if len(rr.Result) == 0 {
		return nil, &invocation.ResponseError{Workflow: workflow, StatusCode: resp.StatusCode, Reason: "an MCP answer without a result"}
	}
	return rr.Result, nil
}

// httpError classifies an answer before JSON-RPC: 401 (token), 404 (MCP
// off), 406, 429 (rate limit: held until its reset), 5xx.
func (t *Transport) httpError(workflow string, resp *http.Response, b []byte) error {
	e := &invocation.HTTPError{Workflow: workflow, Method: http.MethodPost, URL: t.endpoint, StatusCode: resp.StatusCode,
		Message: invocation.MessageOf(b), Header: resp.Header.Clone(), ErrClass: invocation.Permanent}
	if len(b) > 4096 {
		b = b[:4096]
	}
	e.Body = b
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		e.ErrClass = invocation.Transient
		now := time.Now()
		e.RetryAfter, e.HasRetryAfter = invocation.ParseRetryAfter(resp.Header.Get("Retry-After"), now)
		if !e.HasRetryAfter {
			if rl := resetOf(resp.Header, now); rl > 0 {
				e.RetryAfter, e.HasRetryAfter = rl, true
			}
		}
		if e.HasRetryAfter {
			// The error keeps the server's wait (the retry policy fails
			// fast past its cap); the hold on every request is capped.
			t.mu.Lock()
			if till := now.Add(min(e.RetryAfter, t.maxHold)); till.After(t.heldTill) {
				t.heldTill = till
			}
			t.mu.Unlock()
		}
	case resp.StatusCode == http.StatusServiceUnavailable && e.AnswerCode() == invocation.CodeUnavailable:
		e.ErrClass = invocation.Transient
	case resp.StatusCode >= 500:
		// Any other 5xx may come after the workflow ran (a 500 of the
		// server, a proxy's 502, 504 or 520): its outcome is ambiguous,
		// reconciled before any re-send (invocation.HTTPError.AnswerCode).
		e.ErrClass = invocation.Unknown
	}
	return e
}

func resetOf(h http.Header, now time.Time) time.Duration {
	var secs float64
	if _, err := fmt.Sscan(h.Get("X-RateLimit-Reset"), &secs); err != nil || secs <= 0 {
		return 0
	}
	if secs > 1e8 {
		return max(0, time.Unix(int64(secs), 0).Sub(now))
	}
	return time.Duration(secs * float64(time.Second))
}

// sseMessage returns the data of the event stream's message that answers
// id (n8n sends exactly one).
func sseMessage(b []byte, id int64) ([]byte, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), len(b)+1)
	var data bytes.Buffer
	flush := func() []byte {
		if data.Len() == 0 {
			return nil
		}
		d := append([]byte(nil), data.Bytes()...)
		data.Reset()
		var probe struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(d, &probe) == nil && string(probe.ID) == fmt.Sprint(id) {
			return d
		}
		return nil
	}
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if d := flush(); d != nil {
				return d, nil
			}
			continue
		}
		if v, ok := strings.CutPrefix(line, "data:"); ok {
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(v, " "))
		}
	}
	if d := flush(); d != nil {
		return d, nil
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, errors.New("no message with the request's id")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// sentReader records that the body was read by the connection: from
// then on a lost answer is ambiguous.
type sentReader struct {
	r    *bytes.Reader
	sent *atomic.Bool
}

func (s *sentReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 || err == io.EOF {
		s.sent.Store(true)
	}
	return n, err
}

func (s *sentReader) Close() error { return nil }

// errAttemptTimeout is the cause of an attempt's own timeout.
var errAttemptTimeout = errors.New("attempt timeout")

// attemptTimedOut turns the error of an attempt its own timeout ended
// into a timeout that is not the caller's cancellation (a context error
// would read as one: not retried, not reconciled, not dead-lettered): a
// transport failure that may have run when the request was sent.
func attemptTimedOut(err error, timeout time.Duration) error {
	var te *invocation.TransportError
	if errors.As(err, &te) && errors.Is(te.Err, context.DeadlineExceeded) {
		e := *te
		e.TimedOut, e.Err = true, fmt.Errorf("attempt timed out after %s", timeout)
		return &e
	}
	return err
}
