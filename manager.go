package invoker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/httpinvoker"
)

// DefaultMaxConcurrent is ExecuteBatch's concurrency when maxConcurrent is 0.
const DefaultMaxConcurrent = 5

// Manager runs workflows through an Invoker and calls the hooks around
// them. It is safe for concurrent use.
type Manager struct {
	cfg      *config.Config
	inv      Invoker
	httpOpts []httpinvoker.Option
	log      *slog.Logger
	newID    func() string

	mu     sync.RWMutex
	hooks  map[Stage][]ExecutionHook
	closed bool
	wg     sync.WaitGroup
}

// Option configures a Manager.
type Option func(*Manager) error

// WithInvoker replaces the HTTP webhook invoker, e.g. with another
// transport.
func WithInvoker(inv Invoker) Option {
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
		newID: uuid.NewString,
		hooks: map[Stage][]ExecutionHook{},
	}
	for _, o := range opts {
		if err := o(m); err != nil {
			return nil, fmt.Errorf("invoker: %w", err)
		}
	}
	if m.inv == nil {
		inv, err := httpinvoker.FromConfig(cfg, m.httpOpts...)
		if err != nil {
			return nil, err
		}
		m.inv = inv
	}
	for stage, refs := range map[Stage][]config.HookRef{
		StagePreExecution: cfg.Hooks.PreExecution, StagePostExecution: cfg.Hooks.PostExecution, StageError: cfg.Hooks.Error,
	} {
		for i, r := range refs {
			mk, ok := builtinHooks[r.Name]
			if !ok {
				return nil, &config.Error{Pos: r.Pos, Field: fmt.Sprintf("hooks.%s[%d]", stage, i),
					Msg: fmt.Sprintf("unknown hook %q (available: %s)", r.Name, strings.Join(slices.Sorted(maps.Keys(builtinHooks)), ", "))}
			}
			m.hooks[stage] = append(m.hooks[stage], mk(m))
		}
	}
	return m, nil
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

// ExecuteWorkflow runs the workflow named workflowID (a configured name
// such as "user-onboarding") with params as its JSON body.
func (m *Manager) ExecuteWorkflow(ctx context.Context, workflowID string, params map[string]any) (*Result, error) {
	return m.Execute(ctx, &Request{Workflow: workflowID, Params: params})
}

// Execute runs one request. An empty RequestID gets a new one; an empty
// IdempotencyKey takes the RequestID.
func (m *Manager) Execute(ctx context.Context, req *Request) (*Result, error) {
	if !m.enter() {
		return nil, ErrClosed
	}
	defer m.wg.Done()
	return m.execute(ctx, *req)
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

func (m *Manager) execute(ctx context.Context, req Request) (*Result, error) {
	if req.RequestID == "" {
		req.RequestID = m.newID()
	}
	if req.IdempotencyKey == "" {
		req.IdempotencyKey = req.RequestID
	}
	m.mu.RLock()
	pre, post, onErr := m.hooks[StagePreExecution], m.hooks[StagePostExecution], m.hooks[StageError]
	m.mu.RUnlock()

	ec := &ExecutionContext{
		Workflow: req.Workflow, Params: req.Params, RequestID: req.RequestID,
		IdempotencyKey: req.IdempotencyKey, StartedAt: time.Now(),
	}
	if len(pre) > 0 && req.Body == nil {
		// Pre hooks may change the parameters: give them a copy, never the
		// caller's map.
		ec.Params = maps.Clone(req.Params)
		if ec.Params == nil {
			ec.Params = map[string]any{}
		}
	}
	fail := func(err error) (*Result, error) {
		ec.Err, ec.Duration = err, time.Since(ec.StartedAt)
		if !IsCanceled(err) {
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
	res, err := m.inv.Invoke(ctx, &req)
	if err != nil {
		return fail(err)
	}
	ec.Result, ec.Duration = res, time.Since(ec.StartedAt)
	for _, h := range post {
		m.safely(ctx, StagePostExecution, ec, h.PostExecution)
	}
	return res, nil
}

func (m *Manager) runPre(ctx context.Context, h ExecutionHook, ec *ExecutionContext) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("hook panicked: %v", p)
		}
	}()
	return h.PreExecution(ctx, ec)
}

// safely runs a post or error hook; a panic is logged, never propagated.
func (m *Manager) safely(ctx context.Context, stage Stage, ec *ExecutionContext, f func(context.Context, *ExecutionContext)) {
	defer func() {
		if p := recover(); p != nil {
			m.log.ErrorContext(ctx, "hook panicked", "stage", string(stage), "workflow", ec.Workflow, "panic", fmt.Sprint(p))
		}
	}()
	f(ctx, ec)
}

// BatchItem is one item of a batch, as in the design's
// {"id": ..., "params": ...}.
type BatchItem struct {
	// ID is the workflow name.
	ID string `json:"id"`
	// Params are the workflow's parameters.
	Params map[string]any `json:"params"`
	// IdempotencyKey, when set, is sent instead of the request id.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// BatchResult is the outcome of one BatchItem: Result or Err is set.
// Items that were not started because ctx was canceled have the
// context's error.
type BatchResult struct {
	Index  int
	Item   BatchItem
	Result *Result
	Err    error
}

// ExecuteBatch runs items with at most maxConcurrent in flight (0 means
// DefaultMaxConcurrent) and returns one BatchResult per item, in input
// order. A failed item does not stop the others. When ctx is canceled,
// items not yet started get the context's error. The error is non-nil
// only when the batch could not start.
func (m *Manager) ExecuteBatch(ctx context.Context, items []BatchItem, maxConcurrent int) ([]BatchResult, error) {
	if maxConcurrent < 0 {
		return nil, fmt.Errorf("invoker: maxConcurrent must not be negative, got %d", maxConcurrent)
	}
	if maxConcurrent == 0 {
		maxConcurrent = DefaultMaxConcurrent
	}
	if !m.enter() {
		return nil, ErrClosed
	}
	defer m.wg.Done()

	results := make([]BatchResult, len(items))
	sem := make(chan struct{}, maxConcurrent)
	var wg sync.WaitGroup
	for i, it := range items {
		results[i] = BatchResult{Index: i, Item: it}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if err := ctx.Err(); err != nil {
			for j := i; j < len(items); j++ {
				results[j] = BatchResult{Index: j, Item: items[j], Err: err}
			}
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i].Result, results[i].Err = m.execute(ctx, Request{
				Workflow: it.ID, Params: it.Params, IdempotencyKey: it.IdempotencyKey,
			})
		})
	}
	wg.Wait()
	return results, nil
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
	return nil
}
