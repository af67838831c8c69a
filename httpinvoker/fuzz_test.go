package httpinvoker

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// FuzzDecode: whatever n8n answers (status, content type, body), the
// invoker returns a result whose Output is valid JSON, or a typed error;
// never a panic.
func FuzzDecode(f *testing.F) {
	f.Add(200, "application/json", `{"executionId":"1","a":[1,2]}`)
	f.Add(200, "text/html", "<b>ok</b>")
	f.Add(200, "", `[{"key":"a","ok":true}]`)
	f.Add(500, "application/json", `{"message":"Error in workflow"}`)
	f.Add(404, "text/html", "<!DOCTYPE html>")
	f.Add(200, "application/json", `{"executionId":`)
	f.Add(429, "", "")
	f.Fuzz(func(t *testing.T, status int, ctype, body string) {
		if status < 100 || status > 599 {
			return
		}
		tr, err := New("http://n8n.test", WithMaxResponseBytes(1<<16), WithRoundTripper(func(http.RoundTripper) http.RoundTripper {
			return stub(status, ctype, body)
		}))
		if err != nil {
			t.Fatal(err)
		}
		res, err := tr.Attempt(t.Context(), attempt("wf", &invocation.Target{Path: "hook"}))
		if err != nil {
			var (
				he *invocation.HTTPError
				re *invocation.ResponseError
			)
			if !errors.As(err, &he) && !errors.As(err, &re) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		if !json.Valid(res.Output) {
			t.Fatalf("invalid JSON output %q", res.Output)
		}
	})
}

// FuzzMessageOf: n8n's error bodies never break message extraction, and
// the execution id scan agrees with a decoder.
func FuzzMessageOf(f *testing.F) {
	f.Add([]byte(`{"message":"x"}`))
	f.Add([]byte("Authorization data is wrong!"))
	f.Add([]byte(`{"ok":true,"executionId":"1"}`))
	f.Add([]byte(`{"a":{"executionId":"inner"},"executionId":42}`))
	f.Add([]byte(`{"s":"\"executionId\":\"x\"","executionId":"a\u0062"}`))
	f.Add([]byte(`{"executionId":"5","b":"executionId"}`))
	f.Add([]byte(`{"executionId":"1","execution\u0049d":"2"}`))
	f.Add([]byte("{\"executionId\":\"\xff\"}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = invocation.MessageOf(b)
		if got, want := executionIDOf(b), decodedExecutionID(b); json.Valid(b) && got != want {
			t.Fatalf("executionIDOf(%q) = %q, a decoder says %q", b, got, want)
		}
		resp := &http.Response{Body: io.NopCloser(strings.NewReader(string(b)))}
		_ = resp.Body.Close()
	})
}
