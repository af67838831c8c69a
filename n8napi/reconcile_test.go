package n8napi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// stubExec is one execution of the stub n8n's workflow "wf".
type stubExec struct {
	id      int
	status  string
	started time.Time // on n8n's clock
	// key is the idempotency-key header in the trigger's first item; decoy
	// the same header in another node's first item.
	key, decoy string
	// pinned keeps the trigger item as pinned data (a run through MCP).
	pinned bool
	// gets is how many GETs by id it stays as it is; then it becomes then.
	gets int
	then string
	// workflow is "wf" when empty.
	workflow string
}

func (e *stubExec) wf() string {
	if e.workflow == "" {
		return "wf"
	}
	return e.workflow
}

// execStub is an n8n executions API for reconcile tests: newest first,
// running executions only under status=running, cursor paging, the
// startedAfter filter (unless noStartedAfter, as n8n 1.x), a Date header
// on n8n's clock (offset from the real one).
type execStub struct {
	mu             sync.Mutex
	execs          []*stubExec
	offset         time.Duration
	noStartedAfter bool
	settings       string // the workflow's settings JSON
	calls          int
	lists          []string // each list call's query
}

func (s *execStub) json(e *stubExec, data bool) map[string]any {
	m := map[string]any{"id": strconv.Itoa(e.id), "status": e.status, "workflowId": e.wf(), "finished": e.status == StatusSuccess,
		"startedAt": e.started.UTC().Format(time.RFC3339Nano), "mode": "webhook"}
	if e.status == StatusNew {
		m["startedAt"] = nil // queued (queue mode): not started yet
	}
	if !data {
		return m
	}
	item := func(j map[string]any) []any {
		return []any{map[string]any{"startTime": 1, "data": map[string]any{"main": []any{[]any{map[string]any{"json": j}}}}}}
	}
	trigger := map[string]any{"headers": map[string]any{"host": "n8n"}, "body": map[string]any{}}
	if e.key != "" {
		trigger["headers"] = map[string]any{"idempotency-key": e.key}
	}
	run := map[string]any{
		"Last": []any{map[string]any{"startTime": 3, "data": map[string]any{"main": []any{[]any{
			map[string]any{"json": map[string]any{"n": 1}}, map[string]any{"json": map[string]any{"n": 2}}}}}}},
	}
	rd := map[string]any{"runData": run, "lastNodeExecuted": "Last"}
	if e.status == StatusRunning || e.status == StatusNew {
		// n8n stores the trigger's item (the request's headers) only when
		// the execution ends or waits.
		delete(run, "Last")
	} else if e.pinned {
		rd["pinData"] = map[string]any{"Webhook": []any{map[string]any{"json": trigger}}}
	} else {
		run["Webhook"] = item(trigger)
	}
	if e.decoy != "" {
		run["Decoy"] = item(map[string]any{"headers": map[string]any{"idempotency-key": e.decoy}})
	}
	if e.status == StatusError {
		rd["error"] = map[string]any{"message": "boom", "node": map[string]any{"name": "Last", "type": "n8n-nodes-base.code"}}
	}
	m["data"] = map[string]any{"resultData": rd}
	m["workflowData"] = map[string]any{"nodes": []any{
		map[string]any{"name": "Decoy", "type": "n8n-nodes-base.httpRequest"},
		map[string]any{"name": "Webhook", "type": WebhookNodeType},
		map[string]any{"name": "Last", "type": "n8n-nodes-base.code"},
	}}
	return m
}

func (s *execStub) install(mux *http.ServeMux) {
	date := func(w http.ResponseWriter) {
		w.Header().Set("Date", time.Now().Add(s.offset).UTC().Format(http.TimeFormat))
	}
	mux.HandleFunc("GET /executions", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.calls++
		date(w)
		q := r.URL.Query()
		s.lists = append(s.lists, r.URL.RawQuery)
		var after time.Time
		if v := q.Get("startedAfter"); v != "" {
			if s.noStartedAfter {
				w.WriteHeader(400)
				fmt.Fprint(w, `{"message":"Unknown query parameter 'startedAfter'"}`)
				return
			}
			after, _ = time.Parse(time.RFC3339Nano, v)
		}
		var before time.Time
		if v := q.Get("startedBefore"); v != "" {
			if s.noStartedAfter {
				w.WriteHeader(400)
				fmt.Fprint(w, `{"message":"Unknown query parameter 'startedBefore'"}`)
				return
			}
			before, _ = time.Parse(time.RFC3339Nano, v)
		}
		limit, _ := strconv.Atoi(q.Get("limit"))
		if limit <= 0 || limit > 250 {
			limit = 100
		}
		var sel []*stubExec
		for _, e := range s.execs {
			if st := q.Get("status"); (st != "" && e.status != st) || (st == "" && e.status == StatusRunning) {
				continue
			}
			if q.Get("workflowId") != "" && q.Get("workflowId") != e.wf() {
				continue
			}
			// n8n filters on the start time: a queued execution (new, no
			// start yet) is never after or before anything.
			if (!after.IsZero() && (e.status == StatusNew || !e.started.After(after))) || (!before.IsZero() && (e.status == StatusNew || !e.started.Before(before))) {
				continue
			}
			sel = append(sel, e)
		}
		slices.SortFunc(sel, func(a, b *stubExec) int { return b.id - a.id })
		from, _ := strconv.Atoi(q.Get("cursor"))
		to := min(len(sel), from+limit)
		page := []any{}
		for _, e := range sel[from:to] {
			page = append(page, s.json(e, q.Get("includeData") == "true"))
		}
		var next any
		if to < len(sel) {
			next = strconv.Itoa(to)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"data": page, "nextCursor": next})
	})
	mux.HandleFunc("GET /executions/{id}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.calls++
		date(w)
		id, _ := strconv.Atoi(r.PathValue("id"))
		for _, e := range s.execs {
			if e.id == id {
				if e.gets > 0 {
					if e.gets--; e.gets == 0 {
						e.status = e.then
					}
				}
				_ = json.NewEncoder(w).Encode(s.json(e, r.URL.Query().Get("includeData") == "true"))
				return
			}
		}
		w.WriteHeader(404)
		fmt.Fprint(w, `{"message":"Not Found"}`)
	})
	mux.HandleFunc("GET /workflows/{id}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.calls++
		date(w)
		settings := s.settings
		if settings == "" {
			settings = `{"executionOrder":"v1"}`
		}
		fmt.Fprintf(w, `{"id":"wf","name":"wf","nodes":[],"connections":{},"settings":%s}`, settings)
	})
}

// add appends n executions started one millisecond apart from start (on
// n8n's clock), ids counting up; mod adjusts each (i from 0).
func (s *execStub) add(n int, start time.Time, status string, mod func(i int, e *stubExec)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range n {
		e := &stubExec{id: len(s.execs) + 1, status: status, started: start.Add(time.Duration(i) * time.Millisecond)}
		if mod != nil {
			mod(i, e)
		}
		s.execs = append(s.execs, e)
	}
}

func reconcileStub(t *testing.T) (*Client, *execStub) {
	c, mux := setup(t)
	s := &execStub{}
	s.install(mux)
	return c, s
}

var quick = &ReconcileOptions{Settle: time.Millisecond, Timeout: 5 * time.Second}

// TestReconcileSnapshotPages: 300 executions are running when the
// reconcile starts, the key's is the 270th listed: the snapshot pages
// past n8n's 250 per page, waits for it and finds it.
func TestReconcileSnapshotPages(t *testing.T) {
	t.Parallel()
	c, s := reconcileStub(t)
	since := time.Now().Add(-time.Minute)
	s.add(300, since.Add(time.Second), StatusRunning, func(i int, e *stubExec) {
		e.gets, e.then = 1, StatusSuccess
		if e.id == 300-269 {
			e.key = "k"
		}
	})
	r, err := c.Reconcile(t.Context(), "wf", "idempotency-key", "k", since, quick)
	if err != nil {
		t.Fatal(err)
	}
	if r.Execution == nil || r.Execution.ID != "31" || r.Unresolved {
		t.Fatalf("the running execution past the first 250 was missed: %+v", r)
	}
}

// TestReconcileMatchIsBounded: more executions in the window than the
// match's page bound: unresolved, never "not run", and it stops.
func TestReconcileMatchIsBounded(t *testing.T) {
	t.Parallel()
	c, s := reconcileStub(t)
	since := time.Now().Add(-time.Minute)
	s.add(DefaultReconcileMaxPages*100+150, since.Add(time.Second), StatusSuccess, func(i int, e *stubExec) { e.key = fmt.Sprint("other-", i) })
	r, err := c.Reconcile(t.Context(), "wf", "idempotency-key", "k", since, quick)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Unresolved || r.Execution != nil {
		t.Fatalf("an unbounded match: %+v", r)
	}
	if r.Calls > DefaultReconcileMaxPages+10 {
		t.Errorf("%d calls", r.Calls)
	}
}

// TestReconcileKeyOnlyInTrigger: the key counts only in the trigger's
// first item (the webhook node's, or the pinned item of a run through
// MCP); another node with the same header is a decoy.
func TestReconcileKeyOnlyInTrigger(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		key, decoy string
		pinned     bool
		want       bool
	}{
		{"trigger", "k", "", false, true},
		{"decoy only", "", "k", false, false},
		{"decoy and another key", "k2", "k", false, false},
		{"pinned trigger", "k", "", true, true},
		{"pinned other, decoy", "k2", "k", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, s := reconcileStub(t)
			since := time.Now().Add(-time.Minute)
			s.add(1, since.Add(-time.Hour), StatusSuccess, nil) // before the window
			s.add(1, since.Add(time.Second), StatusSuccess, func(_ int, e *stubExec) { e.key, e.decoy, e.pinned = tc.key, tc.decoy, tc.pinned })
			r, err := c.Reconcile(t.Context(), "wf", "idempotency-key", "k", since, quick)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Execution != nil; got != tc.want || r.Unresolved {
				t.Errorf("matched %v, want %v: %+v", got, tc.want, r)
			}
			t.Logf("%d API calls, %d bytes", r.Calls, r.Bytes)
		})
	}
}

// TestReconcileClockFromDate: n8n's clock is 30 s behind: the window is
// moved by the offset its Date header shows, not by a fixed margin.
func TestReconcileClockFromDate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		offset time.Duration
		legacy bool
	}{
		{"behind", -30 * time.Second, false},
		{"behind, 1.x", -30 * time.Second, true},
		{"ahead", 30 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, s := reconcileStub(t)
			s.offset, s.noStartedAfter = tc.offset, tc.legacy
			since := time.Now().Add(-2 * time.Second)
			// Ours started 1 s after the attempt, on n8n's clock; another one
			// before the window too.
			s.add(1, since.Add(tc.offset-time.Hour), StatusSuccess, nil)
			s.add(1, since.Add(tc.offset+time.Second), StatusSuccess, func(_ int, e *stubExec) { e.key = "k" })
			s.add(1, since.Add(tc.offset+1500*time.Millisecond), StatusRunning, func(_ int, e *stubExec) { e.gets, e.then = 1, StatusSuccess })
			r, err := c.Reconcile(t.Context(), "wf", "idempotency-key", "k", since, quick)
			if err != nil {
				t.Fatal(err)
			}
			if r.Execution == nil || r.Execution.ID != "2" {
				t.Fatalf("not found: %+v", r)
			}
			if !tc.legacy {
				if !strings.Contains(strings.Join(s.lists, " "), "startedAfter=") {
					t.Errorf("no startedAfter in %q", s.lists)
				}
			}
		})
	}
}

// TestReconcileRunningIsNotFailed: an execution of the key that is
// still running or waiting after the bound is unresolved, never failed.
func TestReconcileRunningIsNotFailed(t *testing.T) {
	t.Parallel()
	for _, status := range []string{StatusRunning, StatusWaiting, StatusNew} {
		t.Run(status, func(t *testing.T) {
			t.Parallel()
			c, s := reconcileStub(t)
			since := time.Now().Add(-time.Minute)
			s.add(1, since.Add(time.Second), status, func(_ int, e *stubExec) { e.key = "k" })
			r, err := c.Reconcile(t.Context(), "wf", "idempotency-key", "k", since, &ReconcileOptions{Settle: time.Millisecond, Timeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if !r.Unresolved && (r.Execution == nil || r.Execution.Terminal()) {
				t.Fatalf("%+v", r)
			}
		})
	}
}

// TestReconcileWaitsForAQueuedExecution: in queue mode an execution sits
// queued (status new, no start time) before a worker runs it; n8n's
// startedAfter filter leaves such executions out, so the snapshot of new
// executions must not filter on it: the key's queued execution is waited
// for and found once it ran (a fleet run re-sent lost answers whose
// executions were still queued).
func TestReconcileWaitsForAQueuedExecution(t *testing.T) {
	t.Parallel()
	c, s := reconcileStub(t)
	since := time.Now().Add(-time.Minute)
	s.add(1, since.Add(-time.Hour), StatusSuccess, nil) // before the window
	s.add(1, since.Add(time.Second), StatusRunning, func(_ int, e *stubExec) { e.gets, e.then = 1, StatusSuccess })
	s.add(1, since.Add(2*time.Second), StatusNew, func(_ int, e *stubExec) { e.key, e.gets, e.then = "k", 2, StatusSuccess })
	r, err := c.Reconcile(t.Context(), "wf", "idempotency-key", "k", since, quick)
	if err != nil {
		t.Fatal(err)
	}
	if r.Execution == nil || r.Execution.ID.String() != "3" || r.Unresolved {
		t.Errorf("the queued execution of the key: %+v (lists %q)", r, s.lists)
	}
}
