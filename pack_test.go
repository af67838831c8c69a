package invoker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/internal/n8ntest"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/pack"
)

type packReq struct {
	Items []struct {
		Key    string         `json:"key"`
		Params map[string]any `json:"params"`
	} `json:"items"`
}

// packStub answers packs like the template workflow, with a fault chosen
// by the pack's size.
func packStub(t *testing.T, fault func(n int) string) (*httptest.Server, *atomic.Int64, *sync.Map) {
	var calls atomic.Int64
	var sizes sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		b, _ := io.ReadAll(r.Body)
		var in packReq
		if err := json.Unmarshal(b, &in); err != nil {
			t.Errorf("pack body: %v", err)
		}
		sizes.Store(calls.Load(), len(b))
		type out struct {
			Key    string         `json:"key"`
			OK     bool           `json:"ok"`
			Result map[string]any `json:"result,omitempty"`
			Error  string         `json:"error,omitempty"`
		}
		var res []out
		for _, it := range in.Items {
			if it.Params["fail"] == true {
				res = append(res, out{Key: it.Key, Error: "asked to fail"})
				continue
			}
			res = append(res, out{Key: it.Key, OK: true, Result: it.Params})
		}
		switch fault(len(in.Items)) {
		case "503":
			w.WriteHeader(503)
			return
		case "echo": // a workflow not built for packing
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"received":%s,"executionId":"42"}`, b)
			return
		case "garbled":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `[{"key":`)
			return
		case "500":
			w.WriteHeader(500)
			fmt.Fprint(w, `{"message":"Error in workflow"}`)
			return
		case "short":
			res = res[:len(res)-1]
		case "swap":
			res[0], res[1] = res[1], res[0]
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(res)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls, &sizes
}

func packManager(t *testing.T, url string) *invoker.Manager {
	cfg, err := config.Parse([]byte(fmt.Sprintf("n8n: {base_url: %q}\ninvokers: {http: {max_retries: 1, backoff_factor: 0.001}}\nworkflows: {packed: {path: packed}}\n", url)), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := invoker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func packItems(n int, failAt int) []invoker.BatchItem {
	b := make([]invoker.BatchItem, n)
	for i := range b {
		p := map[string]any{"i": float64(i)}
		if i == failAt {
			p["fail"] = true
		}
		b[i] = invoker.BatchItem{Workflow: "packed", Params: p, IdempotencyKey: fmt.Sprintf("item-%d", i)}
	}
	return b
}

func checkPacked(t *testing.T, results []invoker.BatchResult, failAt int) {
	t.Helper()
	for i, r := range results {
		if i == failAt {
			var ie *invocation.Error
			if !errors.As(r.Err, &ie) || ie.Code != invocation.CodeWorkflowFailed || ie.Key != fmt.Sprintf("item-%d", i) || !errors.Is(r.Err, invocation.ErrWorkflowFailed) {
				t.Errorf("item %d: %v", i, r.Err)
			}
			continue
		}
		if r.Err != nil {
			t.Fatalf("item %d: %v", i, r.Err)
		}
		var out map[string]any
		err := r.Result.Decode(&out)
		if echo, ok := out["echo"].(map[string]any); ok { // the template workflow's result
			out = echo
		}
		if err != nil || out["i"] != float64(i) {
			t.Fatalf("item %d got the result %s", i, r.Result.Output)
		}
	}
}

func TestPackingUnit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		fault     func(n int) string
		opts      pack.Options
		items     int
		failAt    int
		wantCalls int64
	}{
		{"packs of 10", func(int) string { return "" }, pack.Options{MaxItems: 10}, 95, 17, 10},
		{"503 (not run) splits to singles", func(n int) string {
			if n > 1 {
				return "503"
			}
			return ""
		}, pack.Options{MaxItems: 4}, 4, -1, 2 + 2*2 + 4},
		{"size splits before sending", func(int) string { return "" }, pack.Options{MaxItems: 1000, MaxBytes: 400}, 30, -1, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, calls, sizes := packStub(t, tt.fault)
			m := packManager(t, srv.URL)
			results, err := m.ExecuteBatch(t.Context(), packItems(tt.items, tt.failAt), 0, invoker.WithPacking(tt.opts))
			if err != nil {
				t.Fatal(err)
			}
			checkPacked(t, results, tt.failAt)
			if calls.Load() != tt.wantCalls {
				t.Errorf("%d calls, want %d", calls.Load(), tt.wantCalls)
			}
			if tt.opts.MaxBytes > 0 {
				sizes.Range(func(_, v any) bool {
					if v.(int) > tt.opts.MaxBytes {
						t.Errorf("pack of %d bytes sent, limit %d", v.(int), tt.opts.MaxBytes)
					}
					return true
				})
			}
		})
	}
}

// TestPackingRanIsNotSplit: a pack that ran (a 2xx of the wrong shape,
// "Error in workflow", an unreadable answer) is never split and sent
// again: one request, and each item gets a typed error with its key,
// the pack's execution id when the answer had one, and the code of what
// happened.
func TestPackingRanIsNotSplit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		fault string
		code  invocation.Code
		exec  string
	}{
		{"echo", invocation.CodeInvalidAnswer, "42"},
		{"short", invocation.CodeInvalidAnswer, ""},
		{"swap", invocation.CodeInvalidAnswer, ""},
		{"500", invocation.CodeWorkflowFailed, ""},
		{"garbled", invocation.CodeInvalidAnswer, ""},
	}
	for _, tt := range tests {
		t.Run(tt.fault, func(t *testing.T) {
			t.Parallel()
			srv, calls, _ := packStub(t, func(int) string { return tt.fault })
			m := packManager(t, srv.URL)
			results, err := m.ExecuteBatch(t.Context(), packItems(4, -1), 0, invoker.WithPacking(pack.Options{MaxItems: 4}))
			if err != nil {
				t.Fatal(err)
			}
			if calls.Load() != 1 {
				t.Errorf("%d requests, want 1: a pack that ran was split and sent again", calls.Load())
			}
			for i, r := range results {
				var ie *invocation.Error
				if !errors.As(r.Err, &ie) || ie.Code != tt.code || ie.Key != fmt.Sprintf("item-%d", i) || ie.ExecutionID != tt.exec || invocation.CodeOf(r.Err) != tt.code {
					t.Errorf("item %d: %v (%+v)", i, r.Err, ie)
				}
			}
		})
	}
}

// TestRealN8NPacking runs 2,000 items packed against the real n8n and the
// template workflow, with one failing item; then an oversized pack is
// split before sending, and a workflow that answers in the wrong order is
// rejected and split down to single items.
func TestRealN8NPacking(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	cfg := n8n.Config(t)
	cfg.Workflows["packed"] = config.Workflow{Path: "invoker-packed", Method: "POST", ResponseMode: "lastNode", Auth: config.Auth{Type: "none"}}
	cfg.Workflows["reversed"] = config.Workflow{Path: "invoker-packed-reversed", Method: "POST", ResponseMode: "lastNode", Auth: config.Auth{Type: "none"}}
	m, rt := realManager(t, func(c *config.Config) { *c = *cfg })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	start := time.Now()
	results, err := m.ExecuteBatch(ctx, packItems(2000, 1234), 0, invoker.WithPacking(pack.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	checkPacked(t, results, 1234)
	if rt.total.Load() != 10 {
		t.Errorf("%d calls for 2,000 items in packs of 200", rt.total.Load())
	}
	t.Logf("packing: 2,000 items in %s (%.0f items/s) in 10 calls", el.Round(time.Millisecond), 2000/el.Seconds())

	before := rt.total.Load()
	results, _ = m.ExecuteBatch(ctx, packItems(50, -1), 0, invoker.WithPacking(pack.Options{MaxBytes: 1000}))
	checkPacked(t, results, -1)
	if n := rt.total.Load() - before; n < 2 {
		t.Errorf("a 50-item batch under a 1,000-byte limit went in %d call(s)", n)
	}

	before = rt.total.Load()
	rev := packItems(8, -1)
	for i := range rev {
		rev[i].Workflow = "reversed"
	}
	results, _ = m.ExecuteBatch(ctx, rev, 0, invoker.WithPacking(pack.Options{}))
	for i, r := range results {
		var ie *invocation.Error
		if !errors.As(r.Err, &ie) || ie.Code != invocation.CodeInvalidAnswer || ie.Key != fmt.Sprintf("item-%d", i) {
			t.Errorf("reversed item %d: %v", i, r.Err)
		}
	}
	if n := rt.total.Load() - before; n != 1 {
		t.Errorf("the reversed pack (it ran) went in %d calls, want 1: never split after a run", n)
	}
}
