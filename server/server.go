package server

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/outbox"
)

// Defaults of Options.
const (
	DefaultMaxBodyBytes = 1 << 20
	DefaultAwait        = 30 * time.Second
	DefaultMaxAwait     = 5 * time.Minute
	DefaultSessionTTL   = 12 * time.Hour
	// APIVersion is the path prefix of the JSON API.
	APIVersion = "v1"
)

//go:embed openapi.yaml
var openAPI []byte

// OpenAPI returns the OpenAPI document of the JSON API.
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

// Options configure a Server; zero values mean defaults.
type Options struct {
	// Manager runs the invocations and holds the dead letters; Queue is
	// its outbox (outbox.Open), where submissions are stored.
	Manager *invoker.Manager
	Queue   outbox.Queue
	// Tokens authenticates API tokens (a *TokenFile).
	Tokens Tokens
	// EditorURL is n8n's editor, for links to executions (often not the
	// API's base URL); empty: n8n.base_url.
	EditorURL string
	// Metrics serves /metrics (a Prometheus handler the caller wires);
	// nil: 404.
	Metrics http.Handler
	// MaxBodyBytes limits a request body (default 1 MiB).
	MaxBodyBytes int64
	// MaxAwait bounds a wait for an invocation (default 5m).
	MaxAwait time.Duration
	// SecureCookies marks the console's cookie Secure (set it when the
	// server is reached over TLS, directly or behind a proxy).
	SecureCookies bool
	// Logger logs refusals and failures (default: the manager's).
	Logger *slog.Logger
}

// Server is n8n-invoker's service: a versioned JSON API (submit, get,
// await and list invocations; list, replay and purge dead letters;
// breakers; health, readiness and metrics) and a web console over the
// same operations. Submissions are acknowledged only once the outbox has
// stored them. It is an http.Handler.
type Server struct {
	o   Options
	mux *http.ServeMux
	log *slog.Logger

	mu       sync.Mutex
	sessions map[string]*session
}

// New validates o and returns a Server.
func New(o Options) (*Server, error) {
	if o.Manager == nil || o.Queue == nil {
		return nil, errors.New("server: a manager and its outbox are required")
	}
	if o.Tokens == nil {
		return nil, errors.New("server: tokens are required (a token file)")
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxAwait <= 0 {
		o.MaxAwait = DefaultMaxAwait
	}
	if o.EditorURL == "" {
		o.EditorURL = o.Manager.Config().N8N.BaseURL
	}
	o.EditorURL = strings.TrimSuffix(o.EditorURL, "/")
	if o.Logger == nil {
		o.Logger = o.Manager.Logger()
	}
	s := &Server{o: o, mux: http.NewServeMux(), log: o.Logger, sessions: map[string]*session{}}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /healthz", s.healthz)
	m.HandleFunc("GET /readyz", s.readyz)
	m.HandleFunc("GET /v1/openapi.yaml", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(openAPI)
	})
	m.Handle("GET /metrics", s.api(ScopeRead, s.metrics))
	m.Handle("POST /v1/invocations", s.api(ScopeSubmit, s.submit))
	m.Handle("GET /v1/invocations", s.api(ScopeRead, s.listInvocations))
	m.Handle("GET /v1/invocations/{id}", s.api(ScopeRead, s.getInvocation))
	m.Handle("GET /v1/invocations/{id}/await", s.api(ScopeRead, s.awaitInvocation))
	m.Handle("GET /v1/dead-letters", s.api(ScopeRead, s.listDeadLetters))
	m.Handle("GET /v1/dead-letters/{id}", s.api(ScopeRead, s.getDeadLetter))
	m.Handle("POST /v1/dead-letters/{id}/replay", s.api(ScopeReplay, s.replayDeadLetter))
	m.Handle("DELETE /v1/dead-letters/{id}", s.api(ScopeReplay, s.purgeDeadLetter))
	m.Handle("GET /v1/breakers", s.api(ScopeRead, s.breakers))
	s.consoleRoutes()
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			http.Redirect(w, r, "/console/", http.StatusSeeOther)
			return
		}
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
}

// ServeHTTP serves the API and the console, with the security headers
// on every answer.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin") // no-referrer makes browsers send "Origin: null" on the console's own forms
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Cache-Control", "no-store")
	r.Body = http.MaxBytesReader(w, r.Body, s.o.MaxBodyBytes)
	s.mux.ServeHTTP(w, r)
}

// apiError is the JSON error of every refusal.
type apiError struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: errorBody{Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}

type ctxKey struct{}

// principalOf returns the request's authenticated principal.
func principalOf(r *http.Request) *Principal {
	p, _ := r.Context().Value(ctxKey{}).(*Principal)
	return p
}

// api authenticates a bearer token with scope, then runs h.
func (s *Server) api(scope string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		p, found := s.o.Tokens.Authenticate(strings.TrimSpace(tok))
		if !ok || !found {
			w.Header().Set("WWW-Authenticate", `Bearer realm="n8n-invoker"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "a valid API token is required (Authorization: Bearer <token>)")
			return
		}
		if !p.Can(scope) {
			writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("token %q lacks the %q scope", p.Name, scope))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, p)))
	})
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz is ready when the store answers: a replica that cannot store
// must not get submissions. n8n's health is reported, not required
// (submissions queue while n8n is down).
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	out := map[string]any{"store": "ok"}
	status := http.StatusOK
	if _, err := s.o.Queue.List(ctx, outbox.Filter{Limit: 1}); err != nil {
		out["store"], status = "unavailable", http.StatusServiceUnavailable
	}
	h := s.o.Manager.Health(ctx)
	out["n8n_healthy"] = h.Healthy
	out["ready"] = status == http.StatusOK
	writeJSON(w, status, out)
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	if s.o.Metrics == nil {
		writeError(w, http.StatusNotFound, "not_found", "metrics are not served (the CLI wires them)")
		return
	}
	s.o.Metrics.ServeHTTP(w, r)
}

// SubmitRequest is the body of POST /v1/invocations.
type SubmitRequest struct {
	Workflow       string            `json:"workflow"`
	Params         json.RawMessage   `json:"params,omitempty"`
	PathParams     map[string]string `json:"path_params,omitempty"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	// Wait waits for the invocation's end (up to Timeout, default 30 s):
	// 200 with the ended invocation, or 202 when it has not ended yet.
	Wait    bool   `json:"wait,omitempty"`
	Timeout string `json:"timeout,omitempty"`
}

// decode reads a JSON body strictly: one object, no unknown fields.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the body exceeds %d bytes", mbe.Limit))
		return false
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "malformed", "an empty body: want a JSON object")
		return false
	case err != nil:
		writeError(w, http.StatusBadRequest, "malformed", "the body is not the expected JSON: "+err.Error())
		return false
	}
	return true
}

func (s *Server) submit(w http.ResponseWriter, r *http.Request) {
	var in SubmitRequest
	if !decode(w, r, &in) {
		return
	}
	if strings.TrimSpace(in.Workflow) == "" {
		writeError(w, http.StatusBadRequest, "invalid", "workflow is required")
		return
	}
	wait, ok := s.awaitTimeout(w, in.Timeout)
	if !ok || !s.mayAct(w, r, principalOf(r), in.Workflow) {
		return
	}
	req := &invocation.Request{Workflow: in.Workflow, PathParams: in.PathParams, IdempotencyKey: in.IdempotencyKey}
	if len(in.Params) > 0 && string(in.Params) != "null" {
		if b := strings.TrimSpace(string(in.Params)); !strings.HasPrefix(b, "{") {
			writeError(w, http.StatusBadRequest, "invalid", "params must be a JSON object")
			return
		}
		req.Body = in.Params
	}
	start := time.Now()
	var id string
	var err error
	created, says := true, false
	if sub, ok := s.o.Queue.(outbox.Submitter); ok {
		says = true
		id, created, err = sub.Submit(r.Context(), req)
	} else {
		id, err = s.o.Queue.Enqueue(r.Context(), req)
	}
	if err != nil {
		s.enqueueError(w, err)
		return
	}
	inv, err := s.o.Queue.Get(r.Context(), id)
	if err != nil {
		// Stored: acknowledge the id even if reading it back failed.
		writeJSON(w, http.StatusAccepted, map[string]string{"id": id, "status": outbox.Queued})
		return
	}
	existing := !created || (!says && inv.CreatedAt.Before(start)) // the clock only for a queue that does not say
	if in.Wait && !inv.Done() {
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		if got, err := s.o.Queue.Await(ctx, id); err == nil {
			inv = got
		}
		cancel()
	}
	status := http.StatusAccepted
	if existing || inv.Done() {
		status = http.StatusOK
	}
	w.Header().Set("Location", "/v1/invocations/"+id)
	writeJSON(w, status, inv)
}

func (s *Server) enqueueError(w http.ResponseWriter, err error) {
	switch c := invocation.CodeOf(err); {
	case c != invocation.CodeUnknown && c != invocation.CodeCanceled:
		writeCodeError(w, err) // a key conflict, an unknown workflow, ...
	case errors.Is(err, outbox.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
	case invocation.IsCanceled(err):
		writeError(w, http.StatusServiceUnavailable, "canceled", "the request ended before the invocation was stored: nothing was stored")
	default:
		s.log.Error("server: storing a submission failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", "the invocation could not be stored; nothing was acknowledged, try again")
	}
}

// awaitTimeout reads a wait's timeout (default DefaultAwait, at most
// MaxAwait); false when it answered a bad one.
func (s *Server) awaitTimeout(w http.ResponseWriter, v string) (time.Duration, bool) {
	if v == "" {
		return DefaultAwait, true
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("timeout must be a positive duration such as 30s, got %q", v))
		return 0, false
	}
	return min(d, s.o.MaxAwait), true
}

// invocation reads the invocation of the path's id; false when it
// answered a 404 or 503, or a 403 for a workflow outside the token's
// list.
func (s *Server) invocation(w http.ResponseWriter, r *http.Request) (*outbox.Invocation, bool) {
	inv, err := s.o.Queue.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, outbox.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no invocation "+strconv.Quote(r.PathValue("id")))
		return nil, false
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", err.Error())
		return nil, false
	}
	if !s.mayAct(w, r, principalOf(r), inv.Workflow) {
		return nil, false
	}
	return inv, true
}

func (s *Server) getInvocation(w http.ResponseWriter, r *http.Request) {
	if inv, ok := s.invocation(w, r); ok {
		writeJSON(w, http.StatusOK, inv)
	}
}

// awaitInvocation long-polls (up to ?timeout, default 30 s) for the
// invocation's end: 200 once it ended, 202 with its current state when
// the timeout passed first. With Accept: text/event-stream it streams
// server-sent events instead: "status" now, then "done" at the end.
func (s *Server) awaitInvocation(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	wait, ok := s.awaitTimeout(w, r.URL.Query().Get("timeout"))
	if !ok {
		return
	}
	inv, ok := s.invocation(w, r)
	if !ok {
		return
	}
	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	if sse {
		s.stream(ctx, w, inv)
		return
	}
	if !inv.Done() {
		if got, err := s.o.Queue.Await(ctx, id); err == nil {
			inv = got
		}
	}
	status := http.StatusOK
	if !inv.Done() {
		status = http.StatusAccepted
	}
	writeJSON(w, status, inv)
}

func (s *Server) stream(ctx context.Context, w http.ResponseWriter, inv *outbox.Invocation) {
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	send := func(event string, v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b)
		if fl != nil {
			fl.Flush()
		}
	}
	if inv.Done() {
		send("done", inv)
		return
	}
	send("status", inv)
	done := make(chan *outbox.Invocation, 1)
	go func() {
		got, err := s.o.Queue.Await(ctx, inv.ID)
		if err != nil {
			got = nil
		}
		done <- got
	}()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case got := <-done:
			if got != nil {
				send("done", got)
			} else {
				send("timeout", map[string]string{"id": inv.ID})
			}
			return
		case <-tick.C:
			fmt.Fprint(w, ": keep-alive\n\n")
			if fl != nil {
				fl.Flush()
			}
		}
	}
}

func limitOf(r *http.Request, def int) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 || n > 1000 {
		return 0, fmt.Errorf("limit must be 1..1000, got %q", v)
	}
	return n, nil
}

func (s *Server) listInvocations(w http.ResponseWriter, r *http.Request) {
	limit, err := limitOf(r, 100)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	q := r.URL.Query()
	st := q.Get("status")
	if st != "" && !slices.Contains(outbox.Statuses, st) {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("status must be one of %v, got %q", outbox.Statuses, st))
		return
	}
	p := principalOf(r)
	list, err := s.o.Queue.List(r.Context(), outbox.Filter{Status: st, Workflow: q.Get("workflow"), Limit: listLimit(p, limit)})
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", err.Error())
		return
	}
	list = visible(r.Context(), s, p, list, invocationWorkflow, limit)
	writeJSON(w, http.StatusOK, map[string]any{"invocations": list})
}

// deadLetterFilter reads the filters of a dead-letter list.
func deadLetterFilter(r *http.Request) (dlq.Filter, error) {
	q := r.URL.Query()
	limit, err := limitOf(r, 100)
	if err != nil {
		return dlq.Filter{}, err
	}
	f := dlq.Filter{Workflow: q.Get("workflow"), Class: q.Get("class"), Reason: q.Get("reason"), Key: q.Get("key"), Limit: limit}
	switch f.Class {
	case "", "transient", "permanent", "unknown":
	default:
		return f, fmt.Errorf("class must be transient, permanent or unknown, got %q", f.Class)
	}
	return f, nil
}

func (s *Server) store(w http.ResponseWriter) invoker.DeadLetters {
	d := s.o.Manager.DLQ()
	if d == nil {
		writeError(w, http.StatusNotFound, "no_dlq", "the dead-letter queue is off (dlq.enabled)")
	}
	return d
}

func (s *Server) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	d := s.store(w)
	if d == nil {
		return
	}
	f, err := deadLetterFilter(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	p := principalOf(r)
	limit := f.Limit
	f.Limit = listLimit(p, limit)
	list, err := d.List(r.Context(), f)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", err.Error())
		return
	}
	list = visible(r.Context(), s, p, list, entryWorkflow, limit)
	writeJSON(w, http.StatusOK, map[string]any{"dead_letters": list})
}

func entryID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, "invalid", "a dead letter's id is a positive integer, got "+strconv.Quote(r.PathValue("id")))
		return 0, false
	}
	return id, true
}

// DeadLetter is a dead letter with the link to its execution in n8n's
// editor.
type DeadLetter struct {
	*dlq.Entry
	ExecutionURL string `json:"execution_url,omitempty"`
}

func (s *Server) deadLetter(ctx context.Context, e *dlq.Entry) *DeadLetter {
	out := &DeadLetter{Entry: e}
	if e.ExecutionID != "" {
		if wf, err := s.o.Manager.WorkflowID(ctx, e.Workflow); err == nil && wf != "" {
			out.ExecutionURL = s.o.EditorURL + "/workflow/" + wf + "/executions/" + e.ExecutionID
		}
	}
	return out
}

// entry reads the dead letter of the path's id; false when it answered
// a 400, 404 or 503, or a 403 for a workflow outside the token's list.
func (s *Server) entry(w http.ResponseWriter, r *http.Request) (*dlq.Entry, bool) {
	d := s.store(w)
	if d == nil {
		return nil, false
	}
	id, ok := entryID(w, r)
	if !ok {
		return nil, false
	}
	e, err := d.Get(r.Context(), id)
	if errors.Is(err, dlq.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no dead letter %d", id))
		return nil, false
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", err.Error())
		return nil, false
	}
	if !s.mayAct(w, r, principalOf(r), e.Workflow) {
		return nil, false
	}
	return e, true
}

func (s *Server) getDeadLetter(w http.ResponseWriter, r *http.Request) {
	if e, ok := s.entry(w, r); ok {
		writeJSON(w, http.StatusOK, s.deadLetter(r.Context(), e))
	}
}

// ReplayRequest is the body of POST /v1/dead-letters/{id}/replay.
type ReplayRequest struct {
	// RunAgain also replays an entry whose workflow ran in n8n and
	// failed: it runs the workflow again.
	RunAgain bool `json:"run_again,omitempty"`
}

func (s *Server) replayDeadLetter(w http.ResponseWriter, r *http.Request) {
	if s.store(w) == nil {
		return
	}
	id, ok := entryID(w, r)
	if !ok {
		return
	}
	var in ReplayRequest
	if r.ContentLength != 0 && !decode(w, r, &in) {
		return
	}
	if _, ok := s.entry(w, r); !ok {
		return
	}
	rep, err := s.replay(r.Context(), id, in.RunAgain)
	switch {
	case errors.Is(err, dlq.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no dead letter %d", id))
		return
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "replay_failed", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) replay(ctx context.Context, id int64, runAgain bool) (*invoker.ReplayReport, error) {
	var opts []invoker.ReplayOption
	if runAgain {
		// "Run again", behind the console's confirmation: also an entry
		// that ran and failed, or that may have run.
		opts = append(opts, invoker.ReplayFailed(), invoker.ReplayAmbiguous())
	}
	return s.o.Manager.ReplayDeadLetters(ctx, dlq.Filter{IDs: []int64{id}}, opts...)
}

func (s *Server) purgeDeadLetter(w http.ResponseWriter, r *http.Request) {
	e, ok := s.entry(w, r)
	if !ok {
		return
	}
	id := e.ID
	if err := s.o.Manager.DLQ().Delete(r.Context(), id); err != nil {
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", err.Error())
		return
	}
	s.log.Info("server: dead letter purged", "id", id, "by", principalOf(r).Name)
	w.WriteHeader(http.StatusNoContent)
}

func invocationWorkflow(inv *outbox.Invocation) string { return inv.Workflow }

func entryWorkflow(e *dlq.Entry) string { return e.Workflow }

func (s *Server) breakers(w http.ResponseWriter, _ *http.Request) {
	type breaker struct {
		Endpoint string `json:"endpoint"`
		State    string `json:"state"`
	}
	out := []breaker{}
	for _, b := range s.o.Manager.BreakerStates() {
		out = append(out, breaker{Endpoint: b.Endpoint, State: b.State.String()})
	}
	writeJSON(w, http.StatusOK, map[string]any{"breakers": out})
}

func randomID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
