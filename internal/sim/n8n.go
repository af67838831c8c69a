package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Faults are the probabilities (0..1) of n8n's faults, drawn per send
// that reaches n8n and per API request.
type Faults struct {
	// Refused: the connection is refused (nothing sent, nothing run).
	Refused float64
	// Unavailable: n8n answers 503 before running anything.
	Unavailable float64
	// Lost: the workflow runs, its answer is lost (a reset after the
	// request was written: TransportError{Sent: true}).
	Lost float64
	// Answer5xx: the workflow runs and succeeds but answers 500 through a
	// Respond to Webhook node (the workflow's own answer).
	Answer5xx float64
	// Fail: the workflow runs and fails (500 "Error in workflow").
	Fail float64
	// Crash: n8n crashes while running it: the execution ends "crashed"
	// with no data (its request headers are not saved), the client gets
	// an empty reply.
	Crash float64
	// Long: the execution runs between LongMin and LongMax.
	Long             float64
	LongMin, LongMax time.Duration
	// APIFail: an executions API request answers 503 (or 500).
	APIFail float64
	// APISlow: an executions API request takes up to APISlowMax.
	APISlow    float64
	APISlowMax time.Duration
}

// Execution is one execution n8n recorded: every send that reached n8n
// and ran makes one.
type Execution struct {
	ID         int64
	WorkflowID string
	// Key and RequestID are the request's Idempotency-Key and
	// X-Request-Id headers.
	Key, RequestID string
	// Proc is the process that sent it.
	Proc    string
	Started time.Time
	Ends    time.Time
	// Final is the status it ends with.
	Final string
	// Held is how long a pause of its process held the send after the
	// fence let it through (the documented residual when longer than a
	// third of the lease).
	Held time.Duration
	// Pruned executions are gone from n8n's API (the ledger keeps them).
	Pruned bool
}

// StatusAt returns the execution's status at t.
func (e *Execution) StatusAt(t time.Time) string {
	if t.Before(e.Ends) {
		return "running"
	}
	return e.Final
}

// N8N is a simulated n8n: a webhook transport per process that records
// executions by idempotency key with faults drawn from the seed, and an
// executions API (an http.RoundTripper per process) that answers from
// the same executions as n8n's /api/v1/executions does.
type N8N struct {
	// Seed draws the faults.
	Seed uint64
	// WorkflowID is the workflow's n8n id.
	WorkflowID string
	// Faults are the faults while they are on.
	Faults Faults
	// Timeout is the webhook transport's attempt timeout when the target
	// has none (the httpinvoker default, 30s, when zero).
	Timeout time.Duration

	mu      sync.Mutex
	off     bool
	execs   []*Execution
	sends   map[string]uint64
	apiRand *rand.Rand
	apiN    uint64
}

// NewN8N returns a simulated n8n with no executions.
func NewN8N(seed uint64, workflowID string, f Faults) *N8N {
	return &N8N{Seed: seed, WorkflowID: workflowID, Faults: f, sends: map[string]uint64{},
		apiRand: rand.New(rand.NewPCG(seed, 0x5eed)), Timeout: 30 * time.Second}
}

// StopFaults turns every fault off: from now on each send runs and
// answers at once, and the API answers every request.
func (n *N8N) StopFaults() {
	n.mu.Lock()
	n.off = true
	n.mu.Unlock()
}

// Executions returns a copy of every execution recorded, pruned ones
// included, oldest first.
func (n *N8N) Executions() []Execution {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Execution, len(n.execs))
	for i, e := range n.execs {
		out[i] = *e
	}
	return out
}

// Prune removes from the API the executions that ended before age ago,
// as n8n's execution retention does.
func (n *N8N) Prune(age time.Duration) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	cut, k := time.Now().Add(-age), 0
	for _, e := range n.execs {
		if !e.Pruned && e.Ends.Before(cut) {
			e.Pruned = true
			k++
		}
	}
	return k
}

// keyRand is the random source of the n-th send of key: each key's faults
// depend on the seed and its own history, not on the order in which
// processes reach n8n.
func (n *N8N) keyRand(key string, nth uint64) *rand.Rand {
	h := fnv.New64a()
	_, _ = io.WriteString(h, key)
	return rand.New(rand.NewPCG(n.Seed, h.Sum64()^(nth*0x9e3779b97f4a7c15)))
}

// Transport returns the webhook transport of process p.
func (n *N8N) Transport(p *Proc) invocation.Transport {
	return invocation.TransportFunc(func(ctx context.Context, a *invocation.Attempt) (*invocation.Result, error) {
		return n.attempt(ctx, p, a)
	})
}

type answer int

const (
	answerOK answer = iota
	answerLost
	answer500
	answerFailed
	answerCrash
)

func (n *N8N) attempt(ctx context.Context, p *Proc, a *invocation.Attempt) (*invocation.Result, error) {
	req := a.Request
	wf := req.Workflow
	url := "http://n8n.sim/webhook/" + a.Target.Path
	held, err := p.gate() // a paused process sends when it wakes up
	if err != nil {
		return nil, &invocation.TransportError{Workflow: wf, Method: http.MethodPost, URL: url, Err: syscall.ECONNREFUSED}
	}
	if ctx.Err() != nil {
		return nil, invocation.NewCanceled(ctx, wf, a.Number, false)
	}
	timeout := a.Target.Timeout
	if timeout <= 0 {
		timeout = n.Timeout
	}
	n.mu.Lock()
	n.sends[req.IdempotencyKey]++
	r := n.keyRand(req.IdempotencyKey, n.sends[req.IdempotencyKey])
	f, off := n.Faults, n.off
	dur := time.Duration(10+r.IntN(490)) * time.Millisecond
	ans, final := answerOK, "success"
	if !off {
		switch u := r.Float64(); {
		case u < f.Refused:
			n.mu.Unlock()
			return nil, &invocation.TransportError{Workflow: wf, Method: http.MethodPost, URL: url, Err: syscall.ECONNREFUSED}
		case u < f.Refused+f.Unavailable:
			n.mu.Unlock()
			return nil, &invocation.HTTPError{Workflow: wf, Method: http.MethodPost, URL: url, StatusCode: http.StatusServiceUnavailable,
				Message: "Service Unavailable", Body: []byte(`{"message":"Service Unavailable"}`)}
		}
		if r.Float64() < f.Long && f.LongMax > f.LongMin {
			dur = f.LongMin + time.Duration(r.Int64N(int64(f.LongMax-f.LongMin)))
		}
		switch u := r.Float64(); {
		case u < f.Crash:
			ans, final = answerCrash, "crashed"
		case u < f.Crash+f.Fail:
			ans, final = answerFailed, "error"
		case u < f.Crash+f.Fail+f.Answer5xx:
			ans = answer500
		case u < f.Crash+f.Fail+f.Answer5xx+f.Lost:
			ans = answerLost
		}
	}
	now := time.Now()
	e := &Execution{ID: int64(len(n.execs) + 1), WorkflowID: n.WorkflowID, Key: req.IdempotencyKey, RequestID: req.RequestID,
		Proc: p.Name, Started: now, Ends: now.Add(dur), Final: final, Held: held}
	n.execs = append(n.execs, e)
	n.mu.Unlock()

	wait := min(dur, timeout)
	if ans == answerLost {
		wait = time.Duration(r.Int64N(int64(wait) + 1)) // the reset comes at any time
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, invocation.NewCanceled(ctx, wf, a.Number, true)
	case <-p.Dead():
		return nil, &invocation.TransportError{Workflow: wf, Method: http.MethodPost, URL: url, Sent: true, Err: syscall.ECONNRESET}
	case <-t.C:
	}
	switch {
	case dur > timeout && ans != answerLost:
		return nil, &invocation.TransportError{Workflow: wf, Method: http.MethodPost, URL: url, Sent: true, TimedOut: true,
			Err: fmt.Errorf("timeout awaiting response headers after %s", timeout)}
	case ans == answerLost:
		return nil, &invocation.TransportError{Workflow: wf, Method: http.MethodPost, URL: url, Sent: true, Err: syscall.ECONNRESET}
	case ans == answerCrash:
		return nil, &invocation.TransportError{Workflow: wf, Method: http.MethodPost, URL: url, Sent: true, Err: io.ErrUnexpectedEOF}
	case ans == answerFailed:
		return nil, &invocation.HTTPError{Workflow: wf, Method: http.MethodPost, URL: url, StatusCode: 500, Message: "Error in workflow",
			Body: []byte(`{"message":"Error in workflow"}`), WorkflowFailed: true}
	case ans == answer500:
		return nil, &invocation.HTTPError{Workflow: wf, Method: http.MethodPost, URL: url, StatusCode: 500, Message: "order rejected",
			Body: []byte(`{"message":"order rejected"}`)}
	}
	out, _ := json.Marshal(map[string]any{"key": req.IdempotencyKey, "ok": true})
	return &invocation.Result{Workflow: wf, RequestID: req.RequestID, StatusCode: 200, ContentType: "application/json", Output: out, Completed: true}, nil
}

// API returns the executions API of n8n as process p reaches it: an
// http.RoundTripper for an n8napi client (no sockets).
func (n *N8N) API(p *Proc) http.RoundTripper { return apiTransport{n: n, p: p} }

type apiTransport struct {
	n *N8N
	p *Proc
}

func (t apiTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
	if _, err := t.p.gate(); err != nil {
		return nil, fmt.Errorf("dial tcp n8n.sim:443: %w", syscall.ECONNREFUSED)
	}
	n := t.n
	n.mu.Lock()
	fail, slow := false, time.Duration(0)
	if !n.off {
		fail = n.apiRand.Float64() < n.Faults.APIFail
		if n.apiRand.Float64() < n.Faults.APISlow && n.Faults.APISlowMax > 0 {
			slow = time.Duration(n.apiRand.Int64N(int64(n.Faults.APISlowMax)))
		}
	}
	n.apiN++
	n.mu.Unlock()
	if slow > 0 {
		tm := time.NewTimer(slow)
		select {
		case <-r.Context().Done():
			tm.Stop()
			return nil, r.Context().Err()
		case <-tm.C:
		}
	}
	if fail {
		return respond(r, http.StatusServiceUnavailable, map[string]any{"message": "Service Unavailable"}), nil
	}
	if r.Method != http.MethodGet {
		return respond(r, http.StatusNotFound, map[string]any{"message": "Not Found"}), nil
	}
	path := strings.TrimPrefix(r.URL.Path, "/api/v1/")
	q := r.URL.Query()
	data := q.Get("includeData") == "true"
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case path == "executions":
		return n.list(r, q, data, now), nil
	case strings.HasPrefix(path, "executions/"):
		id, err := strconv.ParseInt(strings.TrimPrefix(path, "executions/"), 10, 64)
		if err != nil {
			return respond(r, http.StatusBadRequest, map[string]any{"message": "invalid id"}), nil
		}
		if id < 1 || int(id) > len(n.execs) || n.execs[id-1].Pruned {
			return respond(r, http.StatusNotFound, map[string]any{"message": "Not Found"}), nil
		}
		return respond(r, http.StatusOK, execJSON(n.execs[id-1], data, now)), nil
	case strings.HasPrefix(path, "workflows/"):
		// The workflow, as the reconcile reads its saved-execution
		// settings (n8n's defaults: every execution saved).
		id := strings.TrimPrefix(path, "workflows/")
		return respond(r, http.StatusOK, map[string]any{"id": id, "name": id, "active": true, "nodes": []any{}, "connections": map[string]any{},
			"settings": map[string]any{"executionOrder": "v1"}}), nil
	}
	return respond(r, http.StatusNotFound, map[string]any{"message": "Not Found"}), nil
}

var statuses = []string{"canceled", "crashed", "error", "new", "running", "success", "unknown", "waiting"}

// list answers GET /api/v1/executions: newest first, the unfiltered list
// without running executions, limit up to 250, paged by a cursor.
func (n *N8N) list(r *http.Request, q map[string][]string, data bool, now time.Time) *http.Response {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	status := get("status")
	if status != "" && !slices.Contains(statuses, status) {
		return respond(r, http.StatusBadRequest, map[string]any{"message": "request/query/status must be equal to one of the allowed values"})
	}
	limit := 100
	if l, err := strconv.Atoi(get("limit")); err == nil && l > 0 {
		limit = min(l, 250)
	}
	below := int64(len(n.execs) + 1)
	if c := get("cursor"); c != "" {
		v, err := strconv.ParseInt(c, 10, 64)
		if err != nil {
			return respond(r, http.StatusBadRequest, map[string]any{"message": "invalid cursor"})
		}
		below = v
	}
	wf := get("workflowId")
	var page []any
	var next any
	for i := min(below-1, int64(len(n.execs))); i >= 1; i-- {
		e := n.execs[i-1]
		st := e.StatusAt(now)
		if e.Pruned || (wf != "" && e.WorkflowID != wf) || (status != "" && st != status) || (status == "" && st == "running") {
			continue
		}
		if len(page) == limit {
			next = strconv.FormatInt(e.ID+1, 10)
			break
		}
		page = append(page, execJSON(e, data, now))
	}
	if page == nil {
		page = []any{}
	}
	return respond(r, http.StatusOK, map[string]any{"data": page, "nextCursor": next})
}

// execJSON is an execution as n8n's API returns it. Its data holds the
// webhook's request headers only once it ended (n8n saves them then), and
// nothing for a crashed execution.
func execJSON(e *Execution, data bool, now time.Time) map[string]any {
	st := e.StatusAt(now)
	m := map[string]any{"id": strconv.FormatInt(e.ID, 10), "finished": st == "success", "mode": "webhook", "status": st,
		"startedAt": e.Started.UTC().Format(time.RFC3339Nano), "workflowId": e.WorkflowID, "retryOf": nil, "retrySuccessId": nil, "waitTill": nil}
	if st != "running" {
		m["stoppedAt"] = e.Ends.UTC().Format(time.RFC3339Nano)
	} else {
		m["stoppedAt"] = nil
	}
	if !data {
		return m
	}
	rd := map[string]any{"runData": map[string]any{}}
	if st == "success" || st == "error" {
		webhook := map[string]any{"headers": map[string]any{"idempotency-key": e.Key, "x-request-id": e.RequestID}, "body": map[string]any{}}
		run := map[string]any{"Webhook": []any{map[string]any{"startTime": e.Started.UnixMilli(), "executionTime": 1,
			"data": map[string]any{"main": []any{[]any{map[string]any{"json": webhook}}}}}}}
		if st == "success" {
			run["Code"] = []any{map[string]any{"startTime": e.Started.UnixMilli() + 1, "executionTime": 1,
				"data": map[string]any{"main": []any{[]any{map[string]any{"json": map[string]any{"key": e.Key, "ok": true}}}}}}}
			rd["lastNodeExecuted"] = "Code"
		} else {
			rd["lastNodeExecuted"] = "Webhook"
			rd["error"] = map[string]any{"message": "boom from code node [line 1]", "node": map[string]any{"name": "Code", "type": "n8n-nodes-base.code"}}
		}
		rd["runData"] = run
	}
	m["data"] = map[string]any{"resultData": rd}
	// As n8n answers with data: the workflow as it ran, so that the
	// trigger is known by its node type.
	m["workflowData"] = map[string]any{"nodes": []any{
		map[string]any{"name": "Webhook", "type": "n8n-nodes-base.webhook"},
		map[string]any{"name": "Code", "type": "n8n-nodes-base.code"},
	}}
	return m
}

func respond(r *http.Request, status int, v any) *http.Response {
	b, _ := json.Marshal(v)
	h := http.Header{"Content-Type": {"application/json; charset=utf-8"}, "Date": {time.Now().UTC().Format(http.TimeFormat)}}
	return &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(b)), ContentLength: int64(len(b)), Request: r}
}
