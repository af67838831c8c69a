package config

import (
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/n8n-invoker/n8n-invoker/secret"
)

// Defaults of the configuration, applied to keys the file leaves out.
const (
	DefaultTimeout          = 30 * time.Second
	DefaultMaxRetries       = 3
	DefaultBackoffFactor    = 2.0
	DefaultPoolConnections  = 10
	DefaultPoolMaxSize      = 20
	DefaultMaxResponseBytes = 16 << 20
	DefaultTracingBackend   = "opentelemetry"
	DefaultSampleRate       = 1.0
	DefaultMethod           = "POST"
	DefaultResponseMode     = ResponseModeLastNode
	DefaultMultiplier       = 2.0
	DefaultMaxDelay         = 60 * time.Second
	DefaultMaxRetryAfter    = 60 * time.Second
	DefaultBudgetCapacity   = 500
	DefaultRetryCost        = 5
	DefaultTimeoutCost      = 10
	DefaultConsecutiveFails = 5
	DefaultFailureRate      = 0.5
	DefaultBreakerWindow    = 60 * time.Second
	DefaultMinCalls         = 10
	DefaultOpenTimeout      = 30 * time.Second
	DefaultHalfOpenProbes   = 1
	DefaultHookTimeout      = 5 * time.Second
)

// Response modes of an n8n webhook node.
const (
	ResponseModeOnReceived   = "onReceived"
	ResponseModeLastNode     = "lastNode"
	ResponseModeResponseNode = "responseNode"
)

// Auth types of a workflow's webhook.
const (
	AuthNone   = "none"
	AuthHeader = "header"
	AuthBasic  = "basic"
	// AuthHMAC signs each request: X-Invoker-Timestamp and
	// X-Invoker-Signature: v1=hex(HMAC-SHA256(secret, timestamp "." body)).
	AuthHMAC = "hmac"
	// AuthJWT sends n8n's JWT webhook auth: Authorization: Bearer <an HS256
	// token made per request with the secret, valid 60 s>.
	AuthJWT = "jwt"
)

// Config is the whole configuration. Start from Default (or Load a file):
// a zero Config leaves MaxRetries and BackoffFactor at zero, which means
// no retries.
type Config struct {
	N8N       N8N                 `yaml:"n8n"`
	Invokers  Invokers            `yaml:"invokers"`
	Tracing   Tracing             `yaml:"tracing"`
	Hooks     Hooks               `yaml:"hooks"`
	Workflows map[string]Workflow `yaml:"workflows"`
	// Credentials gives the secrets of webhook credentials by their n8n
	// name, for workflows run by id whose webhook uses header or basic
	// auth (n8n's API never returns credential secrets).
	Credentials map[string]Auth `yaml:"credentials"`
	// DLQ configures the dead-letter queue and idempotency journal.
	DLQ DLQ `yaml:"dlq"`

	file string
	pos  map[string]Position
}

// N8N is the n8n instance to talk to.
type N8N struct {
	// BaseURL is the instance's URL, e.g. https://n8n.example.com; webhooks
	// are served under BaseURL/webhook/.
	BaseURL string `yaml:"base_url"`
	// APIKey is the public API key (header X-N8N-API-KEY).
	APIKey secret.Secret `yaml:"api_key"`
	// Timeout bounds one attempt. Zero means DefaultTimeout.
	Timeout Duration `yaml:"timeout"`
	// APIKeyFile reads the API key from a file (a container or Kubernetes
	// secret) instead of api_key, and again whenever the file changes.
	APIKeyFile string `yaml:"api_key_file"`
	// TLS configures the connection to n8n.
	TLS TLS `yaml:"tls"`
}

// TLS configures TLS to n8n. Verification is always on unless
// InsecureSkipVerify, which logs a warning at start.
type TLS struct {
	// CAFile is a PEM bundle of CAs to trust, added to the system's.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate (mTLS).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// MinVersion is 1.2 (default) or 1.3.
	MinVersion string `yaml:"min_version"`
	// ServerName overrides the name verified in n8n's certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify turns verification off. Never in production.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// DLQ configures the durable dead-letter queue.
type DLQ struct {
	// Enabled turns on the write-ahead journal and the queue (default
	// false).
	Enabled bool `yaml:"enabled"`
	// Backend is sqlite, the only one so far.
	Backend string `yaml:"backend"`
	// Path of the SQLite file; empty means
	// $XDG_STATE_HOME/n8n-invoker/dlq.db (~/.local/state/n8n-invoker/dlq.db).
	// A relative path is relative to the configuration file.
	Path string `yaml:"path"`
	// Retention is how long succeeded idempotency keys are remembered
	// (default 7 days).
	Retention Duration `yaml:"retention"`
	// On lists the error classes that go to the queue (default transient
	// and unknown; add permanent to keep workflow failures too).
	On []string `yaml:"on"`
	// Sync is full (default: durable across power loss) or normal
	// (durable across process crashes, faster).
	Sync string `yaml:"sync"`
}

// Invokers configures the transports.
type Invokers struct {
	HTTP HTTP `yaml:"http"`
}

// HTTP configures the webhook invoker.
type HTTP struct {
	// MaxRetries is the number of retries after the first attempt.
	MaxRetries int `yaml:"max_retries"`
	// BackoffFactor sets the delay before retry n to at most
	// BackoffFactor * 2^(n-1) seconds (full jitter), capped at 60 s.
	BackoffFactor float64 `yaml:"backoff_factor"`
	// PoolConnections is the number of hosts whose idle connections are
	// kept; with PoolMaxSize it sets the transport's MaxIdleConns.
	// Zero means DefaultPoolConnections.
	PoolConnections int `yaml:"pool_connections"`
	// PoolMaxSize is the number of idle connections kept per host
	// (MaxIdleConnsPerHost). Zero means DefaultPoolMaxSize.
	PoolMaxSize int `yaml:"pool_maxsize"`
	// MaxResponseBytes limits a response body. Zero means
	// DefaultMaxResponseBytes.
	MaxResponseBytes int64 `yaml:"max_response_bytes"`
	// Retry refines the retry policy beyond max_retries and backoff_factor.
	Retry Retry `yaml:"retry"`
	// CircuitBreaker configures one breaker per workflow endpoint.
	CircuitBreaker CircuitBreaker `yaml:"circuit_breaker"`
	// RateLimit keeps calls to n8n under a rate.
	RateLimit RateLimit `yaml:"rate_limit"`
	// Bulkhead bounds the calls in flight per workflow.
	Bulkhead Bulkhead `yaml:"bulkhead"`
}

// Retry refines the retry policy.
type Retry struct {
	// Multiplier grows the backoff cap per retry (default 2).
	Multiplier float64 `yaml:"multiplier"`
	// MaxDelay caps one backoff (default 60 s).
	MaxDelay Duration `yaml:"max_delay"`
	// MaxElapsed bounds an invocation with its retries (default 0: none).
	MaxElapsed Duration `yaml:"max_elapsed"`
	// MaxRetryAfter is the longest Retry-After honoured (default 60 s);
	// a longer one fails fast with a RetryAfterError.
	MaxRetryAfter Duration `yaml:"max_retry_after"`
	// Budget is the client-wide retry budget.
	Budget Budget `yaml:"budget"`
}

// Budget is the client-wide retry budget (a token bucket).
type Budget struct {
	Enabled bool `yaml:"enabled"`
	// Capacity is the bucket's size (default 500).
	Capacity int `yaml:"capacity"`
	// RetryCost is taken per retry (default 5), TimeoutCost per retry
	// after a timeout (default 10); a success gives back 1.
	RetryCost   int `yaml:"retry_cost"`
	TimeoutCost int `yaml:"timeout_cost"`
}

// CircuitBreaker configures the breakers.
type CircuitBreaker struct {
	Enabled bool `yaml:"enabled"`
	// ConsecutiveFailures trips after that many failures in a row
	// (default 5).
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// FailureRate trips when failures reach this share (0..1, default 0.5)
	// of at least MinCalls calls (default 10) within Window (default 60 s).
	FailureRate float64  `yaml:"failure_rate"`
	Window      Duration `yaml:"window"`
	MinCalls    int      `yaml:"min_calls"`
	// OpenTimeout is how long it stays open before probing (default 30 s).
	OpenTimeout Duration `yaml:"open_timeout"`
	// HalfOpenProbes is the number of probes (default 1).
	HalfOpenProbes int `yaml:"half_open_probes"`
}

// RateLimit keeps calls under a rate; it also backs off on 429.
type RateLimit struct {
	Enabled           bool    `yaml:"enabled"`
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	// Burst is the bucket size (default: requests_per_second, at least 1).
	Burst int `yaml:"burst"`
}

// Bulkhead bounds the calls in flight per workflow.
type Bulkhead struct {
	// MaxInFlight per workflow; 0 means no bound.
	MaxInFlight int `yaml:"max_in_flight"`
	// MaxWait is how long a call waits for a slot before failing with a
	// BulkheadError (default 0: as long as its context allows).
	MaxWait Duration `yaml:"max_wait"`
}

// Tracing configures OpenTelemetry tracing.
type Tracing struct {
	Enabled    bool    `yaml:"enabled"`
	Backend    string  `yaml:"backend"`
	SampleRate float64 `yaml:"sample_rate"`
}

// Hooks names the hooks to run at each stage.
type Hooks struct {
	PreExecution  []HookRef `yaml:"pre_execution"`
	PostExecution []HookRef `yaml:"post_execution"`
	Error         []HookRef `yaml:"error"`
	// Timeout bounds one hook call (default 5 s); a hook that takes longer
	// is reported and no longer waited for.
	Timeout Duration `yaml:"timeout"`
	// Notification configures notification_hook.
	Notification Notification `yaml:"notification"`
}

// Notification is where notification_hook posts failures.
type Notification struct {
	// URL is a Slack-compatible incoming webhook or any URL taking a JSON
	// POST. It is a secret: such URLs carry their token.
	URL secret.Secret `yaml:"url"`
	// Format is slack ({"text": ...}, default) or json (the full record).
	Format string `yaml:"format"`
	// Timeout bounds one post (default 5 s).
	Timeout Duration `yaml:"timeout"`
}

// HookRef is a hook named in the file, with where it was named.
type HookRef struct {
	Name string
	Pos  Position
}

// Workflow maps a workflow name to its n8n webhook.
type Workflow struct {
	// Path is the webhook node's path, e.g. "user-onboarding"; it is served
	// at BaseURL/webhook/<path>.
	Path string `yaml:"path"`
	// Method is the webhook's HTTP method. Empty means POST.
	Method string `yaml:"method"`
	// ResponseMode is the webhook node's response mode. Empty means
	// lastNode.
	ResponseMode string `yaml:"response_mode"`
	// Timeout overrides N8N.Timeout for this workflow when not zero.
	Timeout Duration `yaml:"timeout"`
	// Auth is the webhook's authentication.
	Auth Auth `yaml:"auth"`
	// ID is the n8n workflow id, optional: it spares a lookup when an
	// execution is tracked through the API.
	ID string `yaml:"id"`
	// Pack sends batches of this workflow many items per call (the
	// workflow must be built for it: see templates/packed-items.json).
	Pack Pack `yaml:"pack"`
}

// Pack configures item packing for a workflow; zero values mean the
// defaults (200 items, 8 MiB, 2 packs in flight).
type Pack struct {
	Enabled  bool `yaml:"enabled"`
	MaxItems int  `yaml:"max_items"`
	MaxBytes int  `yaml:"max_bytes"`
	InFlight int  `yaml:"in_flight"`
}

// Auth is a webhook's authentication.
type Auth struct {
	// Type is none, header or basic. Empty means none.
	Type string `yaml:"type"`
	// Name is the header name for header auth.
	Name string `yaml:"name"`
	// Value is the header value for header auth.
	Value secret.Secret `yaml:"value"`
	// Username is the user for basic auth.
	Username string `yaml:"username"`
	// Password is the password for basic auth.
	Password secret.Secret `yaml:"password"`
	// Secret is the key of hmac and jwt auth.
	Secret secret.Secret `yaml:"secret"`
}

// Duration is a time.Duration read from YAML as seconds (30, 1.5) or as a
// Go duration string ("30s", "1m").
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Position is a place in a configuration file.
type Position struct {
	File   string
	Line   int
	Column int
}

// String returns the position as file:line:column.
func (p Position) String() string {
	switch {
	case p.File == "":
		return fmt.Sprintf("line %d", p.Line)
	case p.Line == 0:
		return p.File
	case p.Column == 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
}

// Error is a configuration error at a place in the file.
type Error struct {
	Pos Position
	// Field is the dotted path of the field, e.g. invokers.http.max_retries.
	Field string
	Msg   string
}

// Error returns the message.
func (e *Error) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", e.Pos, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.Pos, e.Field, e.Msg)
}

// Default returns the configuration with every default filled in and no
// base URL.
func Default() *Config {
	return &Config{
		N8N: N8N{Timeout: Duration(DefaultTimeout)},
		Invokers: Invokers{HTTP: HTTP{
			MaxRetries:       DefaultMaxRetries,
			BackoffFactor:    DefaultBackoffFactor,
			PoolConnections:  DefaultPoolConnections,
			PoolMaxSize:      DefaultPoolMaxSize,
			MaxResponseBytes: DefaultMaxResponseBytes,
			Retry: Retry{
				Multiplier: DefaultMultiplier, MaxDelay: Duration(DefaultMaxDelay), MaxRetryAfter: Duration(DefaultMaxRetryAfter),
				Budget: Budget{Enabled: true, Capacity: DefaultBudgetCapacity, RetryCost: DefaultRetryCost, TimeoutCost: DefaultTimeoutCost},
			},
			CircuitBreaker: CircuitBreaker{
				Enabled: true, ConsecutiveFailures: DefaultConsecutiveFails, FailureRate: DefaultFailureRate,
				Window: Duration(DefaultBreakerWindow), MinCalls: DefaultMinCalls, OpenTimeout: Duration(DefaultOpenTimeout),
				HalfOpenProbes: DefaultHalfOpenProbes,
			},
		}},
		Tracing: Tracing{Backend: DefaultTracingBackend, SampleRate: DefaultSampleRate},
	}
}

// File returns the path the configuration was loaded from, if any.
func (c *Config) File() string { return c.file }

// PositionOf returns where field (a dotted path such as
// "workflows.user-onboarding.path") was set; for a field the file leaves
// out, where its nearest parent was set; else the file alone.
func (c *Config) PositionOf(field string) Position {
	for f := field; f != ""; {
		if p, ok := c.pos[f]; ok {
			return p
		}
		i := strings.LastIndexByte(f, '.')
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return Position{File: c.file}
}

// WorkflowNames returns the configured workflow names, sorted.
func (c *Config) WorkflowNames() []string {
	names := make([]string, 0, len(c.Workflows))
	for n := range c.Workflows {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (c *Config) errorf(field, format string, args ...any) *Error {
	return &Error{Pos: c.PositionOf(field), Field: field, Msg: fmt.Sprintf(format, args...)}
}

var validMethods = map[string]bool{"GET": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "HEAD": true}

// Validate fills in the defaults for zero values that have no meaning of
// their own (timeouts, pool sizes, methods, modes) and checks every value.
// It returns all problems found, joined, each an *Error.
func (c *Config) Validate() error {
	var errs []error
	add := func(e *Error) { errs = append(errs, e) }

	if c.N8N.BaseURL == "" {
		add(c.errorf("n8n.base_url", "is required"))
	} else if u, err := url.Parse(c.N8N.BaseURL); err != nil {
		add(c.errorf("n8n.base_url", "invalid URL: %v", err))
	} else if u.Scheme != "http" && u.Scheme != "https" {
		add(c.errorf("n8n.base_url", "must start with http:// or https://, got %q", c.N8N.BaseURL))
	} else if u.Host == "" {
		add(c.errorf("n8n.base_url", "has no host: %q", c.N8N.BaseURL))
	} else if u.User != nil {
		add(c.errorf("n8n.base_url", "must not carry credentials; use n8n.api_key or a workflow's auth"))
	} else if u.RawQuery != "" || u.Fragment != "" {
		add(c.errorf("n8n.base_url", "must not have a query or fragment"))
	}
	c.validateTLS(add)
	switch {
	case c.N8N.Timeout < 0:
		add(c.errorf("n8n.timeout", "must be positive, got %s", c.N8N.Timeout.D()))
	case c.N8N.Timeout == 0:
		c.N8N.Timeout = Duration(DefaultTimeout)
	}

	h := &c.Invokers.HTTP
	if h.MaxRetries < 0 || h.MaxRetries > 100 {
		add(c.errorf("invokers.http.max_retries", "must be between 0 and 100, got %d", h.MaxRetries))
	}
	if h.BackoffFactor < 0 || h.BackoffFactor > 3600 || math.IsNaN(h.BackoffFactor) {
		add(c.errorf("invokers.http.backoff_factor", "must be between 0 and 3600, got %v", h.BackoffFactor))
	}
	positive := func(field string, v *int, def int) {
		switch {
		case *v < 0:
			add(c.errorf(field, "must not be negative, got %d", *v))
		case *v == 0:
			*v = def
		}
	}
	positive("invokers.http.pool_connections", &h.PoolConnections, DefaultPoolConnections)
	positive("invokers.http.pool_maxsize", &h.PoolMaxSize, DefaultPoolMaxSize)
	switch {
	case h.MaxResponseBytes < 0:
		add(c.errorf("invokers.http.max_response_bytes", "must not be negative, got %d", h.MaxResponseBytes))
	case h.MaxResponseBytes == 0:
		h.MaxResponseBytes = DefaultMaxResponseBytes
	}

	c.validatePolicy(add)
	c.validateDLQ(add)

	t := &c.Tracing
	switch t.Backend {
	case "":
		t.Backend = DefaultTracingBackend
	case "opentelemetry", "none":
	default:
		add(c.errorf("tracing.backend", "must be opentelemetry or none, got %q", t.Backend))
	}
	if !(t.SampleRate >= 0 && t.SampleRate <= 1) {
		add(c.errorf("tracing.sample_rate", "must be between 0 and 1, got %v", t.SampleRate))
	}

	switch {
	case c.Hooks.Timeout < 0:
		add(c.errorf("hooks.timeout", "must not be negative, got %s", c.Hooks.Timeout.D()))
	case c.Hooks.Timeout == 0:
		c.Hooks.Timeout = Duration(DefaultHookTimeout)
	}
	n := &c.Hooks.Notification
	switch n.Format {
	case "":
		n.Format = "slack"
	case "slack", "json":
	default:
		add(c.errorf("hooks.notification.format", "must be slack or json, got %q", n.Format))
	}
	if n.Timeout <= 0 {
		n.Timeout = Duration(DefaultHookTimeout)
	}
	if !n.URL.IsZero() {
		if u, err := url.Parse(n.URL.Reveal()); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add(c.errorf("hooks.notification.url", "must be an http(s) URL"))
		}
	}
	for stage, refs := range map[string][]HookRef{
		"pre_execution": c.Hooks.PreExecution, "post_execution": c.Hooks.PostExecution, "error": c.Hooks.Error,
	} {
		for i, r := range refs {
			if strings.TrimSpace(r.Name) == "" {
				add(&Error{Pos: r.Pos, Field: fmt.Sprintf("hooks.%s[%d]", stage, i), Msg: "empty hook name"})
			}
		}
	}

	for name, a := range c.Credentials {
		f := "credentials." + name
		switch a.Type {
		case AuthHeader:
			if a.Name == "" || a.Value.IsZero() {
				add(c.errorf(f, "header auth needs name and value"))
			}
		case AuthBasic:
			if a.Username == "" || a.Password.IsZero() {
				add(c.errorf(f, "basic auth needs username and password"))
			}
		default:
			add(c.errorf(f+".type", "must be header or basic, got %q", a.Type))
		}
	}

	for _, name := range c.WorkflowNames() {
		w := c.Workflows[name]
		f := "workflows." + name
		if strings.TrimSpace(name) == "" {
			add(c.errorf(f, "workflow name must not be empty"))
		}
		w.Path = strings.TrimPrefix(w.Path, "/")
		switch {
		case w.Path == "":
			add(c.errorf(f+".path", "is required"))
		case strings.Contains(w.Path, "://") || strings.ContainsAny(w.Path, "?# "):
			add(c.errorf(f+".path", "must be the webhook node's path (no scheme, query or spaces), got %q", w.Path))
		}
		w.Method = strings.ToUpper(w.Method)
		if w.Method == "" {
			w.Method = DefaultMethod
		} else if !validMethods[w.Method] {
			add(c.errorf(f+".method", "must be one of GET, POST, PUT, PATCH, DELETE, HEAD, got %q", w.Method))
		}
		switch w.ResponseMode {
		case "":
			w.ResponseMode = DefaultResponseMode
		case ResponseModeOnReceived, ResponseModeLastNode, ResponseModeResponseNode:
		default:
			add(c.errorf(f+".response_mode", "must be onReceived, lastNode or responseNode, got %q", w.ResponseMode))
		}
		if w.Timeout < 0 {
			add(c.errorf(f+".timeout", "must be positive, got %s", w.Timeout.D()))
		}
		if w.Pack.MaxItems < 0 || w.Pack.MaxBytes < 0 || w.Pack.InFlight < 0 {
			add(c.errorf(f+".pack", "values must not be negative"))
		}
		if w.Pack.MaxBytes > 16<<20 {
			add(c.errorf(f+".pack.max_bytes", "must be at most 16 MiB (n8n's body limit), got %d", w.Pack.MaxBytes))
		}
		a := &w.Auth
		switch a.Type {
		case "", AuthNone:
			a.Type = AuthNone
		case AuthHeader:
			if a.Name == "" {
				add(c.errorf(f+".auth.name", "is required for header auth"))
			}
			if a.Value.IsZero() {
				add(c.errorf(f+".auth.value", "is required for header auth"))
			}
		case AuthBasic:
			if a.Username == "" {
				add(c.errorf(f+".auth.username", "is required for basic auth"))
			}
			if a.Password.IsZero() {
				add(c.errorf(f+".auth.password", "is required for basic auth"))
			}
		case AuthHMAC, AuthJWT:
			if len(a.Secret.Reveal()) < 16 {
				add(c.errorf(f+".auth.secret", "%s auth needs a secret of at least 16 characters", a.Type))
			}
		default:
			add(c.errorf(f+".auth.type", "must be none, header, basic, hmac or jwt, got %q", a.Type))
		}
		c.Workflows[name] = w
	}
	return joinErrors(errs)
}

// joinErrors returns nil, the one error, or all of them sorted by line.
func joinErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i].(*Error), errs[j].(*Error)
		return a.Pos.Line < b.Pos.Line
	})
	return &Errors{List: errs}
}

// Errors is several configuration errors, each an *Error.
type Errors struct{ List []error }

// Error returns the message.
func (e *Errors) Error() string {
	msgs := make([]string, len(e.List))
	for i, err := range e.List {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap returns the errors, so errors.As finds each *Error.
func (e *Errors) Unwrap() []error { return e.List }

// parseDuration reads seconds or a Go duration string.
func parseDuration(s string) (Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e9 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want seconds (30) or a duration (\"30s\"), got %q", s)
	}
	return Duration(d), nil
}

// validatePolicy checks the retry, breaker, rate-limit and bulkhead
// sections, filling in defaults for zeros that have no meaning of their
// own.
func (c *Config) validatePolicy(add func(*Error)) {
	h := &c.Invokers.HTTP
	const p = "invokers.http."
	r := &h.Retry
	if r.Multiplier == 0 {
		r.Multiplier = DefaultMultiplier
	} else if !(r.Multiplier >= 1 && r.Multiplier <= 100) {
		add(c.errorf(p+"retry.multiplier", "must be between 1 and 100, got %v", r.Multiplier))
	}
	durations := []struct {
		field string
		d     *Duration
		def   time.Duration
	}{
		{p + "retry.max_delay", &r.MaxDelay, DefaultMaxDelay},
		{p + "retry.max_elapsed", &r.MaxElapsed, 0},
		{p + "retry.max_retry_after", &r.MaxRetryAfter, DefaultMaxRetryAfter},
		{p + "circuit_breaker.window", &h.CircuitBreaker.Window, DefaultBreakerWindow},
		{p + "circuit_breaker.open_timeout", &h.CircuitBreaker.OpenTimeout, DefaultOpenTimeout},
		{p + "bulkhead.max_wait", &h.Bulkhead.MaxWait, 0},
	}
	for _, d := range durations {
		switch {
		case *d.d < 0:
			add(c.errorf(d.field, "must not be negative, got %s", d.d.D()))
		case *d.d == 0:
			*d.d = Duration(d.def)
		}
	}
	counts := []struct {
		field string
		v     *int
		def   int
	}{
		{p + "retry.budget.capacity", &r.Budget.Capacity, DefaultBudgetCapacity},
		{p + "retry.budget.retry_cost", &r.Budget.RetryCost, DefaultRetryCost},
		{p + "retry.budget.timeout_cost", &r.Budget.TimeoutCost, DefaultTimeoutCost},
		{p + "circuit_breaker.consecutive_failures", &h.CircuitBreaker.ConsecutiveFailures, DefaultConsecutiveFails},
		{p + "circuit_breaker.min_calls", &h.CircuitBreaker.MinCalls, DefaultMinCalls},
		{p + "circuit_breaker.half_open_probes", &h.CircuitBreaker.HalfOpenProbes, DefaultHalfOpenProbes},
		{p + "rate_limit.burst", &h.RateLimit.Burst, 0},
		{p + "bulkhead.max_in_flight", &h.Bulkhead.MaxInFlight, 0},
	}
	for _, n := range counts {
		switch {
		case *n.v < 0:
			add(c.errorf(n.field, "must not be negative, got %d", *n.v))
		case *n.v == 0:
			*n.v = n.def
		}
	}
	cb := &h.CircuitBreaker
	if cb.FailureRate == 0 {
		cb.FailureRate = DefaultFailureRate
	} else if !(cb.FailureRate > 0 && cb.FailureRate <= 1) {
		add(c.errorf(p+"circuit_breaker.failure_rate", "must be in (0, 1], got %v", cb.FailureRate))
	}
	rl := &h.RateLimit
	if rl.Enabled && !(rl.RequestsPerSecond > 0 && rl.RequestsPerSecond <= 1e6) {
		add(c.errorf(p+"rate_limit.requests_per_second", "must be positive when rate_limit is enabled, got %v", rl.RequestsPerSecond))
	}
}

// Default DLQ settings.
const DefaultDLQRetention = 7 * 24 * time.Hour

func (c *Config) validateDLQ(add func(*Error)) {
	d := &c.DLQ
	switch d.Backend {
	case "":
		d.Backend = "sqlite"
	case "sqlite":
	default:
		add(c.errorf("dlq.backend", "must be sqlite, got %q", d.Backend))
	}
	switch {
	case d.Retention < 0:
		add(c.errorf("dlq.retention", "must not be negative, got %s", d.Retention.D()))
	case d.Retention == 0:
		d.Retention = Duration(DefaultDLQRetention)
	}
	switch d.Sync {
	case "":
		d.Sync = "full"
	case "full", "normal":
	default:
		add(c.errorf("dlq.sync", "must be full or normal, got %q", d.Sync))
	}
	if d.On == nil {
		d.On = []string{"transient", "unknown"}
	}
	for i, cl := range d.On {
		if cl != "transient" && cl != "unknown" && cl != "permanent" {
			add(c.errorf(fmt.Sprintf("dlq.on[%d]", i), "must be transient, unknown or permanent, got %q", cl))
		}
	}
	if d.Path != "" && !filepath.IsAbs(d.Path) && c.file != "" {
		d.Path = filepath.Join(filepath.Dir(c.file), d.Path)
	}
}

// SecretValues returns every secret value in the configuration (API key,
// webhook and credential secrets), for log redaction backstops.
func (c *Config) SecretValues() []string {
	var out []string
	add := func(s secret.Secret) {
		if !s.IsZero() {
			out = append(out, s.Reveal())
		}
	}
	add(c.N8N.APIKey)
	add(c.Hooks.Notification.URL)
	for _, w := range c.Workflows {
		add(w.Auth.Value)
		add(w.Auth.Password)
		add(w.Auth.Secret)
	}
	for _, a := range c.Credentials {
		add(a.Value)
		add(a.Password)
	}
	return out
}

func (c *Config) validateTLS(add func(*Error)) {
	t := &c.N8N.TLS
	rel := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) && c.file != "" {
			*p = filepath.Join(filepath.Dir(c.file), *p)
		}
	}
	rel(&t.CAFile)
	rel(&t.CertFile)
	rel(&t.KeyFile)
	rel(&c.N8N.APIKeyFile)
	switch t.MinVersion {
	case "":
		t.MinVersion = "1.2"
	case "1.2", "1.3":
	default:
		add(c.errorf("n8n.tls.min_version", "must be 1.2 or 1.3, got %q", t.MinVersion))
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		add(c.errorf("n8n.tls", "cert_file and key_file go together"))
	}
	for f, p := range map[string]string{"n8n.tls.ca_file": t.CAFile, "n8n.tls.cert_file": t.CertFile, "n8n.tls.key_file": t.KeyFile, "n8n.api_key_file": c.N8N.APIKeyFile} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			add(c.errorf(f, "%v", err))
		}
	}
	if c.N8N.APIKeyFile != "" && !c.N8N.APIKey.IsZero() {
		add(c.errorf("n8n.api_key_file", "set api_key or api_key_file, not both"))
	}
}
