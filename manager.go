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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/httpinvoker"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
	"github.com/n8n-invoker/n8n-invoker/policy"
	"github.com/n8n-invoker/n8n-invoker/secret"
	"github.com/n8n-invoker/n8n-invoker/telemetry"
	"go.opentelemetry.io/otel/trace"
)

// Manager runs workflows through an Invoker and calls the hooks around
// them. It is safe for concurrent use.
type Manager struct {
	cfg          *config.Config
	inv          invocation.Invoker
	httpOpts     []httpinvoker.Option
	log          *slog.Logger
	newID        func() string
	guard        *policy.Guard
	api          *n8napi.Client
	dlq          DeadLetters
	tel          *telemetry.Telemetry
	telOpts      []telemetry.Option
	tracers      []telemetry.Tracer
	healthClient *http.Client
	keys         secret.Provider
	ownDLQ       interface{ Close() error }
	resolver     *n8napi.Resolver
	bulkhead     *policy.Bulkhead
	fallback     Fallback
	fallbackOn   func(error) bool
	onBreaker    func(endpoint string, from, to policy.State)

	mu     sync.RWMutex
	hooks  map[Stage][]ExecutionHook
	closed bool
	wg     sync.WaitGroup
}

// Option configures a Manager.
type Option func(*Manager) error

// WithInvoker replaces the HTTP webhook invoker, e.g. with another
// transport.
func WithInvoker(inv invocation.Invoker) Option {
	return func(m *Manager) error {
		if inv == nil {
			return errors.New("nil invoker")
		}
		m.inv = inv
		return nil
	}
}

// WithHTTPOptions passes options to the HTTP webhook invoker, after those
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
// system is degraded: a *CircuitOpenError, a *BudgetExhaustedError or a
// *BulkheadError (change that with WithFallbackFor).
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
	return errors.Is(err, invocation.ErrCircuitOpen) || errors.Is(err, invocation.ErrRetryBudgetExhausted) || errors.Is(err, invocation.ErrBulkheadFull)
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

// ReloadSecrets re-reads the API key from its source (the CLI calls it
// on SIGHUP). Calls in flight finish with the old key.
func (m *Manager) ReloadSecrets(ctx context.Context) (changed bool, err error) {
	if r, ok := m.keys.(secret.Reloader); ok {
		return r.Reload(ctx)
	}
	return false, nil
}

func keySourceFromConfig(cfg *config.Config) (secret.Provider, error) {
	if cfg.N8N.APIKeyFile != "" {
		f, err := secret.NewFile(cfg.N8N.APIKeyFile)
		if err != nil {
			return nil, &config.Error{Pos: cfg.PositionOf("n8n.api_key_file"), Field: "n8n.api_key_file", Msg: err.Error()}
		}
		return f, nil
	}
	return secret.Static(cfg.N8N.APIKey), nil
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
// random UUID).
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
		hooks: map[Stage][]ExecutionHook{},
	}
	for _, o := range opts {
		if err := o(m); err != nil {
			return nil, fmt.Errorf("invoker: %w", err)
		}
	}
	if m.fallbackOn == nil {
		m.fallbackOn = IsDegraded
	}
	m.log = slog.New(telemetry.RedactHandler(m.log.Handler(), cfg.SecretValues()...))
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
	h := &cfg.Invokers.HTTP
	if h.Bulkhead.MaxInFlight > 0 {
		m.bulkhead = policy.NewBulkhead(h.Bulkhead.MaxInFlight, h.Bulkhead.MaxWait.D())
	}
	tlsConf, err := httpinvoker.TLSFromConfig(cfg.N8N.TLS)
	if err != nil {
		return nil, err
	}
	if cfg.N8N.TLS.InsecureSkipVerify {
		m.log.Warn("TLS certificate verification of n8n is OFF (n8n.tls.insecure_skip_verify): anyone on the path can read and change the traffic")
	}
	m.healthClient.Transport.(*http.Transport).TLSClientConfig = tlsConf.Clone()
	var byID httpinvoker.Resolver = noAPI{}
	if !cfg.N8N.APIKey.IsZero() || cfg.N8N.APIKeyFile != "" || m.keys != nil || m.api != nil {
		if m.api == nil {
			if m.keys == nil {
				if m.keys, err = keySourceFromConfig(cfg); err != nil {
					return nil, err
				}
			}
			api, err := n8napi.NewClient(cfg.N8N.BaseURL, secret.Secret{}, n8napi.WithKeySource(m.keys), n8napi.WithTLSConfig(tlsConf))
			if err != nil {
				return nil, err
			}
			m.api = api
		}
		m.resolver = n8napi.NewResolver(m.api, 0, cfg.Credentials)
		byID = m.resolver
	}
	if m.inv == nil {
		guard, err := policy.GuardFromConfig(h, m.breakerChanged)
		if err != nil {
			return nil, err
		}
		m.guard = guard
		opts := []httpinvoker.Option{
			httpinvoker.WithGate(guard),
			httpinvoker.WithResolver(httpinvoker.Chain{httpinvoker.ResolverFromConfig(cfg), byID}),
		}
		if tel.Tracing() { // the attempt spans; without tracing, no wrapper in the hot path
			opts = append(opts, httpinvoker.WithRoundTripper(tel.RoundTripper))
		}
		opts = append(opts, m.httpOpts...)
		inv, err := httpinvoker.FromConfig(cfg, opts...)
		if err != nil {
			return nil, err
		}
		m.inv = inv
	}
	if err := m.openDLQ(); err != nil {
		return nil, err
	}
	if err := m.tel.ObserveBreakers(m.BreakerStates); err != nil {
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
		if m.ownDLQ != nil {
			_ = m.ownDLQ.Close()
		}
		return nil, err
	}
	return m, nil
}

func (m *Manager) breakerChanged(endpoint string, from, to policy.State) {
	m.log.Warn("circuit breaker changed state", "endpoint", endpoint, "from", from.String(), "to", to.String())
	if m.onBreaker != nil {
		m.onBreaker(endpoint, from, to)
	}
}

// BreakerStates returns the state of the circuit breaker of every
// workflow called so far (none when breakers are off or another Invoker
// is in use).
func (m *Manager) BreakerStates() []policy.BreakerState {
	if m.guard == nil || m.guard.Breakers == nil {
		return nil
	}
	return m.guard.Breakers.States()
}

// namedHooks registers the hooks the configuration names, in its order.
func (m *Manager) namedHooks() error {
	for _, st := range []struct {
		stage Stage
		refs  []config.HookRef
	}{{StagePreExecution, m.cfg.Hooks.PreExecution}, {StagePostExecution, m.cfg.Hooks.PostExecution}, {StageError, m.cfg.Hooks.Error}} {
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
		}
	}
	return nil
}

// Config returns the manager's configuration. Do not modify it.
func (m *Manager) Config() *config.Config { return m.cfg }

// RegisterHook adds hook to run at stage, after those already registered.
func (m *Manager) RegisterHook(stage Stage, hook ExecutionHook) error {
	if !stage.valid() {
		return fmt.Errorf("invoker: unknown hook stage %q (want pre_execution, post_execution or error)", stage)
	}
	if hook == nil {
		return errors.New("invoker: nil hook")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hooks[stage] = append(m.hooks[stage], hook)
	return nil
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
	if req.RequestID == "" {
		req.RequestID = m.newID()
	}
	explicitKey := req.IdempotencyKey != ""
	if !explicitKey {
		req.IdempotencyKey = req.RequestID
	}
	m.mu.RLock()
	pre, post, onErr := m.hooks[StagePreExecution], m.hooks[StagePostExecution], m.hooks[StageError]
	m.mu.RUnlock()

	ec := &ExecutionContext{
		Workflow: req.Workflow, Params: req.Params, RequestID: req.RequestID,
		IdempotencyKey: req.IdempotencyKey, StartedAt: time.Now(),
	}
	ctx, span := m.tel.StartExecution(ctx, req.Workflow, req.RequestID)
	var (
		res *invocation.Result
		err error
	)
	defer func() { m.record(ctx, span, ec, res, err) }()
	if len(pre) > 0 && req.Body == nil {
		// Pre hooks may change the parameters: give them a copy, never the
		// caller's map.
		ec.Params = maps.Clone(req.Params)
		if ec.Params == nil {
			ec.Params = map[string]any{}
		}
	}
	fail := func(e error) (*invocation.Result, error) {
		err = e
		ec.Err, ec.Duration = err, time.Since(ec.StartedAt)
		if !invocation.IsCanceled(err) {
			for _, h := range onErr {
				m.safely(ctx, StageError, ec, h.OnError)
			}
		}
		return nil, err
	}
	for _, h := range pre {
		if err := m.runPre(ctx, h, ec); err != nil {
			return fail(&HookError{Stage: StagePreExecution, Workflow: req.Workflow, Err: err})
		}
	}
	req.Params = ec.Params
	if m.dlq != nil {
		var replayOf int64
		if o != nil {
			replayOf = o.replayOf
		}
		res, err = m.journaled(ctx, &req, explicitKey, replayOf, func() (*invocation.Result, error) {
			return m.call(ctx, &req, o, ec.StartedAt)
		})
	} else {
		res, err = m.call(ctx, &req, o, ec.StartedAt)
	}
	if err != nil {
		return fail(err)
	}
	ec.Result, ec.Duration = res, time.Since(ec.StartedAt)
	for _, h := range post {
		m.safely(ctx, StagePostExecution, ec, h.PostExecution)
	}
	return res, nil
}

// call invokes req and, with Wait, follows the execution to its end.
func (m *Manager) call(ctx context.Context, req *invocation.Request, o *callOptions, started time.Time) (*invocation.Result, error) {
	res, err := m.invoke(ctx, req)
	if o != nil && o.wait && (err == nil || errors.Is(err, invocation.ErrWorkflowFailed)) && (res == nil || !res.Degraded) {
		if res, err = m.await(ctx, req, res, err, o); err == nil {
			res.Duration = time.Since(started)
		}
	}
	return res, err
}

// invoke calls the invoker inside the bulkhead and runs the fallback for
// a degraded failure.
func (m *Manager) invoke(ctx context.Context, req *invocation.Request) (*invocation.Result, error) {
	var (
		res *invocation.Result
		err error
	)
	if m.bulkhead != nil {
		var release func()
		if release, err = m.bulkhead.Acquire(ctx, req.Workflow); err == nil {
			res, err = m.inv.Invoke(ctx, req)
			release()
		}
	} else {
		res, err = m.inv.Invoke(ctx, req)
	}
	if err == nil || m.fallback == nil || invocation.IsCanceled(err) || !m.fallbackOn(err) {
		return res, err
	}
	res, ferr := m.fallback(ctx, req, err)
	if ferr != nil {
		return nil, ferr
	}
	if res == nil {
		return nil, err
	}
	res.Degraded = true
	return res, nil
}

// record ends the execution's span and feeds the metrics and tracers.
func (m *Manager) record(ctx context.Context, span trace.Span, ec *ExecutionContext, res *invocation.Result, err error) {
	r := &telemetry.Record{
		Workflow: ec.Workflow, RequestID: ec.RequestID, Outcome: telemetry.OutcomeOf(err),
		Started: ec.StartedAt, Duration: time.Since(ec.StartedAt), Err: err, Attempts: invocation.AttemptsOf(err),
	}
	if res != nil {
		r.WorkflowID, r.ExecutionID, r.Attempts = res.WorkflowID, res.ExecutionID, res.Attempts
	}
	var fe *invocation.ExecutionFailedError
	if errors.As(err, &fe) {
		r.ExecutionID = fe.ExecutionID
	}
	if r.Outcome == "failure" {
		r.Class = invocation.ClassOf(err).String()
	}
	m.tel.EndExecution(ctx, span, r)
	for _, t := range m.tracers {
		func() {
			defer func() {
				if p := recover(); p != nil {
					m.log.ErrorContext(ctx, "tracer panicked", "workflow", ec.Workflow, "panic", fmt.Sprint(p))
				}
			}()
			t.TrackExecution(ctx, r)
		}()
	}
}

// runPre runs a pre-execution hook on a copy of ec, isolated: an error
// vetoes the call; a panic or a timeout is reported and ignored (the call
// goes on with the parameters as they were).
func (m *Manager) runPre(ctx context.Context, h ExecutionHook, ec *ExecutionContext) error {
	cp := *ec
	cp.Params = maps.Clone(ec.Params)
	var err error
	if m.isolate(ctx, StagePreExecution, ec.Workflow, func(hctx context.Context) { err = h.PreExecution(hctx, &cp) }) {
		if err == nil {
			ec.Params = cp.Params
		}
		return err
	}
	return nil
}

// safely runs a post or error hook, isolated.
func (m *Manager) safely(ctx context.Context, stage Stage, ec *ExecutionContext, f func(context.Context, *ExecutionContext)) {
	cp := *ec
	m.isolate(ctx, stage, ec.Workflow, func(hctx context.Context) { f(hctx, &cp) })
}

// isolate runs f with the hook timeout. It reports whether f returned in
// time without panicking; a panic or a timeout is logged and counted
// (n8n_invoker.hook.failures), never propagated.
func (m *Manager) isolate(ctx context.Context, stage Stage, workflow string, f func(context.Context)) bool {
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
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("invoker: close: %w", ctx.Err())
	}
	if c, ok := m.inv.(interface{ Close() }); ok {
		c.Close()
	}
	if m.api != nil {
		m.api.Close()
	}
	if m.ownDLQ != nil {
		return m.ownDLQ.Close()
	}
	return nil
}
