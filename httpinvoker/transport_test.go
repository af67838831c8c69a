package httpinvoker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// stub answers every request with status, content type and body.
func stub(status int, ctype, body string) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Body != nil {
			_, _ = io.Copy(io.Discard, r.Body)
		}
		h := http.Header{}
		if ctype != "" {
			h.Set("Content-Type", ctype)
		}
		return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body)),
			ContentLength: int64(len(body)), Request: r}, nil
	})
}

func attempt(wf string, t *invocation.Target) *invocation.Attempt {
	return &invocation.Attempt{
		Request: &invocation.Request{Workflow: wf, RequestID: "rid-1", IdempotencyKey: "key-1"},
		Target:  t, Number: 1, Body: []byte(`{"a":1}`),
	}
}

func TestTransportTuned(t *testing.T) {
	t.Parallel()
	tr, err := New("http://127.0.0.1:1", WithPool(2, 8))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.transport.MaxIdleConnsPerHost != 8 || tr.transport.MaxIdleConns != 16 || tr.transport.TLSClientConfig.MinVersion < 0x0303 {
		t.Errorf("transport not tuned: %+v", tr.transport)
	}
}

// TestOneAttemptIsOneRequest: a server that reads the request and then
// breaks the connection without answering sees exactly one request per
// attempt, on a reused connection too (net/http would re-send a request
// it holds replayable, and a POST with an Idempotency-Key header and a
// rewindable body is), and the attempt reports that it was sent.
func TestOneAttemptIsOneRequest(t *testing.T) {
	t.Parallel()
	for _, method := range []string{http.MethodPost, http.MethodGet} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			var seen atomic.Int32
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func(c net.Conn) {
						defer c.Close()
						br := bufio.NewReader(c)
						for {
							req, err := http.ReadRequest(br)
							if err != nil {
								return
							}
							_, _ = io.Copy(io.Discard, req.Body)
							n := seen.Add(1)
							if n == 1 || req.URL.Path == "/webhook/warm" {
								// The first request gets an answer, so the
								// connection goes back to the pool.
								_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
								continue
							}
							return // read the request, then break the connection
						}
					}(c)
				}
			}()
			tr, err := New("http://" + ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			ctx := t.Context()
			if _, err := tr.Attempt(ctx, attempt("wf", &invocation.Target{Path: "warm", Method: method})); err != nil {
				t.Fatal(err)
			}
			a := attempt("wf", &invocation.Target{Path: "hook", Method: method})
			if method == http.MethodGet {
				a.Body = nil
			}
			_, err = tr.Attempt(ctx, a)
			if n := seen.Load(); n != 2 {
				t.Errorf("the server saw %d requests, want 2 (one warm-up, one attempt)", n)
			}
			var te *invocation.TransportError
			if !errors.As(err, &te) || !te.Sent || invocation.OutcomeOf(err) != invocation.Ambiguous {
				t.Fatalf("err = %v, want a sent (ambiguous) transport error", err)
			}
		})
	}
}

// TestRefusedIsNotSent: a refused connection never sent anything.
func TestRefusedIsNotSent(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	tr, err := New(url)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	_, err = tr.Attempt(context.Background(), attempt("wf", &invocation.Target{Path: "hook"}))
	if invocation.OutcomeOf(err) != invocation.NotSent {
		t.Fatalf("err = %v (%s), want not sent", err, invocation.OutcomeOf(err))
	}
}

// TestAttemptTimeout: the attempt's timeout holds with a context that
// cannot be canceled (the transport's limits) and with one that can (a
// deadline), for an answer that never comes and for a body that stalls;
// both are sent and timed out, so ambiguous.
func TestAttemptTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/webhook/stall-body" {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "100")
			_, _ = io.WriteString(w, `{"partial":`)
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	tr, err := New(srv.URL, WithTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	cancelable, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, path := range []string{"no-answer", "stall-body"} {
		for name, ctx := range map[string]context.Context{"background": context.Background(), "cancelable": cancelable} {
			start := time.Now()
			_, err := tr.Attempt(ctx, attempt("wf", &invocation.Target{Path: path}))
			var te *invocation.TransportError
			if !errors.As(err, &te) || !te.TimedOut || !te.Sent || time.Since(start) > 5*time.Second {
				t.Errorf("%s, %s context: %v after %s, want a sent, timed-out transport error", path, name, err, time.Since(start))
			}
		}
	}
	// A target's own timeout overrides the transport's.
	start := time.Now()
	_, err = tr.Attempt(context.Background(), attempt("wf", &invocation.Target{Path: "no-answer", Timeout: 50 * time.Millisecond}))
	if d := time.Since(start); err == nil || d >= 200*time.Millisecond {
		t.Errorf("target timeout of 50ms: %v after %s", err, d)
	}
}

// TestAnswerHeaders: the result carries the answer's headers, redacted
// when marshalled; the execution id is read from X-Execution-Id too.
func TestAnswerHeaders(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Execution-Id", "4711")
		w.Header().Set("Set-Cookie", "session=s3cr3t")
		w.Header().Set("X-Api-Token", "t0k3n")
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	defer srv.Close()
	tr, err := New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	res, err := tr.Attempt(context.Background(), attempt("wf", &invocation.Target{Path: "h"}))
	if err != nil || res.ExecutionID != "4711" || res.Header.Get("X-Api-Token") != "t0k3n" {
		t.Fatalf("res %+v err %v", res, err)
	}
	b, _ := json.Marshal(res)
	if strings.Contains(string(b), "s3cr3t") || strings.Contains(string(b), "t0k3n") || !strings.Contains(string(b), `"X-Execution-Id":["4711"]`) {
		t.Errorf("marshalled result: %s", b)
	}
}
