package policy

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

func TestFullJitterRange(t *testing.T) {
	t.Parallel()
	for range 1000 {
		if d, _ := (Retry{BaseDelay: time.Second}).Wait(1, 0, false); d < 0 || d >= time.Second {
			t.Fatalf("jitter %s out of [0, 1s)", d)
		}
	}
	if d, _ := (Retry{}).Wait(1, 0, false); d != 0 {
		t.Error("jitter of 0")
	}
}

func TestClassification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		o    error
		want invocation.Class
	}{
		{&invocation.HTTPError{StatusCode: 408}, invocation.Transient},
		{&invocation.HTTPError{StatusCode: 429}, invocation.Transient},
		{&invocation.HTTPError{StatusCode: 502}, invocation.Transient},
		{&invocation.HTTPError{StatusCode: 503}, invocation.Transient},
		{&invocation.HTTPError{StatusCode: 504}, invocation.Transient},
		{&invocation.HTTPError{StatusCode: 524}, invocation.Transient},
		{&invocation.HTTPError{StatusCode: 400}, invocation.Permanent},
		{&invocation.HTTPError{StatusCode: 401, Message: "Authorization is required!"}, invocation.Permanent},
		{&invocation.HTTPError{StatusCode: 403, Message: "Authorization data is wrong!"}, invocation.Permanent},
		{&invocation.HTTPError{StatusCode: 404, Message: `The requested webhook "POST x" is not registered.`}, invocation.Permanent},
		{&invocation.HTTPError{StatusCode: 409}, invocation.Permanent},
		{&invocation.HTTPError{StatusCode: 413}, invocation.Permanent},
		{&invocation.HTTPError{StatusCode: 422}, invocation.Permanent},
		{&invocation.HTTPError{StatusCode: 302}, invocation.Permanent},
		{&invocation.HTTPError{StatusCode: 500, Message: "Error in workflow"}, invocation.Permanent},
		{&invocation.HTTPError{StatusCode: 500, Message: "There was a problem executing the workflow"}, invocation.Unknown},
		{&invocation.HTTPError{StatusCode: 501}, invocation.Unknown},
		{&invocation.HTTPError{StatusCode: 418}, invocation.Unknown},
		{&invocation.TransportError{Err: errors.New("connection refused")}, invocation.Transient},
		{&invocation.TransportError{Err: io.ErrUnexpectedEOF}, invocation.Transient},
		{&invocation.TransportError{Err: context.DeadlineExceeded, TimedOut: true}, invocation.Unknown},
		{io.EOF, invocation.Transient},
		{errors.New("a custom transport's failure"), invocation.Unknown},
		{bulkheadFull("w", 1), invocation.Transient},
	}
	for _, tt := range tests {
		if got, ok := N8N(tt.o); !ok || got != tt.want {
			t.Errorf("classify(%v) = %s, want %s", tt.o, got, tt.want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"120", 2 * time.Minute, true},
		{"0", 0, true},
		{" 5 ", 5 * time.Second, true},
		{"Thu, 26 Nov 2026 12:00:30 GMT", 30 * time.Second, true},
		{"Thursday, 26-Nov-26 12:01:00 GMT", time.Minute, true},
		{"Thu Nov 26 12:00:10 2026", 10 * time.Second, true},
		{"Thu, 26 Nov 2026 11:00:00 GMT", 0, true},
		{"", 0, false},
		{"-1", 0, false},
		{"soon", 0, false},
		{"1.5", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseRetryAfter(%q) = %s, %v; want %s, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
