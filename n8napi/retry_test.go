package n8napi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// fakeN8N answers in memory (no sockets, so synctest's clock runs):
// each request goes to answer with its arrival time recorded.
type fakeN8N struct {
	mu     sync.Mutex
	calls  []string
	at     []time.Time
	answer func(n int, r *http.Request) (*http.Response, error)
}

func (f *fakeN8N) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.calls = append(f.calls, r.Method+" "+strings.TrimPrefix(r.URL.RequestURI(), "/api/v1/"))
	f.at = append(f.at, time.Now())
	n := len(f.calls)
	f.mu.Unlock()
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	return f.answer(n, r)
}

func (f *fakeN8N) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func answer(status int, body string, header ...string) *http.Response {
	h := http.Header{"Content-Type": {"application/json"}}
	for i := 0; i+1 < len(header); i += 2 {
		h.Set(header[i], header[i+1])
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body))}
}

func fakeClient(t *testing.T, f *fakeN8N, opts ...Option) *Client {
	t.Helper()
	c, err := NewClient("http://n8n.test", secret.New("k"), append([]Option{WithHTTPClient(&http.Client{Transport: f})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAPIRetryPolicy runs the client's default retry policy against
// n8n's transient answers.
func TestAPIRetryPolicy(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}
	cases := []struct {
		name      string
		method    string
		first     func(now time.Time) (*http.Response, error)
		wantCalls int
		wantErr   bool
		minWait   time.Duration
		maxWait   time.Duration
	}{
		{name: "429 Retry-After seconds", method: "GET", first: func(time.Time) (*http.Response, error) {
			return answer(429, `{"message":"Too many requests"}`, "Retry-After", "2"), nil
		}, wantCalls: 2, minWait: 2 * time.Second, maxWait: 3 * time.Second},
		{name: "429 X-RateLimit-Reset only", method: "GET", first: func(now time.Time) (*http.Response, error) {
			return answer(429, `{"message":"Too many requests"}`, "X-RateLimit-Limit", "60", "X-RateLimit-Remaining", "0",
				"X-RateLimit-Reset", strconv.FormatInt(now.Add(3*time.Second).Unix(), 10)), nil
		}, wantCalls: 2, minWait: 2 * time.Second, maxWait: 4 * time.Second},
		{name: "429 on a write is retried", method: "POST", first: func(time.Time) (*http.Response, error) {
			return answer(429, `{"message":"Too many requests"}`, "Retry-After", "1"), nil
		}, wantCalls: 2, minWait: time.Second, maxWait: 2 * time.Second},
		{name: "429 asking past max_retry_after fails at once", method: "GET", first: func(time.Time) (*http.Response, error) {
			return answer(429, `{"message":"Too many requests"}`, "Retry-After", "600"), nil
		}, wantCalls: 1, wantErr: true},
		{name: "503 on a read is retried", method: "GET", first: func(time.Time) (*http.Response, error) {
			return answer(503, `{"message":"unavailable"}`), nil
		}, wantCalls: 2, maxWait: time.Second},
		{name: "503 on a write is not", method: "POST", first: func(time.Time) (*http.Response, error) {
			return answer(503, `{"message":"unavailable"}`), nil
		}, wantCalls: 1, wantErr: true},
		{name: "starting n8n's 200 text is retried", method: "GET", first: func(time.Time) (*http.Response, error) {
			r := answer(200, `n8n is starting up. Please wait`)
			r.Header.Set("Content-Type", "text/html")
			return r, nil
		}, wantCalls: 2, maxWait: time.Second},
		{name: "a lost connection on a read is retried", method: "GET", first: func(time.Time) (*http.Response, error) {
			return nil, reset
		}, wantCalls: 2, maxWait: time.Second},
		{name: "a lost connection on a write is not", method: "POST", first: func(time.Time) (*http.Response, error) {
			return nil, reset
		}, wantCalls: 1, wantErr: true},
		{name: "a refused connection on a write is", method: "POST", first: func(time.Time) (*http.Response, error) {
			return nil, refused
		}, wantCalls: 2, maxWait: time.Second},
		{name: "409 try again, on a write", method: "POST", first: func(time.Time) (*http.Response, error) {
			return answer(409, `{"message":"Workflow is still being unpublished. Please try again in a few moments."}`), nil
		}, wantCalls: 2, minWait: 500 * time.Millisecond, maxWait: time.Second},
		{name: "409 of a state is not", method: "POST", first: func(time.Time) (*http.Response, error) {
			return answer(409, `{"message":"The execution succeeded, so it cannot be retried."}`), nil
		}, wantCalls: 1, wantErr: true},
		{name: "a 400 is not", method: "GET", first: func(time.Time) (*http.Response, error) {
			return answer(400, `{"message":"bad"}`), nil
		}, wantCalls: 1, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				f := &fakeN8N{answer: func(n int, r *http.Request) (*http.Response, error) {
					if n == 1 {
						return tc.first(start)
					}
					return answer(200, `{"id":"7","status":"success"}`), nil
				}}
				c := fakeClient(t, f)
				var err error
				if tc.method == "GET" {
					_, _, err = c.Executions.Get(t.Context(), "7", false)
				} else {
					_, _, err = c.Executions.Retry(t.Context(), "7", false)
				}
				if (err != nil) != tc.wantErr || f.count() != tc.wantCalls {
					t.Fatalf("err %v after %d calls; want error %v after %d", err, f.count(), tc.wantErr, tc.wantCalls)
				}
				if tc.wantCalls > 1 {
					waited := f.at[1].Sub(f.at[0])
					if waited < tc.minWait || waited > tc.maxWait {
						t.Errorf("waited %v before the retry, want %v..%v", waited, tc.minWait, tc.maxWait)
					}
				}
			})
		})
	}
}

func TestAPIRetryGivesUp(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := &fakeN8N{answer: func(int, *http.Request) (*http.Response, error) { return answer(502, `{"message":"bad gateway"}`), nil }}
		_, _, err := fakeClient(t, f).Workflows.Get(t.Context(), "w")
		var ae *APIError
		if !errors.As(err, &ae) || ae.StatusCode != 502 || f.count() != DefaultAPIMaxAttempts {
			t.Errorf("err %v after %d calls, want the 502 after %d", err, f.count(), DefaultAPIMaxAttempts)
		}
		f.mu.Lock()
		f.calls = nil
		f.mu.Unlock()
		_, _, err = fakeClient(t, f, WithRetry(RetryPolicy{MaxAttempts: 1})).Workflows.Get(t.Context(), "w")
		if err == nil || f.count() != 1 {
			t.Errorf("MaxAttempts 1: %v after %d calls", err, f.count())
		}
	})
}

// TestAPIRateLimitHoldsEveryCall: a 429 seen by one call holds the
// client's other calls until its Retry-After has passed, and an
// exhausted window (X-RateLimit-Remaining: 0) holds the next call until
// its reset.
func TestAPIRateLimitHoldsEveryCall(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		f := &fakeN8N{answer: func(n int, r *http.Request) (*http.Response, error) {
			if n == 1 {
				return answer(429, `{"message":"Too many requests"}`, "Retry-After", "5"), nil
			}
			return answer(200, `{"data":[],"nextCursor":null}`), nil
		}}
		c := fakeClient(t, f)
		if _, _, err := c.Workflows.List(t.Context(), nil); err != nil {
			t.Fatal(err)
		}
		// A second call made after the 429 went through at once? The
		// first call's retry came at 5 s; the next call after it.
		if _, _, err := c.Tags.List(t.Context(), 1, ""); err != nil {
			t.Fatal(err)
		}
		for i, at := range f.at[1:] {
			if at.Sub(start) < 5*time.Second {
				t.Errorf("call %d went at %v, inside the 5 s pause", i+2, at.Sub(start))
			}
		}

		f2 := &fakeN8N{answer: func(n int, r *http.Request) (*http.Response, error) {
			if n == 1 {
				return answer(200, `{"data":[],"nextCursor":null}`, "X-RateLimit-Limit", "10", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "3"), nil
			}
			return answer(200, `{"data":[],"nextCursor":null}`), nil
		}}
		c2 := fakeClient(t, f2)
		_, resp, err := c2.Workflows.List(t.Context(), nil)
		if err != nil || resp.RateLimit == nil || resp.RateLimit.Limit != 10 || resp.RateLimit.Remaining != 0 {
			t.Fatalf("rate limit %+v, %v", resp.RateLimit, err)
		}
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() { _, _, _ = c2.Workflows.List(t.Context(), nil) })
		}
		wg.Wait()
		for i, at := range f2.at[1:] {
			if d := at.Sub(f2.at[0]); d < 3*time.Second {
				t.Errorf("call %d went %v after the window was exhausted, want >= 3 s", i+2, d)
			}
		}
	})
}

func TestAPIRetryStopsOnCancel(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := &fakeN8N{answer: func(int, *http.Request) (*http.Response, error) {
			return answer(429, `{"message":"Too many requests"}`, "Retry-After", "30"), nil
		}}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, _, err := fakeClient(t, f).Workflows.Get(ctx, "w")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err %v, want the context's", err)
		}
	})
}

// TestFindFallsBackToTheList: a 500 on GET /executions/{id} (n8n's bug
// for non-manual executions in recent versions) is answered from the
// workflow's executions list, paged newest first until the id is passed.
func TestFindFallsBackToTheList(t *testing.T) {
	t.Parallel()
	pages := map[string]string{
		"":   `{"data":[{"id":"12","status":"success"},{"id":"11","status":"success"}],"nextCursor":"c2"}`,
		"c2": `{"data":[{"id":"10","status":"error"},{"id":"8","status":"success"}],"nextCursor":"c3"}`,
		"c3": `{"data":[{"id":"7","status":"success"}],"nextCursor":null}`,
	}
	running := `{"data":[{"id":"9","status":"running"}],"nextCursor":null}`
	cases := []struct {
		id, workflow string
		wantStatus   string
		wantErr      bool
		wantPages    int // list calls
	}{
		{id: "10", workflow: "wf", wantStatus: "error", wantPages: 2},
		{id: "9", workflow: "wf", wantStatus: "running", wantPages: 3}, // passed at 8: then the running list
		{id: "5", workflow: "wf", wantErr: true, wantPages: 5},         // nowhere: the 500
		{id: "10", workflow: "", wantErr: true, wantPages: 0},          // no workflow: Get's answer
	}
	for _, tc := range cases {
		t.Run(tc.id+"/"+tc.workflow, func(t *testing.T) {
			t.Parallel()
			f := &fakeN8N{answer: func(n int, r *http.Request) (*http.Response, error) {
				if r.URL.Path != "/api/v1/executions" {
					return answer(500, `{"message":"Internal Server Error"}`), nil
				}
				q := r.URL.Query()
				if q.Get("workflowId") != "wf" {
					t.Errorf("list without the workflow: %s", r.URL.RawQuery)
				}
				switch q.Get("status") {
				case "running":
					return answer(200, running), nil
				case "waiting":
					return answer(200, `{"data":[],"nextCursor":null}`), nil
				}
				return answer(200, pages[q.Get("cursor")]), nil
			}}
			e, _, err := fakeClient(t, f).Executions.Find(t.Context(), tc.workflow, tc.id, true)
			lists := 0
			for _, c := range f.calls {
				if strings.HasPrefix(c, "GET executions?") {
					lists++
				}
			}
			var ae *APIError
			switch {
			case tc.wantErr && (!errors.As(err, &ae) || ae.StatusCode != 500):
				t.Errorf("err %v, want the 500", err)
			case !tc.wantErr && (err != nil || e.ID.String() != tc.id || e.Status != tc.wantStatus):
				t.Errorf("got %+v, %v", e, err)
			}
			if lists != tc.wantPages {
				t.Errorf("%d list calls, want %d: %v", lists, tc.wantPages, f.calls)
			}
		})
	}
}

func TestAwaitUsesTheListOnA500(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := &fakeN8N{answer: func(n int, r *http.Request) (*http.Response, error) {
			if r.URL.Path != "/api/v1/executions" {
				return answer(500, `{"message":"Internal Server Error"}`), nil
			}
			status := "running"
			if n > 4 {
				status = "success"
			}
			if r.URL.Query().Get("status") == "" && status == "running" {
				return answer(200, `{"data":[{"id":"3","status":"success"}],"nextCursor":null}`), nil
			}
			return answer(200, fmt.Sprintf(`{"data":[{"id":"4","status":%q}],"nextCursor":null}`, status)), nil
		}}
		e, _, err := fakeClient(t, f).Await(t.Context(), "4", &AwaitOptions{WorkflowID: "wf"})
		if err != nil || e.Status != "success" {
			t.Fatalf("await: %+v %v", e, err)
		}
	})
}

// TestUnsupportedOperation: a 404 or 405 for an operation the served spec
// lacks (1.x has no stop) is an *UnsupportedError; one the spec has (an
// unknown execution) stays the API's answer.
func TestUnsupportedOperation(t *testing.T) {
	t.Parallel()
	spec1x := "openapi: 3.0.0\npaths:\n  /executions/{id}:\n    get: {}\n    delete: {}\n  /executions/{id}/retry:\n    post: {}\n"
	spec2x := spec1x + "  /executions/{executionId}/stop:\n    post: {}\n"
	for _, tc := range []struct {
		name, spec string
		status     int
		want       bool
	}{
		{"1.x 404", spec1x, 404, true},
		{"1.x 405", spec1x, 405, true},
		{"2.x 404 unknown execution", spec2x, 404, false},
		{"no spec served, unknown route", "", 404, true},
		{"no spec served, unknown execution", "", 404, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeN8N{answer: func(n int, r *http.Request) (*http.Response, error) {
				if r.URL.Path == "/api/v1/openapi.yml" {
					if tc.spec == "" {
						return answer(404, `{"message":"not found"}`), nil
					}
					return answer(200, tc.spec), nil
				}
				if strings.Contains(tc.name, "unknown execution") {
					return answer(tc.status, `{"message":"Not Found"}`), nil
				}
				return answer(tc.status, `{"message":"not found"}`), nil
			}}
			c := fakeClient(t, f)
			_, _, err := c.Executions.Stop(t.Context(), "12")
			var ue *invocation.Error
			if errors.Is(err, ErrUnsupported) != tc.want || (tc.want && !errors.As(err, &ue)) {
				t.Fatalf("err %v (%T), unsupported want %v", err, err, tc.want)
			}
			if tc.want && (!strings.Contains(ue.Error(), "executions/12/stop") || !IsNotFound(err) && tc.status == 404) {
				t.Errorf("unsupported: %+v", ue)
			}
			if ok, err := c.Supports(t.Context(), "GET", "executions/3"); tc.spec != "" && (!ok || err != nil) {
				t.Errorf("Supports(GET executions/3) = %v, %v", ok, err)
			}
		})
	}
}
