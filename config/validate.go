package config

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/policy"
)

// Validate fills in the defaults of the values the file leaves zero
// (applyDefaults), then checks every section (each validates itself). It
// returns all problems found, joined, each an *Error with the file, line
// and field.
func (c *Config) Validate() error {
	c.applyDefaults()
	v := &validator{c: c}
	c.N8N.validate(v)
	c.Invokers.HTTP.validate(v)
	c.Invokers.MCP.validate(v)
	c.Tracing.validate(v)
	c.Hooks.validate(v)
	for name, a := range c.Credentials {
		a.validateCredential(v, "credentials."+name)
	}
	for _, name := range c.WorkflowNames() {
		w := c.Workflows[name]
		w.validate(v, name)
	}
	c.Store.validate(v)
	c.RateLimit.validate(v)
	c.Queue.validate(v, c.N8N.Timeout)
	c.DLQ.validate(v)
	return joinErrors(v.errs)
}

// validator collects the errors of one Validate.
type validator struct {
	c    *Config
	errs []error
}

func (v *validator) errorf(field, format string, args ...any) {
	v.errs = append(v.errs, v.c.errorf(field, format, args...))
}

func (v *validator) notNegative(field string, n int) {
	if n < 0 {
		v.errorf(field, "must not be negative, got %d", n)
	}
}

func (v *validator) notNegativeDuration(field string, d Duration) {
	if d < 0 {
		v.errorf(field, "must not be negative, got %s", d.D())
	}
}

// applyDefaults sets the default of every value left zero that has no
// meaning of its own, from Default, and makes relative paths relative to
// the file.
func (c *Config) applyDefaults() {
	def := Default()
	rel := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) && c.file != "" {
			*p = filepath.Join(filepath.Dir(c.file), *p)
		}
	}
	n := &c.N8N
	setDuration(&n.Timeout, def.N8N.Timeout)
	setDuration(&n.ExecutionRetention.MaxAge, def.N8N.ExecutionRetention.MaxAge)
	if n.ExecutionRetention.MaxCount == 0 {
		n.ExecutionRetention.MaxCount = def.N8N.ExecutionRetention.MaxCount
	}
	setString(&n.TLS.MinVersion, def.N8N.TLS.MinVersion)
	rel(&n.TLS.CAFile)
	rel(&n.TLS.CertFile)
	rel(&n.TLS.KeyFile)
	rel(&n.APIKeyFile)

	h, dh := &c.Invokers.HTTP, &def.Invokers.HTTP
	setInt(&h.PoolConnections, dh.PoolConnections)
	setInt(&h.PoolMaxSize, dh.PoolMaxSize)
	if h.MaxResponseBytes == 0 {
		h.MaxResponseBytes = dh.MaxResponseBytes
	}
	setDuration(&h.ReconcileTimeout, dh.ReconcileTimeout)
	r, dr := &h.Retry, &dh.Retry
	setFloat(&r.Multiplier, dr.Multiplier)
	setDuration(&r.MaxDelay, dr.MaxDelay)
	setDuration(&r.MaxRetryAfter, dr.MaxRetryAfter)
	setInt(&r.Budget.Capacity, dr.Budget.Capacity)
	setInt(&r.Budget.RetryCost, dr.Budget.RetryCost)
	setInt(&r.Budget.TimeoutCost, dr.Budget.TimeoutCost)
	mc, dmc := &c.Invokers.MCP, &def.Invokers.MCP
	setInt(&mc.RateLimit.Requests, dmc.RateLimit.Requests)
	setDuration(&mc.RateLimit.Per, dmc.RateLimit.Per)
	setDuration(&mc.MaxRetryAfter, dmc.MaxRetryAfter)
	rel(&mc.TokenFile)
	cb, dcb := &h.CircuitBreaker, &dh.CircuitBreaker
	setInt(&cb.ConsecutiveFailures, dcb.ConsecutiveFailures)
	setInt(&cb.MinCalls, dcb.MinCalls)
	setInt(&cb.HalfOpenProbes, dcb.HalfOpenProbes)
	setDuration(&cb.Window, dcb.Window)
	setDuration(&cb.OpenTimeout, dcb.OpenTimeout)
	setDuration(&cb.MaxPause, dcb.MaxPause)
	setFloat(&cb.FailureRate, dcb.FailureRate)

	setString(&c.Tracing.Backend, def.Tracing.Backend)
	setDuration(&c.Hooks.Timeout, def.Hooks.Timeout)
	setString(&c.Hooks.Notification.Format, def.Hooks.Notification.Format)
	if c.Hooks.Notification.Timeout <= 0 {
		c.Hooks.Notification.Timeout = def.Hooks.Notification.Timeout
	}

	for name, w := range c.Workflows {
		w.Path = strings.TrimPrefix(w.Path, "/")
		w.Method = strings.ToUpper(w.Method)
		setString(&w.Method, DefaultMethod)
		setString(&w.ResponseMode, DefaultResponseMode)
		setString(&w.Auth.Type, AuthNone)
		if w.Auth.Type == AuthHMAC {
			setString(&w.Auth.HMACVersion, HMACVersionBoth)
		}
		setString(&w.Transport, TransportWebhook)
		c.Workflows[name] = w
	}

	setString(&c.Store.Backend, def.Store.Backend)
	setString(&c.Store.Sync, def.Store.Sync)
	setDuration(&c.Store.Lease, def.Store.Lease)
	if c.Store.HeldWait == 0 {
		// Long enough for the owner to decide in the worst case it waits
		// for itself: an attempt's timeout, then a reconcile's wait for
		// the execution (an n8n worker that died takes ~2 min to fail
		// its job), with a margin.
		c.Store.HeldWait = Duration(max(DefaultStoreHeldWait, n.Timeout.D()+h.ReconcileTimeout.D()+30*time.Second))
	}
	rel(&c.Store.Path)
	if c.Queue.JobTimeout == 0 {
		c.Queue.JobTimeout = Duration(max(DefaultQueueJobTimeout, n.Timeout.D()))
	}
	setDuration(&c.DLQ.Retention, def.DLQ.Retention)
	if c.DLQ.On == nil {
		c.DLQ.On = def.DLQ.On
	}
}

func setInt(v *int, def int) {
	if *v == 0 {
		*v = def
	}
}

func setDuration(d *Duration, def Duration) {
	if *d == 0 {
		*d = def
	}
}

func setFloat(v *float64, def float64) {
	if *v == 0 {
		*v = def
	}
}

func setString(v *string, def string) {
	if *v == "" {
		*v = def
	}
}

func (n *N8N) validate(v *validator) {
	if n.BaseURL == "" {
		v.errorf("n8n.base_url", "is required")
	} else if u, err := url.Parse(n.BaseURL); err != nil {
		v.errorf("n8n.base_url", "invalid URL: %v", err)
	} else if u.Scheme != "http" && u.Scheme != "https" {
		v.errorf("n8n.base_url", "must start with http:// or https://, got %q", n.BaseURL)
	} else if u.Host == "" {
		v.errorf("n8n.base_url", "has no host: %q", n.BaseURL)
	} else if u.User != nil {
		v.errorf("n8n.base_url", "must not carry credentials; use n8n.api_key or a workflow's auth")
	} else if u.RawQuery != "" || u.Fragment != "" {
		v.errorf("n8n.base_url", "must not have a query or fragment")
	}
	if n.Timeout < 0 {
		v.errorf("n8n.timeout", "must be positive, got %s", n.Timeout.D())
	}
	v.notNegativeDuration("n8n.execution_retention.max_age", n.ExecutionRetention.MaxAge)
	v.notNegative("n8n.execution_retention.max_count", n.ExecutionRetention.MaxCount)
	t := &n.TLS
	if t.MinVersion != "1.2" && t.MinVersion != "1.3" {
		v.errorf("n8n.tls.min_version", "must be 1.2 or 1.3, got %q", t.MinVersion)
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		v.errorf("n8n.tls", "cert_file and key_file go together")
	}
	for f, p := range map[string]string{"n8n.tls.ca_file": t.CAFile, "n8n.tls.cert_file": t.CertFile, "n8n.tls.key_file": t.KeyFile, "n8n.api_key_file": n.APIKeyFile} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			v.errorf(f, "%v", err)
		}
	}
	if n.APIKeyFile != "" && !n.APIKey.IsZero() {
		v.errorf("n8n.api_key_file", "set api_key or api_key_file, not both")
	}
}

func (h *HTTP) validate(v *validator) {
	const p = "invokers.http."
	if h.MaxRetries < 0 || h.MaxRetries > 100 {
		v.errorf(p+"max_retries", "must be between 0 and 100, got %d", h.MaxRetries)
	}
	if h.BackoffFactor < 0 || h.BackoffFactor > 3600 || math.IsNaN(h.BackoffFactor) {
		v.errorf(p+"backoff_factor", "must be between 0 and 3600, got %v", h.BackoffFactor)
	}
	v.notNegative(p+"pool_connections", h.PoolConnections)
	v.notNegative(p+"pool_maxsize", h.PoolMaxSize)
	if h.MaxResponseBytes < 0 {
		v.errorf(p+"max_response_bytes", "must not be negative, got %d", h.MaxResponseBytes)
	}
	h.Retry.validate(v, p+"retry.")
	h.CircuitBreaker.validate(v, p+"circuit_breaker.")
	h.RateLimit.validate(v, p+"rate_limit.")
	v.notNegativeDuration(p+"reconcile_timeout", h.ReconcileTimeout)
	v.notNegative(p+"bulkhead.max_in_flight", h.Bulkhead.MaxInFlight)
	v.notNegativeDuration(p+"bulkhead.max_wait", h.Bulkhead.MaxWait)
}

func (r *Retry) validate(v *validator, p string) {
	if !(r.Multiplier >= 1 && r.Multiplier <= 100) {
		v.errorf(p+"multiplier", "must be between 1 and 100, got %v", r.Multiplier)
	}
	v.notNegativeDuration(p+"max_delay", r.MaxDelay)
	v.notNegativeDuration(p+"max_elapsed", r.MaxElapsed)
	v.notNegativeDuration(p+"max_retry_after", r.MaxRetryAfter)
	v.notNegative(p+"budget.capacity", r.Budget.Capacity)
	v.notNegative(p+"budget.retry_cost", r.Budget.RetryCost)
	v.notNegative(p+"budget.timeout_cost", r.Budget.TimeoutCost)
}

func (cb *CircuitBreaker) validate(v *validator, p string) {
	v.notNegative(p+"consecutive_failures", cb.ConsecutiveFailures)
	v.notNegative(p+"min_calls", cb.MinCalls)
	v.notNegative(p+"half_open_probes", cb.HalfOpenProbes)
	v.notNegativeDuration(p+"window", cb.Window)
	v.notNegativeDuration(p+"open_timeout", cb.OpenTimeout)
	v.notNegativeDuration(p+"max_pause", cb.MaxPause)
	if !(cb.FailureRate > 0 && cb.FailureRate <= 1) {
		v.errorf(p+"failure_rate", "must be in (0, 1], got %v", cb.FailureRate)
	}
}

func (rl *RateLimit) validate(v *validator, p string) {
	v.notNegative(p+"burst", rl.Burst)
	if rl.Enabled && !(rl.RequestsPerSecond > 0 && rl.RequestsPerSecond <= 1e6) {
		v.errorf(p+"requests_per_second", "must be positive when rate_limit is enabled, got %v", rl.RequestsPerSecond)
	}
}

func (t *Tracing) validate(v *validator) {
	if t.Backend != "opentelemetry" && t.Backend != "none" {
		v.errorf("tracing.backend", "must be opentelemetry or none, got %q", t.Backend)
	}
	if !(t.SampleRate >= 0 && t.SampleRate <= 1) {
		v.errorf("tracing.sample_rate", "must be between 0 and 1, got %v", t.SampleRate)
	}
}

func (h *Hooks) validate(v *validator) {
	if h.Timeout < 0 {
		v.errorf("hooks.timeout", "must not be negative, got %s", h.Timeout.D())
	}
	n := &h.Notification
	if n.Format != "slack" && n.Format != "json" {
		v.errorf("hooks.notification.format", "must be slack or json, got %q", n.Format)
	}
	if !n.URL.IsZero() {
		if u, err := url.Parse(n.URL.Reveal()); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.errorf("hooks.notification.url", "must be an http(s) URL")
		}
	}
	for stage, refs := range map[string][]HookRef{
		"pre_execution": h.PreExecution, "post_execution": h.PostExecution, "error": h.Error,
	} {
		for i, r := range refs {
			if strings.TrimSpace(r.Name) == "" {
				v.errs = append(v.errs, &Error{Pos: r.Pos, Field: fmt.Sprintf("hooks.%s[%d]", stage, i), Msg: "empty hook name"})
			}
		}
	}
}

// validateCredential checks a credentials entry: header or basic auth.
func (a Auth) validateCredential(v *validator, f string) {
	switch a.Type {
	case AuthHeader:
		if a.Name == "" || a.Value.IsZero() {
			v.errorf(f, "header auth needs name and value")
		}
	case AuthBasic:
		if a.Username == "" || a.Password.IsZero() {
			v.errorf(f, "basic auth needs username and password")
		}
	default:
		v.errorf(f+".type", "must be header or basic, got %q", a.Type)
	}
}

func (w *Workflow) validate(v *validator, name string) {
	f := "workflows." + name
	if strings.TrimSpace(name) == "" {
		v.errorf(f, "workflow name must not be empty")
	}
	switch w.Transport {
	case TransportWebhook:
	case TransportMCP:
		if w.ID == "" {
			v.errorf(f+".id", "is required with transport mcp (it runs the workflow by its n8n id)")
		}
		if !v.c.Invokers.MCP.Enabled() {
			v.errorf(f+".transport", "mcp needs invokers.mcp.token or invokers.mcp.token_file")
		}
	default:
		v.errorf(f+".transport", "must be webhook or mcp, got %q", w.Transport)
	}
	switch {
	case w.Path == "" && w.Transport == TransportMCP:
	case w.Path == "":
		v.errorf(f+".path", "is required")
	case strings.Contains(w.Path, "://") || strings.ContainsAny(w.Path, "?# "):
		v.errorf(f+".path", "must be the webhook node's path (no scheme, query or spaces), got %q", w.Path)
	}
	if !validMethods[w.Method] {
		v.errorf(f+".method", "must be one of GET, POST, PUT, PATCH, DELETE, HEAD, got %q", w.Method)
	}
	switch w.ResponseMode {
	case ResponseModeOnReceived, ResponseModeLastNode, ResponseModeResponseNode:
	default:
		v.errorf(f+".response_mode", "must be onReceived, lastNode or responseNode, got %q", w.ResponseMode)
	}
	switch w.ResponseData {
	case "", ResponseDataFirstEntry, ResponseDataAllEntries, ResponseDataNoData, ResponseDataFirstBinary:
	default:
		v.errorf(f+".response_data", "must be firstEntryJson, allEntries, noData or firstEntryBinary, got %q", w.ResponseData)
	}
	if w.Timeout < 0 {
		v.errorf(f+".timeout", "must be positive, got %s", w.Timeout.D())
	}
	if w.Pack.MaxItems < 0 || w.Pack.MaxBytes < 0 || w.Pack.InFlight < 0 {
		v.errorf(f+".pack", "values must not be negative")
	}
	if w.Pack.MaxBytes > 16<<20 {
		v.errorf(f+".pack.max_bytes", "must be at most 16 MiB (n8n's body limit), got %d", w.Pack.MaxBytes)
	}
	a := &w.Auth
	switch a.Type {
	case AuthNone:
	case AuthHeader:
		if a.Name == "" {
			v.errorf(f+".auth.name", "is required for header auth")
		}
		if a.Value.IsZero() {
			v.errorf(f+".auth.value", "is required for header auth")
		}
	case AuthBasic:
		if a.Username == "" {
			v.errorf(f+".auth.username", "is required for basic auth")
		}
		if a.Password.IsZero() {
			v.errorf(f+".auth.password", "is required for basic auth")
		}
	case AuthHMAC, AuthJWT:
		if len(a.Secret.Reveal()) < 16 {
			v.errorf(f+".auth.secret", "%s auth needs a secret of at least 16 characters", a.Type)
		}
	default:
		v.errorf(f+".auth.type", "must be none, header, basic, hmac or jwt, got %q", a.Type)
	}
	switch {
	case a.Type != AuthHMAC && a.HMACVersion != "":
		v.errorf(f+".auth.hmac_version", "is only for hmac auth, not %s", a.Type)
	case a.Type != AuthHMAC:
	case a.HMACVersion != HMACVersion1 && a.HMACVersion != HMACVersion2 && a.HMACVersion != HMACVersionBoth:
		v.errorf(f+".auth.hmac_version", "must be 1, 2 or both, got %q", a.HMACVersion)
	case a.HMACVersion == HMACVersion1 && (w.Method == http.MethodGet || w.Method == http.MethodHead):
		v.errorf(f+".auth.hmac_version", "1 signs nothing of a %s request (no body: not its path, query or idempotency key); use 2 or both", w.Method)
	}
}

func (s *Store) validate(v *validator) {
	if !dlq.Registered(s.Backend) {
		v.errorf("store.backend", "unknown store %q (available: %s; others register with dlq.Register, e.g. by importing their module)",
			s.Backend, strings.Join(dlq.Backends(), ", "))
	}
	if s.Backend != dlq.BackendSQLite && dlq.Registered(s.Backend) && s.DSN.IsZero() {
		v.errorf("store.dsn", "required for store %q (a connection string, e.g. \"${N8N_INVOKER_PG_DSN}\")", s.Backend)
	}
	if s.Backend == dlq.BackendSQLite && s.Schema != "" {
		v.errorf("store.schema", "is for server stores; the sqlite store has none")
	}
	if s.Sync != "full" && s.Sync != "normal" {
		v.errorf("store.sync", "must be full or normal, got %q", s.Sync)
	}
	v.notNegativeDuration("store.lease", s.Lease)
	v.notNegativeDuration("store.held_wait", s.HeldWait)
	if s.Lease > 0 && time.Duration(s.Lease) < time.Second {
		v.errorf("store.lease", "must be at least 1s (the heartbeat renews it every third), got %s", time.Duration(s.Lease))
	}
}

func (r *SharedRateLimit) validate(v *validator) {
	if r.Backend == "" {
		if !r.URL.IsZero() || r.RequestsPerSecond != 0 || r.FallbackPerProcess != 0 {
			v.errorf("rate_limit.backend", "is required for a shared rate limit (available: %s)", strings.Join(policy.SharedLimits(), ", "))
		}
		return
	}
	if !slices.Contains(policy.SharedLimits(), r.Backend) {
		v.errorf("rate_limit.backend", "unknown shared limit %q (available: %s; others register with policy.RegisterSharedLimit, e.g. by importing contrib/redis)",
			r.Backend, strings.Join(policy.SharedLimits(), ", "))
	}
	if r.URL.IsZero() {
		v.errorf("rate_limit.url", "required for rate_limit.backend %q (e.g. \"${N8N_INVOKER_REDIS_URL}\")", r.Backend)
	}
	if !(r.RequestsPerSecond > 0) {
		v.errorf("rate_limit.requests_per_second", "must be positive, got %v", r.RequestsPerSecond)
	}
	if !(r.FallbackPerProcess > 0) {
		v.errorf("rate_limit.fallback_per_process", "must be positive (the per-process rate while %s is down: never no limit), got %v", r.Backend, r.FallbackPerProcess)
	}
	v.notNegative("rate_limit.burst", r.Burst)
}

func (q *Queue) validate(v *validator, timeout Duration) {
	v.notNegativeDuration("queue.job_timeout", q.JobTimeout)
	v.notNegativeDuration("queue.poll", q.Poll)
	if q.JobTimeout > 0 && timeout > 0 && q.JobTimeout < timeout {
		v.errorf("queue.job_timeout", "must be at least n8n.timeout (%s): one delivery is at least one attempt, got %s", timeout.D(), q.JobTimeout.D())
	}
	if q.Poll > 0 && time.Duration(q.Poll) < 10*time.Millisecond {
		v.errorf("queue.poll", "must be at least 10ms, got %s", q.Poll.D())
	}
	if q.Name != "" && !queueName.MatchString(q.Name) {
		v.errorf("queue.name", "must be letters, digits, '_' or '-' (at most 64), got %q", q.Name)
	}
}

var queueName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (d *DLQ) validate(v *validator) {
	v.notNegativeDuration("dlq.retention", d.Retention)
	for i, cl := range d.On {
		if cl != "transient" && cl != "unknown" && cl != "permanent" {
			v.errorf(fmt.Sprintf("dlq.on[%d]", i), "must be transient, unknown or permanent, got %q", cl)
		}
	}
}

func (m *MCP) validate(v *validator) {
	if !m.Token.IsZero() && m.TokenFile != "" {
		v.errorf("invokers.mcp.token_file", "set token or token_file, not both")
	}
	if m.RateLimit.Requests < -1 {
		v.errorf("invokers.mcp.rate_limit.requests", "must be positive, or -1 for none, got %d", m.RateLimit.Requests)
	}
	if m.RateLimit.Per <= 0 {
		v.errorf("invokers.mcp.rate_limit.per", "must be positive, got %s", m.RateLimit.Per.D())
	}
	if m.MaxRetryAfter <= 0 {
		v.errorf("invokers.mcp.max_retry_after", "must be positive, got %s", m.MaxRetryAfter.D())
	}
}
