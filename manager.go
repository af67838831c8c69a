package invoker

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/hooks"
	"github.com/n8n-invoker/n8n-invoker/httpinvoker"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/mcpinvoker"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
	"github.com/n8n-invoker/n8n-invoker/pipeline"
	"github.com/n8n-invoker/n8n-invoker/policy"
	"github.com/n8n-invoker/n8n-invoker/secret"
	"github.com/n8n-invoker/n8n-invoker/telemetry"
	"go.opentelemetry.io/otel/trace"
)

// Manager runs workflows through the pipeline of stages and calls the hooks around
// them. It is safe for concurrent use.
type Manager struct {
	cfg          *config.Config
	transport    invocation.Transport
	ownTransport *httpinvoker.Transport
	mcp          *mcpinvoker.Transport // the MCP transport, when configured
	httpOpts     []httpinvoker.Option
	interceptors []pipeline.Interceptor
	rateLimit    pipeline.AttemptStage
	pipe         *pipeline.Pipeline
	inflight     keys
	log          *slog.Logger
	newID        func() string
	breakers     *policy.Breakers
	api          *n8napi.Client
	dlq          DeadLetters
	tel          *telemetry.Telemetry
	telOpts      []telemetry.Option
	tracers      []telemetry.Tracer
	healthClient *http.Client
	keys         secret.Provider
	mcpToken     secret.Provider // the MCP transport's token, registered with redact
	redact       *telemetry.Redactor
	ownDLQ       interface{ Close() error }
	ownLimit     policy.SharedLimiter // the rate_limit section's, opened by New
	resolver     *pipeline.APIResolver
	targets      pipeline.Resolver // the pipeline's: a reconcile outside a call finds the response mode
	bulkhead     *policy.Bulkhead
	fallback     Fallback
	fallbackOn   func(error) bool
	onBreaker    func(endpoint string, from, to policy.State)
	// owner names this process in the journal's leases.
	owner  string
	leases leaseSet

	mu    sync.RWMutex
	hooks map[hooks.Stage][]hooks.Hook
	// hookSet is the snapshot the hooks stage reads without a lock.
	hookSet atomic.Pointer[hookSet]
	closed  bool
	wg      sync.WaitGroup
}

// Option configures a Manager.
type Option func(*Manager) error

// WithTransport replaces the webhook transport with t, e.g. another
// transport to n8n. t makes one attempt per call; it gets every stage of
// the pipeline (resolution, journal, retries, budget, breaker, rate
// limit, spans), as the webhook transport does.
func WithTransport(t invocation.Transport) Option {
	return func(m *Manager) error {
		if t == nil {
			return errors.New("nil transport")
		}
		m.transport = t
		return nil
	}
}

// WithRateLimiter paces every attempt toward n8n with l instead of the
// per-process invokers.http.rate_limit: for a limit the whole fleet
// shares (contrib/redis). n8n's API calls (resolution, reconcile,
// polling) do not pass it.
func WithRateLimiter(l pipeline.AttemptStage) Option {
	return func(m *Manager) error {
		if l == nil {
			return errors.New("nil rate limiter")
		}
		m.rateLimit = l
		return nil
	}
}

// WithInterceptor adds a stage of your own to the pipeline, with a slot
// per call and a slot per attempt (see pipeline.Interceptor). Several
// interceptors run in the order given, the first outermost.
func WithInterceptor(ic pipeline.Interceptor) Option {
	return func(m *Manager) error {
		if ic == nil {
			return errors.New("nil interceptor")
		}
		m.interceptors = append(m.interceptors, ic)
		return nil
	}
}

// WithHTTPOptions passes options to the webhook transport, after those
// the configuration implies.
func WithHTTPOptions(opts ...httpinvoker.Option) Option {
	return func(m *Manager) error { m.httpOpts = append(m.httpOpts, opts...); return nil }
}

// WithLogger sets the logger of the manager and its built-in hooks; the
// default discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(m *Manager) error {
		if l == nil {
			return errors.New("nil logger")
		}
		m.log = l
		return nil
	}
}

// Fallback produces a degraded answer for a call that failed fast: it may
// return a substitute result (marked Degraded), or an error, such as the
// one it was given, or that of handing the item to a dead-letter queue.
type Fallback func(ctx context.Context, req *invocation.Request, err error) (*invocation.Result, error)

// WithFallback sets the fallback run when a call fails fast because the
// system is degraded: an error whose code is invocation.CodeCircuitOpen,
// CodeBudgetExhausted or CodeBulkheadFull (change that with
// WithFallbackFor).
func WithFallback(f Fallback) Option {
	return func(m *Manager) error { m.fallback = f; return nil }
}

// WithFallbackFor sets which errors the fallback handles.
func WithFallbackFor(pred func(error) bool) Option {
	return func(m *Manager) error { m.fallbackOn = pred; return nil }
}

// IsDegraded reports whether err is a fail-fast refusal of a degraded
// system: an open circuit, a spent retry budget or a full bulkhead.
func IsDegraded(err error) bool {
	return invocation.CodeOf(err).Degraded()
}

// WithBreakerStateChange observes every circuit breaker transition.
func WithBreakerStateChange(f func(endpoint string, from, to policy.State)) Option {
	return func(m *Manager) error { m.onBreaker = f; return nil }
}

// WithTelemetry passes options (tracer and meter providers, propagator)
// to the manager's OpenTelemetry instrumentation. By default it reads the
// global providers; it never sets them. tracing.enabled: false in the
// configuration turns spans off.
func WithTelemetry(opts ...telemetry.Option) Option {
	return func(m *Manager) error { m.telOpts = append(m.telOpts, opts...); return nil }
}

// WithTracer adds a custom tracer fed with a record of every execution.
func WithTracer(t telemetry.Tracer) Option {
	return func(m *Manager) error {
		if t == nil {
			return errors.New("nil tracer")
		}
		m.tracers = append(m.tracers, t)
		return nil
	}
}

// WithSecretProvider takes the n8n API key from p (a secrets manager, a
// file...) instead of n8n.api_key or n8n.api_key_file.
func WithSecretProvider(p secret.Provider) Option {
	return func(m *Manager) error { m.keys = p; return nil }
}

// ReloadSecrets re-reads the API key and the MCP token from their
// sources (the CLI calls it on SIGHUP); the new values join the log
// redaction backstop. Calls in flight finish with the old ones.
func (m *Manager) ReloadSecrets(ctx context.Context) (changed bool, err error) {
	var errs []error
	for _, p := range []secret.Provider{m.keys, m.mcpToken} {
		if r, ok := p.(secret.Reloader); ok {
			c, err := r.Reload(ctx)
			changed = changed || c
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return changed, errors.Join(errs...)
}

// WithAPIClient sets the n8n API client (default: one built from
// n8n.base_url and n8n.api_key).
func WithAPIClient(c *n8napi.Client) Option {
	return func(m *Manager) error { m.api = c; return nil }
}

// newIDGenerator returns a generator of request ids that are unique
// across processes without a random read per call: a random 96-bit
// prefix drawn once, then a counter (formatted as a UUID-shaped string).
func newIDGenerator() func() string {
	var prefix [12]byte
	_, _ = rand.Read(prefix[:])
	var n atomic.Uint64
	return func() string {
		var b [16]byte
		copy(b[:], prefix[:])
		binary.BigEndian.PutUint32(b[12:], uint32(n.Add(1)))
		var out [36]byte
		hex.Encode(out[0:8], b[0:4])
		out[8] = '-'
		hex.Encode(out[9:13], b[4:6])
		out[13] = '-'
		hex.Encode(out[14:18], b[6:8])
		out[18] = '-'
		hex.Encode(out[19:23], b[8:10])
		out[23] = '-'
		hex.Encode(out[24:36], b[10:16])
		return string(out[:])
	}
}

// WithIDGenerator sets the function that makes request ids (default: a
// UUID-shaped id made of a random 96-bit prefix drawn once per manager
// and a counter: unique across processes, no random read per call).
func WithIDGenerator(f func() string) Option {
	return func(m *Manager) error { m.newID = f; return nil }
}

// FromConfig loads the YAML configuration at path and returns a Manager
// for it.
func FromConfig(path string, opts ...Option) (*Manager, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	return New(cfg, opts...)
}

// New returns a Manager for cfg, which it validates. The hooks named in
// cfg are registered.
func New(cfg *config.Config, opts ...Option) (*Manager, error) {
	if cfg == nil {
		return nil, errors.New("invoker: nil config")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:   cfg,
		log:   slog.New(slog.DiscardHandler),
		newID: newIDGenerator(),
		hooks: map[hooks.Stage][]hooks.Hook{},
	}
	for _, o := range opts {
		if err := o(m); err != nil {
			return nil, fmt.Errorf("invoker: %w", err)
		}
	}
	if m.fallbackOn == nil {
		m.fallbackOn = IsDegraded
	}
	m.redact = telemetry.NewRedactor(cfg.SecretValues()...)
	m.log = slog.New(m.redact.Handler(m.log.Handler()))
	telOpts := m.telOpts
	if !cfg.Tracing.Enabled || cfg.Tracing.Backend == "none" {
		telOpts = append(telOpts, telemetry.WithTracingDisabled())
	}
	tel, err := telemetry.New(telOpts...)
	if err != nil {
		return nil, fmt.Errorf("invoker: telemetry: %w", err)
	}
	m.tel = tel
	m.healthClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: http.ProxyFromEnvironment},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tlsConf, err := tlsFromConfig(cfg.N8N.TLS)
	if err != nil {
		return nil, err
	}
	if cfg.N8N.TLS.InsecureSkipVerify {
		m.log.Warn("TLS certificate verification of n8n is OFF (n8n.tls.insecure_skip_verify): anyone on the path can read and change the traffic")
	}
	m.healthClient.Transport.(*http.Transport).TLSClientConfig = tlsConf.Clone()
	var byID pipeline.Resolver = noAPI{}
	if !cfg.N8N.APIKey.IsZero() || cfg.N8N.APIKeyFile != "" || m.keys != nil || m.api != nil {
		if m.api == nil {
			if m.keys == nil {
				if m.keys, err = keySourceFromConfig(cfg); err != nil {
					return nil, err
				}
			}
			m.keys = redacted(m.keys, m.redact)
			api, err := n8napi.NewClient(cfg.N8N.BaseURL, secret.Secret{}, n8napi.WithKeySource(m.keys), n8napi.WithTLSConfig(tlsConf))
			if err != nil {
				return nil, err
			}
			m.api = api
		}
		m.resolver = pipeline.NewAPIResolver(m.api, 0, authsFromConfig(cfg.Credentials))
		m.resolver.OnWarning = func(workflow, msg string) { m.log.Warn(msg, "workflow", workflow) }
		byID = m.resolver
	}
	if m.transport == nil {
		t, err := httpinvoker.New(cfg.N8N.BaseURL, append(transportOptions(cfg, tlsConf), m.httpOpts...)...)
		if err != nil {
			return nil, err
		}
		m.transport, m.ownTransport = t, t
	}
	if cfg.Invokers.MCP.Enabled() {
		if m.mcp, m.mcpToken, err = mcpFromConfig(cfg, tlsConf, m.redact); err != nil {
			m.closeOwned()
			return nil, err
		}
	}
	if err := m.openDLQ(); err != nil {
		return nil, err
	}
	if err := m.openSharedLimit(); err != nil {
		m.closeOwned()
		return nil, err
	}
	m.targets = pipeline.Chain{staticResolver(cfg), byID}
	if err := m.buildPipeline(m.targets); err != nil {
		m.closeOwned()
		return nil, err
	}
	if err := m.tel.ObserveBreakers(m.observeBreakers); err != nil {
		return nil, err
	}
	if m.dlq != nil {
		if c, ok := m.dlq.(interface {
			Count(context.Context) (int, error)
		}); ok {
			if err := m.tel.ObserveDLQ(c.Count); err != nil {
				return nil, err
			}
		}
	}
	if err := m.namedHooks(); err != nil {
		m.closeOwned()
		return nil, err
	}
	m.owner = processOwner()
	m.startLeases()
	return m, nil
}

func (m *Manager) breakerChanged(endpoint string, from, to policy.State) {
	m.log.Warn("circuit breaker changed state", "endpoint", endpoint, "from", from.String(), "to", to.String())
	if m.onBreaker != nil {
		m.onBreaker(endpoint, from, to)
	}
}

// BreakerStates returns the state of the circuit breaker of every
// workflow called so far (none when breakers are off).
func (m *Manager) BreakerStates() []policy.BreakerState {
	if m.breakers == nil {
		return nil
	}
	return m.breakers.States()
}

func (m *Manager) observeBreakers(yield func(endpoint string, state int)) {
	for _, s := range m.BreakerStates() {
		yield(s.Endpoint, int(s.State))
	}
}

// namedHooks registers the hooks the configuration names, in its order.
func (m *Manager) namedHooks() error {
	for _, st := range []struct {
		stage hooks.Stage
		refs  []config.HookRef
	}{{hooks.StagePreExecution, m.cfg.Hooks.PreExecution}, {hooks.StagePostExecution, m.cfg.Hooks.PostExecution}, {hooks.StageError, m.cfg.Hooks.Error}} {
		for i, r := range st.refs {
			field := fmt.Sprintf("hooks.%s[%d]", st.stage, i)
			mk, known, ok := namedHook(r.Name)
			if !ok {
				return &config.Error{Pos: r.Pos, Field: field, Msg: fmt.Sprintf("unknown hook %q (available: %s)", r.Name, strings.Join(known, ", "))}
			}
			h, err := mk(m, r)
			if err != nil {
				var ce *config.Error
				if errors.As(err, &ce) {
					ce.Field = field
					return ce
				}
				return &config.Error{Pos: r.Pos, Field: field, Msg: err.Error()}
			}
			m.hooks[st.stage] = append(m.hooks[st.stage], h)
			m.publishHooks()
		}
	}
	return nil
}

// Config returns the manager's configuration. Do not modify it.
func (m *Manager) Config() *config.Config { return m.cfg }

// RegisterHook adds hook to run at stage, after those already registered.
func (m *Manager) RegisterHook(stage hooks.Stage, hook hooks.Hook) error {
	if !stage.Valid() {
		return fmt.Errorf("invoker: unknown hook stage %q (want pre_execution, post_execution or error)", stage)
	}
	if hook == nil {
		return errors.New("invoker: nil hook")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hooks[stage] = append(m.hooks[stage], hook)
	m.publishHooks()
	return nil
}

// hookSet is an immutable snapshot of the registered hooks.
type hookSet struct{ pre, post, onErr []hooks.Hook }

// publishHooks makes the hooks registered so far visible to calls; m.mu
// must be held.
func (m *Manager) publishHooks() {
	m.hookSet.Store(&hookSet{
		pre:   slices.Clone(m.hooks[hooks.StagePreExecution]),
		post:  slices.Clone(m.hooks[hooks.StagePostExecution]),
		onErr: slices.Clone(m.hooks[hooks.StageError]),
	})
}

// ExecuteWorkflow runs a workflow with params as its JSON body.
// workflowID is a configured name such as "user-onboarding", or, with
// n8n.api_key set, an n8n workflow id or exact name: its webhook trigger
// is found through the API and cached.
func (m *Manager) ExecuteWorkflow(ctx context.Context, workflowID string, params map[string]any, opts ...CallOption) (*invocation.Result, error) {
	return m.Execute(ctx, &invocation.Request{Workflow: workflowID, Params: params}, opts...)
}

// Execute runs one request. An empty RequestID gets a new one; an empty
// IdempotencyKey takes the RequestID.
func (m *Manager) Execute(ctx context.Context, req *invocation.Request, opts ...CallOption) (*invocation.Result, error) {
	if !m.enter() {
		return nil, invocation.ErrClosed
	}
	defer m.wg.Done()
	var o *callOptions
	if len(opts) > 0 {
		o = &callOptions{}
		for _, f := range opts {
			f(o)
		}
	}
	return m.execute(ctx, *req, o)
}

// Logger returns the manager's logger (WithLogger's, secrets redacted),
// for what builds on the manager, such as the outbox's workers.
func (m *Manager) Logger() *slog.Logger { return m.log }

func (m *Manager) enter() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return false
	}
	m.wg.Add(1)
	return true
}

func (m *Manager) execute(ctx context.Context, req invocation.Request, o *callOptions) (*invocation.Result, error) {
	c := pipeline.NewCall(&req)
	r := c.Request
	if r.RequestID == "" {
		r.RequestID = m.newID()
	}
	c.ExplicitKey = r.IdempotencyKey != ""
	if !c.ExplicitKey {
		r.IdempotencyKey = r.RequestID
	}
	if o != nil {
		c.Wait, c.Await, c.ReplayOf, c.ReplayFailed, c.Rescue = o.wait, o.await, o.replayOf, o.replayFailed, o.rescue
		if o.rescue {
			c.ExplicitKey = true
		}
		if o.wait && m.api == nil {
			return nil, apiKeyRequired("Wait (following the execution)")
		}
	}
	if m.api == nil {
		res, err := m.pipe.Run(ctx, c)
		m.endCall(ctx, c, err)
		return res, err
	}
	var calls n8napi.CallCounter
	res, err := m.pipe.Run(n8napi.WithCallCounter(ctx, &calls), c)
	if res != nil {
		// A copy: calls deduplicated from this one read the result the
		// pipeline published as soon as it returned.
		r := *res
		r.APICalls = calls.Count()
		res = &r
	}
	m.endCall(ctx, c, err)
	return res, err
}

// endCall runs the call's after-commit actions when no journal did: with
// a journal they ran after its terminal write, or not at all when that
// write failed.
func (m *Manager) endCall(ctx context.Context, c *pipeline.Call, err error) {
	if m.dlq == nil && err == nil {
		c.Committed(context.WithoutCancel(ctx))
	}
}

// record ends the execution's span and feeds the metrics and tracers.
func (m *Manager) record(ctx context.Context, span trace.Span, c *pipeline.Call, res *invocation.Result, err error) {
	r := telemetry.Record{
		Workflow: c.Request.Workflow, RequestID: c.Request.RequestID, Code: invocation.CodeOf(err),
		Started: c.Started, Duration: time.Since(c.Started), Err: err, Attempts: invocation.AttemptsOf(err),
	}
	r.Outcome = telemetry.OutcomeLabel(r.Code)
	if res != nil {
		r.WorkflowID, r.ExecutionID, r.Attempts = res.WorkflowID, res.ExecutionID, res.Attempts
	}
	if err != nil {
		var fe *n8napi.ExecutionFailedError
		if errors.As(err, &fe) {
			r.ExecutionID = fe.ExecutionID
		}
		if r.Outcome == "failure" {
			r.Class = invocation.ClassOf(err).String()
		}
	}
	m.tel.EndExecution(ctx, span, &r)
	if len(m.tracers) > 0 {
		m.track(ctx, r)
	}
}

// track feeds the custom tracers, each isolated from the others' panics.
func (m *Manager) track(ctx context.Context, rec telemetry.Record) {
	r := &rec
	for _, t := range m.tracers {
		func() {
			defer func() {
				if p := recover(); p != nil {
					m.log.ErrorContext(ctx, "tracer panicked", "workflow", r.Workflow, "panic", fmt.Sprint(p))
				}
			}()
			t.TrackExecution(ctx, r)
		}()
	}
}

// runPre runs a pre-execution hook on a copy of ec, isolated: an error
// vetoes the call; a panic or a timeout is reported and ignored (the call
// goes on with the parameters as they were).
func (m *Manager) runPre(ctx context.Context, h hooks.Hook, ec *hooks.ExecutionContext) error {
	cp := *ec
	cp.Params = maps.Clone(ec.Params)
	var err error
	if m.isolate(ctx, hooks.StagePreExecution, ec.Workflow, func(hctx context.Context) { err = h.PreExecution(hctx, &cp) }) {
		if err == nil {
			ec.Params = cp.Params
		}
		return err
	}
	return nil
}

// safely runs a post or error hook, isolated.
func (m *Manager) safely(ctx context.Context, stage hooks.Stage, ec *hooks.ExecutionContext, f func(context.Context, *hooks.ExecutionContext)) {
	cp := *ec
	m.isolate(ctx, stage, ec.Workflow, func(hctx context.Context) { f(hctx, &cp) })
}

// isolate runs f with the hook timeout. It reports whether f returned in
// time without panicking; a panic or a timeout is logged and counted
// (n8n_invoker.hook.failures), never propagated.
func (m *Manager) isolate(ctx context.Context, stage hooks.Stage, workflow string, f func(context.Context)) bool {
	hctx, cancel := context.WithTimeout(ctx, m.cfg.Hooks.Timeout.D())
	defer cancel()
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		f(hctx)
	}()
	select {
	case p := <-done:
		if p == nil {
			return true
		}
		m.log.ErrorContext(ctx, "hook panicked", "stage", string(stage), "workflow", workflow, "panic", fmt.Sprint(p))
		m.tel.HookFailure(ctx, string(stage), "panic")
	case <-hctx.Done():
		m.log.ErrorContext(ctx, "hook timed out", "stage", string(stage), "workflow", workflow, "timeout", m.cfg.Hooks.Timeout.D())
		m.tel.HookFailure(ctx, string(stage), "timeout")
	}
	return false
}

// Close stops accepting work, waits until the work in flight ends or ctx
// is done, and releases the invoker's connections.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	if m.leases.cancelRescue != nil {
		m.leases.cancelRescue() // a background rescue ends; calls in flight keep their leases
	}
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("invoker: close: %w", ctx.Err())
	}
	m.stopLeases()
	if c, ok := m.transport.(interface{ Close() }); ok {
		c.Close()
	}
	if m.mcp != nil {
		m.mcp.Close()
	}
	if m.api != nil {
		m.api.Close()
	}
	if m.ownLimit != nil {
		_ = m.ownLimit.Close()
	}
	if m.ownDLQ != nil {
		return m.ownDLQ.Close()
	}
	return nil
}

// openSharedLimit opens the rate_limit section's shared limiter, unless
// WithRateLimiter gave one.
func (m *Manager) openSharedLimit() error {
	r := m.cfg.RateLimit
	if r.Backend == "" || m.rateLimit != nil {
		return nil
	}
	l, err := policy.OpenSharedLimit(context.Background(), r.Backend, policy.SharedLimitOptions{URL: r.URL, Key: r.Key,
		RequestsPerSecond: r.RequestsPerSecond, Burst: r.Burst, FallbackPerProcess: r.FallbackPerProcess, Logger: m.log,
		MaxPause: m.cfg.Invokers.HTTP.Retry.MaxRetryAfter.D()})
	if err != nil {
		return fmt.Errorf("invoker: rate_limit: %w", err)
	}
	m.rateLimit, m.ownLimit = l, l
	return nil
}

// closeOwned releases what New opened, when New fails.
func (m *Manager) closeOwned() {
	if m.mcp != nil {
		m.mcp.Close()
	}
	if m.ownTransport != nil {
		m.ownTransport.Close()
	}
	if m.ownDLQ != nil {
		_ = m.ownDLQ.Close()
	}
	if m.ownLimit != nil {
		_ = m.ownLimit.Close()
	}
}
