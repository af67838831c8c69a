// Package outbox is durable submission (the transactional outbox):
// Enqueue returns once an invocation is stored, and workers (in this
// process or in others sharing the store) deliver stored invocations
// through the manager's whole pipeline: journal and lease, reconcile,
// retries, breaker pause, dead-lettering. An invocation's status and
// result are queryable by its id, and a caller that wants the result
// awaits it.
//
// One source of truth: the store's submissions hold each invocation's
// status and result; the journal, the idempotency records and the dead
// letters stay the store's. Each delivery is one call of the pipeline (the
// pipeline does the retrying); an invocation is delivered again only when
// its worker died or stopped mid-call, and the journal's lease and
// reconcile then decide whether n8n already ran it.
//
// Open picks the engine of the manager's store: on the embedded SQLite
// store the store's own submissions table (Local); on PostgreSQL River,
// registered by contrib/postgres/outbox, whose EnqueueTx takes the
// caller's own transaction.
package outbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Statuses of an invocation.
const (
	Queued       = dlq.SubmissionQueued
	Running      = dlq.SubmissionRunning
	Succeeded    = dlq.SubmissionSucceeded
	Failed       = dlq.SubmissionFailed
	DeadLettered = dlq.SubmissionDeadLettered
)

// Statuses lists every status, in the order an invocation passes them.
var Statuses = []string{Queued, Running, Succeeded, Failed, DeadLettered}

// Defaults of Options (and of the configuration's queue section).
const (
	DefaultWorkers    = config.DefaultQueueWorkers
	DefaultJobTimeout = config.DefaultQueueJobTimeout
	DefaultPoll       = config.DefaultQueuePoll
	DefaultQueue      = config.DefaultQueueName
	// MaxDeliveries bounds how often one invocation is delivered again
	// after its workers died or stopped mid-call; then it is failed.
	MaxDeliveries = 25
)

// ErrNotFound is returned for an invocation id the store does not have.
var ErrNotFound = errors.New("outbox: no such invocation")

// ErrInvalid matches a request refused before anything is stored: no
// workflow, a body that is not JSON.
var ErrInvalid = errors.New("outbox: invalid request")

// Conflict returns the error of an Enqueue of an idempotency key already
// stored (as invocation existing, when known) with another workflow or
// other parameters: code invocation.CodeKeyConflict; nothing is stored.
func Conflict(key, existing string) *invocation.Error {
	msg := fmt.Sprintf("outbox: idempotency key %q is already stored with another workflow or parameters", key)
	if existing != "" {
		msg = fmt.Sprintf("outbox: idempotency key %q is already stored as invocation %s with another workflow or parameters", key, existing)
	}
	return &invocation.Error{Code: invocation.CodeKeyConflict, Key: key, Message: msg}
}

// Options configure an outbox; zero values mean defaults.
type Options struct {
	// Workers is how many invocations this process delivers at once
	// (default DefaultWorkers); negative: none (a process that only
	// enqueues).
	Workers int
	// JobTimeout bounds one delivery (a call's retries, breaker pause
	// and reconcile; default DefaultJobTimeout); a delivery cut by it is
	// delivered again, after a reconcile.
	JobTimeout time.Duration
	// Poll is how often idle workers look for work queued by other
	// processes (Local; default DefaultPoll).
	Poll time.Duration
	// Queue is River's queue name (PostgreSQL; default DefaultQueue).
	Queue string
}

// OptionsFromConfig returns the options of a configuration's queue
// section.
func OptionsFromConfig(q config.Queue) Options {
	return Options{Workers: q.Workers, JobTimeout: q.JobTimeout.D(), Poll: q.Poll.D(), Queue: q.Name}
}

func (o Options) withDefaults() Options {
	if o.Workers == 0 {
		o.Workers = DefaultWorkers
	}
	if o.JobTimeout <= 0 {
		o.JobTimeout = DefaultJobTimeout
	}
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.Queue == "" {
		o.Queue = DefaultQueue
	}
	return o
}

// Filter selects invocations; zero fields select all.
type Filter struct {
	Status   string
	Workflow string
	// Limit bounds the answer (default 100).
	Limit int
}

// Invocation is a stored invocation and what became of it.
type Invocation struct {
	ID             string             `json:"id"`
	Workflow       string             `json:"workflow"`
	IdempotencyKey string             `json:"idempotency_key"`
	Status         string             `json:"status"`
	Result         *invocation.Result `json:"result,omitempty"`
	Error          string             `json:"error,omitempty"`
	Class          string             `json:"class,omitempty"`
	DeadLetter     int64              `json:"dead_letter,omitempty"`
	Deliveries     int                `json:"deliveries"`
	CreatedAt      time.Time          `json:"created_at"`
	UpdatedAt      time.Time          `json:"updated_at"`
}

// Done reports whether the invocation has ended.
func (i *Invocation) Done() bool {
	return i.Status == Succeeded || i.Status == Failed || i.Status == DeadLettered
}

// Queue is durable submission on one store.
type Queue interface {
	// Enqueue stores req and returns its id once it is durable. A
	// request without an idempotency key gets the invocation's id as its
	// key; a key already stored with the same workflow and parameters
	// returns the stored invocation's id (nothing new is stored), with
	// others an error of code invocation.CodeKeyConflict (Conflict).
	Enqueue(ctx context.Context, req *invocation.Request) (string, error)
	// Get returns invocation id, or ErrNotFound.
	Get(ctx context.Context, id string) (*Invocation, error)
	// Await waits until invocation id has ended, whichever process
	// delivers it, and returns it.
	Await(ctx context.Context, id string) (*Invocation, error)
	// List returns invocations, newest first.
	List(ctx context.Context, f Filter) ([]*Invocation, error)
	// Start starts this process's workers (none with Workers < 0).
	Start(ctx context.Context) error
	// Stop stops the workers: deliveries in flight may finish until ctx
	// ends; one cut short is given back, and delivered again after a
	// reconcile.
	Stop(ctx context.Context) error
}

// Submitter is a Queue that tells a new submission from a repeated one:
// Submit is Enqueue, and created is false when req's idempotency key was
// stored before with the same workflow and parameters (the service
// answers 200 with the existing invocation then, 202 for a new one).
// Both engines of this module are Submitters.
type Submitter interface {
	Submit(ctx context.Context, req *invocation.Request) (id string, created bool, err error)
}

// Opener opens the queue of a store backend.
type Opener func(ctx context.Context, m *invoker.Manager, o Options) (Queue, error)

var (
	regMu   sync.RWMutex
	openers = map[string]Opener{}
)

// Register makes a store backend's queue available to Open (the
// PostgreSQL module registers "postgres").
func Register(backend string, open Opener) error {
	if backend == "" || open == nil {
		return errors.New("outbox: Register needs a backend name and an opener")
	}
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := openers[backend]; dup {
		return fmt.Errorf("outbox: backend %q is already registered", backend)
	}
	openers[backend] = open
	return nil
}

// Backends lists the store backends with a queue: sqlite and the
// registered ones.
func Backends() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	out := []string{dlq.BackendSQLite}
	for name := range openers {
		out = append(out, name)
	}
	sort.Strings(out[1:])
	return out
}

// Open returns the queue of m's store: Local on a store that queues
// submissions itself (SQLite), else the engine registered for the
// store's backend. o nil means the options of m's configuration (its
// queue section). The journal must be on (dlq.enabled): it is what keeps
// a delivery from running twice.
func Open(ctx context.Context, m *invoker.Manager, o *Options) (Queue, error) {
	if m == nil {
		return nil, errors.New("outbox: a manager is required")
	}
	opt := OptionsFromConfig(m.Config().Queue)
	if o != nil {
		opt = *o
	}
	store := m.DLQ()
	if store == nil {
		return nil, errors.New("outbox: durable submission needs the store's journal: set dlq.enabled: true")
	}
	if subs, ok := store.(dlq.Submissions); ok {
		return NewLocal(subs, m, opt)
	}
	backend := m.Config().Store.Backend
	regMu.RLock()
	open := openers[backend]
	regMu.RUnlock()
	if open == nil {
		return nil, fmt.Errorf("outbox: store backend %q has no queue (available: %v; the PostgreSQL one registers when contrib/postgres/outbox is imported)", backend, Backends())
	}
	return open(ctx, m, opt)
}

// NewID returns a new invocation id.
func NewID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "inv_" + hex.EncodeToString(b)
}

// Encode returns what a store keeps of req: its key (the id when it has
// none), its body and its path parameters. It checks the request first.
func Encode(req *invocation.Request, id string) (key string, params, pathParams json.RawMessage, err error) {
	if req == nil || req.Workflow == "" {
		return "", nil, nil, fmt.Errorf("%w: no workflow", ErrInvalid)
	}
	params = req.Body
	if len(params) == 0 && req.Params != nil {
		if params, err = json.Marshal(req.Params); err != nil {
			return "", nil, nil, fmt.Errorf("%w: params: %w", ErrInvalid, err)
		}
	}
	if len(params) > 0 && !json.Valid(params) {
		return "", nil, nil, fmt.Errorf("%w: the body is not valid JSON", ErrInvalid)
	}
	if len(req.PathParams) > 0 {
		pathParams, _ = json.Marshal(req.PathParams)
	}
	key = req.IdempotencyKey
	if key == "" {
		key = id
	}
	return key, params, pathParams, nil
}

// Decode is the request a stored invocation delivers.
func Decode(workflow, key string, params, pathParams []byte) *invocation.Request {
	req := &invocation.Request{Workflow: workflow, IdempotencyKey: key}
	if len(params) > 0 {
		req.Body = params
	}
	if len(pathParams) > 0 {
		_ = json.Unmarshal(pathParams, &req.PathParams)
	}
	return req
}

// SameJSON reports whether two stored bodies are the same JSON value.
func SameJSON(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return string(a) == string(b)
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}

// CheckWorkflow refuses, before anything is stored, a workflow that m
// neither has configured nor finds in n8n. When n8n cannot be asked the
// invocation is stored (durable submission works while n8n is down).
func CheckWorkflow(ctx context.Context, m *invoker.Manager, workflow string) error {
	if _, ok := m.Config().Workflows[workflow]; ok {
		return nil
	}
	if m.API() == nil {
		return unknown(m, workflow)
	}
	if _, err := m.WorkflowID(ctx, workflow); err != nil && errors.Is(err, invocation.ErrUnknownWorkflow) {
		return err
	}
	return nil
}

func unknown(m *invoker.Manager, workflow string) error {
	known := m.Config().WorkflowNames()
	slices.Sort(known)
	return fmt.Errorf("outbox: %w %q (configured: %v; without an API key workflows are run by alias only)", invocation.ErrUnknownWorkflow, workflow, known)
}

// Outcome is what a delivery's end records: succeeded with the result,
// dead-lettered with the entry, else failed with the error and its class.
func Outcome(res *invocation.Result, err error) (status string, result json.RawMessage, info dlq.ErrorInfo, deadLetter int64) {
	if err == nil {
		result, _ = json.Marshal(res)
		return Succeeded, result, dlq.ErrorInfo{}, 0
	}
	info = dlq.ErrorInfo{Class: invocation.ClassOf(err).String(), Message: err.Error()}
	if id := invocation.DeadLetterOf(err); id != 0 {
		return DeadLettered, nil, info, id
	}
	return Failed, nil, info, 0
}

// AwaitPoll waits until get says the invocation has ended, polling with
// a growing interval (50 ms to 1 s).
func AwaitPoll(ctx context.Context, get func(context.Context) (*Invocation, error)) (*Invocation, error) {
	wait := 50 * time.Millisecond
	for {
		inv, err := get(ctx)
		if err != nil || inv.Done() {
			return inv, err
		}
		if err := invocation.Sleep(ctx, wait); err != nil {
			return inv, err
		}
		wait = min(2*wait, time.Second)
	}
}
