package config

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/httpinvoker"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/mcpinvoker"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
	"github.com/n8n-invoker/n8n-invoker/policy"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// Defaults of the configuration, applied to keys the file leaves out.
// Each is the default of the layer that owns the setting: one set of
// defaults, not two. Default returns a Config with all of them; the
// configuration reference (docs/configuration.md) is generated from it.
const (
	DefaultTimeout          = httpinvoker.DefaultTimeout
	DefaultMaxRetries       = policy.DefaultMaxRetries
	DefaultBackoffFactor    = float64(policy.DefaultBaseDelay) / float64(time.Second)
	DefaultPoolConnections  = httpinvoker.DefaultPoolConnections
	DefaultPoolMaxSize      = httpinvoker.DefaultPoolMaxSize
	DefaultMaxResponseBytes = httpinvoker.DefaultMaxResponseBytes
	DefaultTracingBackend   = "opentelemetry"
	DefaultSampleRate       = 1.0
	DefaultMethod           = "POST"
	DefaultResponseMode     = ResponseModeLastNode
	DefaultMultiplier       = policy.DefaultMultiplier
	DefaultMaxDelay         = policy.DefaultMaxDelay
	DefaultMaxRetryAfter    = policy.DefaultMaxRetryAfter
	DefaultBudgetCapacity   = policy.DefaultBudgetCapacity
	DefaultRetryCost        = policy.DefaultRetryCost
	DefaultTimeoutCost      = policy.DefaultTimeoutCost
	DefaultConsecutiveFails = policy.DefaultConsecutiveFailures
	DefaultFailureRate      = policy.DefaultFailureRate
	DefaultBreakerWindow    = policy.DefaultWindow
	DefaultMinCalls         = policy.DefaultMinCalls
	DefaultOpenTimeout      = policy.DefaultOpenTimeout
	DefaultHalfOpenProbes   = policy.DefaultHalfOpenProbes
	DefaultMaxPause         = policy.DefaultMaxPause
	DefaultReconcileTimeout = n8napi.DefaultReconcileTimeout
	// DefaultRetentionMaxAge and DefaultRetentionMaxCount are n8n's own
	// execution pruning defaults.
	DefaultRetentionMaxAge   = n8napi.DefaultRetentionMaxAge
	DefaultRetentionMaxCount = n8napi.DefaultRetentionMaxCount
	DefaultHookTimeout       = 5 * time.Second
	DefaultStoreBackend      = dlq.BackendSQLite
	DefaultStoreLease        = 30 * time.Second
	DefaultStoreHeldWait     = 2 * time.Minute // the least default; see Store.HeldWait
	DefaultDLQRetention      = 7 * 24 * time.Hour
	DefaultMCPRateRequests   = mcpinvoker.DefaultRateRequests
	DefaultMCPRatePer        = mcpinvoker.DefaultRatePer
	DefaultMCPMaxRetryAfter  = mcpinvoker.DefaultMaxRetryAfter
	DefaultTLSMinVersion     = "1.2"
	DefaultNotifyFormat      = "slack"
	DefaultStoreSync         = "full"
)

// Response modes of an n8n webhook node.
const (
	ResponseModeOnReceived   = invocation.ResponseModeOnReceived
	ResponseModeLastNode     = invocation.ResponseModeLastNode
	ResponseModeResponseNode = invocation.ResponseModeResponseNode
)

// Response data options of a lastNode webhook (see
// invocation.ResponseDataFirstEntry).
const (
	ResponseDataFirstEntry  = invocation.ResponseDataFirstEntry
	ResponseDataAllEntries  = invocation.ResponseDataAllEntries
	ResponseDataNoData      = invocation.ResponseDataNoData
	ResponseDataFirstBinary = invocation.ResponseDataFirstBinary
)

// Auth types of a workflow's webhook (see invocation.Auth).
const (
	AuthNone   = invocation.AuthNone
	AuthHeader = invocation.AuthHeader
	AuthBasic  = invocation.AuthBasic
	AuthHMAC   = invocation.AuthHMAC
	AuthJWT    = invocation.AuthJWT
)

// HMAC signature versions of hmac auth (Auth.HMACVersion).
const (
	HMACVersion1    = invocation.HMACVersion1
	HMACVersion2    = invocation.HMACVersion2
	HMACVersionBoth = invocation.HMACVersionBoth
)

// Config is the whole configuration. Start from Default (or Load a file):
// a zero Config leaves MaxRetries and BackoffFactor at zero, which means
// no retries.
type Config struct {
	// N8N is the n8n instance to talk to.
	N8N N8N `yaml:"n8n"`
	// Invokers configures the transports and the pipeline's policies.
	Invokers Invokers `yaml:"invokers"`
	// Tracing configures OpenTelemetry tracing.
	Tracing Tracing `yaml:"tracing"`
	// Hooks names the hooks to run at each stage.
	Hooks Hooks `yaml:"hooks"`
	// Workflows maps a workflow's name to its n8n webhook (or, with
	// transport mcp, to its n8n id).
	Workflows map[string]Workflow `yaml:"workflows"`
	// Credentials gives the secrets of webhook credentials by their n8n
	// name, for workflows run by id whose webhook uses header or basic
	// auth (n8n's API never returns credential secrets).
	Credentials map[string]Auth `yaml:"credentials"`
	// DLQ configures the dead-letter queue and idempotency journal.
	DLQ DLQ `yaml:"dlq"`
	// Store selects where the journal, the idempotency records and the
	// dead letters are kept.
	Store Store `yaml:"store"`
	// RateLimit is one rate limit toward n8n that a fleet of processes
	// shares (off unless a backend is named; the per-process limit is
	// invokers.http.rate_limit).
	RateLimit SharedRateLimit `yaml:"rate_limit"`
	// Queue configures durable submission (the outbox): its workers.
	Queue Queue `yaml:"queue"`

	file string
	pos  map[string]Position
}

// N8N is the n8n instance to talk to.
type N8N struct {
	// BaseURL is the instance's URL, e.g. https://n8n.example.com; webhooks
	// are served under BaseURL/webhook/.
	BaseURL string `yaml:"base_url"`
	// APIKey is the public API key (header X-N8N-API-KEY): run by id,
	// Wait, reconcile, retries of executions, cleanup_hook.
	APIKey secret.Secret `yaml:"api_key"`
	// Timeout bounds one attempt: seconds (30) or a duration ("30s").
	Timeout Duration `yaml:"timeout"`
	// APIKeyFile reads the API key from a file (a container or Kubernetes
	// secret) instead of api_key, and again whenever the file changes.
	APIKeyFile string `yaml:"api_key_file"`
	// TLS configures the connection to n8n.
	TLS TLS `yaml:"tls"`
	// ExecutionRetention is how long the n8n instance keeps executions
	// (its EXECUTIONS_DATA_MAX_AGE and EXECUTIONS_DATA_PRUNE_MAX_COUNT;
	// its API does not tell). A reconcile that finds no execution of a
	// key whose first attempt is older, or with more executions since
	// than n8n keeps, refuses to re-send it (an unresolved error) instead
	// of guessing that it never ran. Set it to what the instance uses.
	ExecutionRetention ExecutionRetention `yaml:"execution_retention"`
}

// ExecutionRetention is n8n's pruning of executions.
type ExecutionRetention struct {
	// MaxAge is how long n8n keeps an execution.
	MaxAge Duration `yaml:"max_age"`
	// MaxCount is how many executions n8n keeps (across the instance).
	MaxCount int `yaml:"max_count"`
}

// TLS configures TLS to n8n. Verification is always on unless
// InsecureSkipVerify, which logs a warning at start.
type TLS struct {
	// CAFile is a PEM bundle of CAs to trust, added to the system's.
	CAFile string `yaml:"ca_file"`
	// CertFile is a client certificate (mTLS), with KeyFile.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the client certificate's private key.
	KeyFile string `yaml:"key_file"`
	// MinVersion is the least TLS version: 1.2 or 1.3.
	MinVersion string `yaml:"min_version"`
	// ServerName overrides the name verified in n8n's certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify turns verification off. Never in production.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// DLQ configures the durable dead-letter queue.
type DLQ struct {
	// Enabled turns on the write-ahead journal and the queue.
	Enabled bool `yaml:"enabled"`
	// Retention is how long succeeded idempotency keys are remembered.
	Retention Duration `yaml:"retention"`
	// On lists the error classes that go to the queue (add permanent to
	// keep workflow failures too).
	On []string `yaml:"on"`
}

// Store selects the store of the journal, the idempotency records and
// the dead letters: the embedded SQLite store by default; stores of other
// modules register a backend name with dlq.Register.
type Store struct {
	// Backend names the store: sqlite (embedded), or postgres once
	// contrib/postgres is imported (the CLI has it).
	Backend string `yaml:"backend"`
	// Path of the SQLite file; empty means
	// $XDG_STATE_HOME/n8n-invoker/dlq.db (~/.local/state/n8n-invoker/dlq.db).
	// A relative path is relative to the configuration file.
	Path string `yaml:"path"`
	// DSN is the connection string of a server store (required for
	// one; write it as ${VAR} so that the password stays out of the
	// file). It is a secret: never shown in logs, errors or answers.
	DSN secret.Secret `yaml:"dsn"`
	// Schema is where a server store keeps its tables (default:
	// the store's own, n8n_invoker for PostgreSQL). Replicas that share
	// work share a schema.
	Schema string `yaml:"schema"`
	// Sync is full (durable across power loss) or normal (durable across
	// process crashes, faster), for SQLite.
	Sync string `yaml:"sync"`
	// Lease is how long a key in flight stays leased to its process
	// without a heartbeat: a process that dies mid-call holds its keys
	// this long before another takes them over.
	Lease Duration `yaml:"lease"`
	// HeldWait bounds how long a call waits for another process that has
	// its idempotency key in flight. Zero (the default) means n8n.timeout
	// + invokers.http.reconcile_timeout + 30s, and at least
	// DefaultStoreHeldWait: as long as the owner may take to decide.
	HeldWait Duration `yaml:"held_wait"`
	// RescueEvery is how often a manager takes over the invocations dead
	// processes left in flight; zero (the default) means every lease;
	// negative turns the background rescue off (Manager.Rescue still
	// does it on demand).
	RescueEvery Duration `yaml:"rescue_every"`
}

// SharedRateLimit is one rate limit toward n8n's webhooks for every
// process that names the same backend and key: a 429 with Retry-After
// that one of them sees pauses them all. n8n's API calls (resolution,
// reconcile, polling) do not count: they are few per call and n8n limits
// its API apart (per key, off by default).
type SharedRateLimit struct {
	// Backend names it: redis once contrib/redis is imported (the CLI has
	// it); empty means off.
	Backend string `yaml:"backend"`
	// URL is the backend's address, e.g. "${N8N_INVOKER_REDIS_URL}"
	// (redis://[:password@]host:port/db); a secret.
	URL secret.Secret `yaml:"url"`
	// Key names the limit (default: the backend's): processes with the
	// same key share it.
	Key string `yaml:"key"`
	// RequestsPerSecond is the fleet's rate (required).
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	// Burst is how many may go at once above the rate (default: the
	// rate, at least 1).
	Burst int `yaml:"burst"`
	// FallbackPerProcess is each process's own rate while the backend
	// cannot be reached (required: never no limit, never a stall).
	FallbackPerProcess float64 `yaml:"fallback_per_process"`
}

// Queue configures durable submission (package outbox): invocations
// stored by Enqueue and delivered by workers, in this process or in
// others sharing the store.
type Queue struct {
	// Workers is how many invocations a worker process delivers at once;
	// negative: none (a process that only enqueues).
	Workers int `yaml:"workers"`
	// JobTimeout bounds one delivery: a call's retries, breaker pause and
	// reconcile; a delivery cut by it is delivered again, after a
	// reconcile. Zero (the default) means DefaultQueueJobTimeout, or
	// n8n.timeout when that is longer.
	JobTimeout Duration `yaml:"job_timeout"`
	// Poll is how often idle workers look for invocations other
	// processes queued (SQLite store; River's fallback poll on
	// PostgreSQL).
	Poll Duration `yaml:"poll"`
	// Name is the queue's name in River (PostgreSQL store): workers
	// deliver only their queue's invocations.
	Name string `yaml:"name"`
}

// Defaults of the queue section.
const (
	DefaultQueueWorkers    = 10
	DefaultQueueJobTimeout = 5 * time.Minute
	DefaultQueuePoll       = 200 * time.Millisecond
	DefaultQueueName       = "n8n_invoker"
)

// Invokers configures the transports.
type Invokers struct {
	// HTTP configures the webhook transport and the pipeline's retry,
	// breaker, rate-limit and bulkhead policies (the MCP transport uses
	// them too).
	HTTP HTTP `yaml:"http"`
	// MCP configures the MCP transport (workflows with transport: mcp).
	MCP MCP `yaml:"mcp"`
}

// Transports a workflow can be served by.
const (
	TransportWebhook = "webhook"
	TransportMCP     = "mcp"
)

// MCP configures the transport that runs workflows by id through n8n's
// instance MCP server (n8n 2.x: switched on in n8n's settings, each
// workflow marked available in MCP). The retry, breaker and journal
// settings are invokers.http's: one pipeline for both transports.
type MCP struct {
	// Token is the MCP server's access token (n8n's "MCP Server API
	// Key", not the public API key); a secret.
	Token secret.Secret `yaml:"token"`
	// TokenFile reads the token from a file instead, again whenever the
	// file changes.
	TokenFile string `yaml:"token_file"`
	// RateLimit is this process's limit toward the MCP server (by
	// default n8n's own server limit).
	RateLimit MCPRateLimit `yaml:"rate_limit"`
	// MaxRetryAfter is the longest 429 wait honoured for MCP calls (the
	// server's window is 5 minutes); it also caps the hold every MCP
	// request takes after a 429.
	MaxRetryAfter Duration `yaml:"max_retry_after"`
}

// MCPRateLimit is requests per period.
type MCPRateLimit struct {
	// Requests is how many requests go per period; -1: no limit.
	Requests int `yaml:"requests"`
	// Per is the period.
	Per Duration `yaml:"per"`
}

// Enabled reports whether an MCP token is configured.
func (m *MCP) Enabled() bool { return !m.Token.IsZero() || m.TokenFile != "" }

// HTTP configures the webhook invoker.
type HTTP struct {
	// MaxRetries is the number of retries after the first attempt.
	MaxRetries int `yaml:"max_retries"`
	// BackoffFactor sets the delay before retry n to at most
	// BackoffFactor * multiplier^(n-1) seconds (full jitter), capped at
	// retry.max_delay.
	BackoffFactor float64 `yaml:"backoff_factor"`
	// PoolConnections is the number of hosts whose idle connections are
	// kept; with PoolMaxSize it sets the transport's MaxIdleConns.
	PoolConnections int `yaml:"pool_connections"`
	// PoolMaxSize is the number of idle connections kept per host
	// (MaxIdleConnsPerHost).
	PoolMaxSize int `yaml:"pool_maxsize"`
	// MaxResponseBytes limits a response body.
	MaxResponseBytes int64 `yaml:"max_response_bytes"`
	// Retry refines the retry policy beyond max_retries and backoff_factor.
	Retry Retry `yaml:"retry"`
	// CircuitBreaker configures one breaker per workflow endpoint.
	CircuitBreaker CircuitBreaker `yaml:"circuit_breaker"`
	// RateLimit keeps calls to n8n under a rate.
	RateLimit RateLimit `yaml:"rate_limit"`
	// Bulkhead bounds the calls in flight per workflow.
	Bulkhead Bulkhead `yaml:"bulkhead"`
	// ExecutionIDHeaders are the answer headers read for n8n's execution
	// id, in order; empty means X-N8N-Execution-Id, then X-Execution-Id.
	ExecutionIDHeaders []string `yaml:"execution_id_headers"`
	// RetryAmbiguous re-sends an attempt whose answer was lost after it
	// was sent when no API key lets the invoker reconcile it with n8n's
	// executions first (off: never fire twice; the call ends in an
	// *AmbiguousError).
	RetryAmbiguous bool `yaml:"retry_ambiguous"`
	// ReconcileTimeout bounds the wait for the executions that may be a
	// lost answer's to end before it is re-sent; past it the call is
	// unresolved.
	ReconcileTimeout Duration `yaml:"reconcile_timeout"`
}

// Retry refines the retry policy.
type Retry struct {
	// Multiplier grows the backoff cap per retry.
	Multiplier float64 `yaml:"multiplier"`
	// MaxDelay caps one backoff.
	MaxDelay Duration `yaml:"max_delay"`
	// MaxElapsed bounds an invocation with its retries; 0: no bound (a
	// 429's waits are then bounded by pipeline.DefaultMaxThrottle).
	MaxElapsed Duration `yaml:"max_elapsed"`
	// MaxRetryAfter is the longest Retry-After honoured; a longer one
	// fails fast (the error's RetryAfter holds the wait). It also caps
	// the pause every caller takes after a 429 when a rate limit is on
	// (invokers.http.rate_limit, and the fleet's rate_limit).
	MaxRetryAfter Duration `yaml:"max_retry_after"`
	// Budget is the client-wide retry budget.
	Budget Budget `yaml:"budget"`
}

// Budget is the client-wide retry budget (a token bucket).
type Budget struct {
	// Enabled turns the budget on: a dead n8n then drains it instead of
	// taking every call's retries.
	Enabled bool `yaml:"enabled"`
	// Capacity is the bucket's size in tokens.
	Capacity int `yaml:"capacity"`
	// RetryCost is taken per retry; a first-try success gives back 1, a
	// successful retry its cost.
	RetryCost int `yaml:"retry_cost"`
	// TimeoutCost is taken per retry after a timeout.
	TimeoutCost int `yaml:"timeout_cost"`
}

// CircuitBreaker configures the breakers.
type CircuitBreaker struct {
	// Enabled turns the breakers on.
	Enabled bool `yaml:"enabled"`
	// ConsecutiveFailures trips the breaker after that many failures in
	// a row (5 refused connections in a row trip it too: n8n is down).
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// FailureRate trips it when failures reach this share (0..1) of at
	// least min_calls calls within window.
	FailureRate float64 `yaml:"failure_rate"`
	// Window is the period failure_rate is measured over.
	Window Duration `yaml:"window"`
	// MinCalls is the least number of calls in window for failure_rate
	// to trip the breaker.
	MinCalls int `yaml:"min_calls"`
	// OpenTimeout is how long it stays open before probing.
	OpenTimeout Duration `yaml:"open_timeout"`
	// HalfOpenProbes is the number of probes let through once it is
	// half-open; a success closes it.
	HalfOpenProbes int `yaml:"half_open_probes"`
	// MaxPause is how long a call waits for an open breaker to let it
	// through, within its deadline: an open breaker pauses the calls
	// behind it. With a fallback configured, calls go to the fallback at
	// once instead.
	MaxPause Duration `yaml:"max_pause"`
}

// RateLimit keeps calls under a rate; it also backs off on 429.
type RateLimit struct {
	// Enabled turns the limit on.
	Enabled bool `yaml:"enabled"`
	// RequestsPerSecond is the rate toward n8n; a 429 pauses for its
	// Retry-After and halves it for a while.
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	// Burst is the bucket size; 0: requests_per_second, at least 1.
	Burst int `yaml:"burst"`
}

// Bulkhead bounds the calls in flight per workflow.
type Bulkhead struct {
	// MaxInFlight is the calls in flight per workflow; 0: no bound.
	MaxInFlight int `yaml:"max_in_flight"`
	// MaxWait is how long a call waits for a slot before failing with a
	// BulkheadError; 0: as long as its context allows.
	MaxWait Duration `yaml:"max_wait"`
}

// Tracing configures OpenTelemetry tracing.
type Tracing struct {
	// Enabled turns spans on (metrics are on either way).
	Enabled bool `yaml:"enabled"`
	// Backend is opentelemetry or none.
	Backend string `yaml:"backend"`
	// SampleRate is the share of traces the CLI's sampler keeps (0..1);
	// the library only uses the providers it is given.
	SampleRate float64 `yaml:"sample_rate"`
}

// Hooks names the hooks to run at each stage.
type Hooks struct {
	// PreExecution names the hooks run before each execution (built-in:
	// logging_hook, metrics_hook; or registered with
	// invoker.RegisterNamedHook).
	PreExecution []HookRef `yaml:"pre_execution"`
	// PostExecution names the hooks run after each successful execution
	// (built-in: logging_hook, metrics_hook, cleanup_hook).
	PostExecution []HookRef `yaml:"post_execution"`
	// Error names the hooks run after each failed execution (built-in:
	// logging_hook, metrics_hook, notification_hook).
	Error []HookRef `yaml:"error"`
	// Timeout bounds one hook call; a hook that takes longer is reported
	// and no longer waited for.
	Timeout Duration `yaml:"timeout"`
	// Notification configures notification_hook.
	Notification Notification `yaml:"notification"`
}

// Notification is where notification_hook posts failures.
type Notification struct {
	// URL is a Slack-compatible incoming webhook or any URL taking a JSON
	// POST. It is a secret: such URLs carry their token.
	URL secret.Secret `yaml:"url"`
	// Format is slack (a {"text": ...} message) or json (the full
	// record).
	Format string `yaml:"format"`
	// Timeout bounds one post.
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
	// WebhookID is the webhook node's id: n8n serves a path with
	// parameters (orders/:orderId) under it. Found through the API for
	// workflows run by id.
	WebhookID string `yaml:"webhook_id"`
	// Method is the webhook's HTTP method; GET and HEAD send the
	// parameters as the query string.
	Method string `yaml:"method"`
	// ResponseMode is the webhook node's response mode: onReceived,
	// lastNode or responseNode, as set in the node.
	ResponseMode string `yaml:"response_mode"`
	// ResponseData is the webhook node's "Response Data" in lastNode mode:
	// firstEntryJson (empty means it), allEntries, noData or
	// firstEntryBinary, as set in the node. A reconciled result rebuilds
	// the answer from it.
	ResponseData string `yaml:"response_data"`
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
	// Transport is webhook (the path above) or mcp (run by id through
	// n8n's MCP server: id is required, path is not).
	Transport string `yaml:"transport"`
	// TriggerNode names the workflow's Webhook node for the MCP
	// transport; empty: asked of the MCP server once and cached.
	TriggerNode string `yaml:"trigger_node"`
}

// Pack configures item packing for a workflow; zero values mean the
// pack package's defaults (pack.DefaultPackItems, pack.DefaultPackBytes,
// pack.DefaultPackInFlight).
type Pack struct {
	// Enabled packs this workflow's batch items.
	Enabled bool `yaml:"enabled"`
	// MaxItems is the most items in one call; 0: pack.DefaultPackItems.
	MaxItems int `yaml:"max_items"`
	// MaxBytes is the most bytes of one call's encoded body; 0:
	// pack.DefaultPackBytes.
	MaxBytes int `yaml:"max_bytes"`
	// InFlight is how many packs run at once; 0: pack.DefaultPackInFlight.
	InFlight int `yaml:"in_flight"`
}

// Auth is a webhook's authentication.
type Auth struct {
	// Type is none, header, basic, hmac (a signature of every attempt)
	// or jwt (n8n's JWT webhook auth, HS256).
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
	// HMACVersion is the signature hmac auth sends: 1 (the timestamp
	// and the body only, in X-Invoker-Signature), 2 (also the method,
	// path, path parameters, query and idempotency key, in
	// X-Invoker-Signature-V2) or both (each in its header, so that a
	// verifier of either version accepts the request). The default is
	// both: an existing v1 verifier keeps working while it is upgraded
	// to v2 (docs/security.md). Version 1 on a GET or HEAD webhook is
	// refused: with no body it signs nothing of the request.
	HMACVersion string `yaml:"hmac_version"`
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
// base URL: the one source of the defaults. Validate (and so Load and
// Parse) fills a value left zero from it; the configuration reference
// (docs/configuration.md, make docs) prints it. Some values are computed
// from others instead: Store.HeldWait, Store.RescueEvery (see their
// docs) and Queue.JobTimeout, and a workflow's own defaults are filled
// per workflow.
func Default() *Config {
	return &Config{
		N8N: N8N{Timeout: Duration(DefaultTimeout), TLS: TLS{MinVersion: DefaultTLSMinVersion},
			ExecutionRetention: ExecutionRetention{MaxAge: Duration(DefaultRetentionMaxAge), MaxCount: DefaultRetentionMaxCount}},
		Invokers: Invokers{
			HTTP: HTTP{
				MaxRetries:       DefaultMaxRetries,
				BackoffFactor:    DefaultBackoffFactor,
				PoolConnections:  DefaultPoolConnections,
				PoolMaxSize:      DefaultPoolMaxSize,
				MaxResponseBytes: DefaultMaxResponseBytes,
				ReconcileTimeout: Duration(DefaultReconcileTimeout),
				Retry: Retry{
					Multiplier: DefaultMultiplier, MaxDelay: Duration(DefaultMaxDelay), MaxRetryAfter: Duration(DefaultMaxRetryAfter),
					Budget: Budget{Enabled: true, Capacity: DefaultBudgetCapacity, RetryCost: DefaultRetryCost, TimeoutCost: DefaultTimeoutCost},
				},
				CircuitBreaker: CircuitBreaker{
					Enabled: true, ConsecutiveFailures: DefaultConsecutiveFails, FailureRate: DefaultFailureRate,
					Window: Duration(DefaultBreakerWindow), MinCalls: DefaultMinCalls, OpenTimeout: Duration(DefaultOpenTimeout),
					HalfOpenProbes: DefaultHalfOpenProbes, MaxPause: Duration(DefaultMaxPause),
				},
			},
			MCP: MCP{
				RateLimit:     MCPRateLimit{Requests: DefaultMCPRateRequests, Per: Duration(DefaultMCPRatePer)},
				MaxRetryAfter: Duration(DefaultMCPMaxRetryAfter),
			},
		},
		Tracing: Tracing{Backend: DefaultTracingBackend, SampleRate: DefaultSampleRate},
		Hooks: Hooks{
			Timeout:      Duration(DefaultHookTimeout),
			Notification: Notification{Format: DefaultNotifyFormat, Timeout: Duration(DefaultHookTimeout)},
		},
		DLQ:   DLQ{Retention: Duration(DefaultDLQRetention), On: []string{"transient", "unknown"}},
		Store: Store{Backend: DefaultStoreBackend, Sync: DefaultStoreSync, Lease: Duration(DefaultStoreLease)},
		Queue: Queue{
			Workers: DefaultQueueWorkers, Poll: Duration(DefaultQueuePoll), Name: DefaultQueueName,
		},
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
	// Joined: one per line, in the file's order; errors.As finds each
	// *Error.
	return errors.Join(errs...)
}

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

// SecretValues returns every secret value in the configuration (the API
// key, the MCP token, webhook and credential secrets, the notification
// URL, the store's DSN, the shared limit's URL), for log redaction
// backstops. The contents of secret files (api_key_file, token_file) are
// not in it: they are read later, and registered when read.
func (c *Config) SecretValues() []string {
	var out []string
	add := func(s secret.Secret) {
		if !s.IsZero() {
			out = append(out, s.Reveal())
		}
	}
	add(c.N8N.APIKey)
	add(c.Hooks.Notification.URL)
	add(c.Store.DSN)
	add(c.RateLimit.URL)
	add(c.Invokers.MCP.Token)
	for _, w := range c.Workflows {
		add(w.Auth.Value)
		add(w.Auth.Password)
		add(w.Auth.Secret)
	}
	for _, a := range c.Credentials {
		add(a.Value)
		add(a.Password)
		add(a.Secret)
	}
	return out
}
