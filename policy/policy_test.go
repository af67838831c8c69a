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
		o    Outcome
		want invocation.Class
	}{
		{Outcome{StatusCode: 408}, invocation.Transient},
		{Outcome{StatusCode: 429}, invocation.Transient},
		{Outcome{StatusCode: 502}, invocation.Transient},
		{Outcome{StatusCode: 503}, invocation.Transient},
		{Outcome{StatusCode: 504}, invocation.Transient},
		{Outcome{StatusCode: 524}, invocation.Transient},
		{Outcome{StatusCode: 400}, invocation.Permanent},
		{Outcome{StatusCode: 401, Message: "Authorization is required!"}, invocation.Permanent},
		{Outcome{StatusCode: 403, Message: "Authorization data is wrong!"}, invocation.Permanent},
		{Outcome{StatusCode: 404, Message: `The requested webhook "POST x" is not registered.`}, invocation.Permanent},
		{Outcome{StatusCode: 409}, invocation.Permanent},
		{Outcome{StatusCode: 413}, invocation.Permanent},
		{Outcome{StatusCode: 422}, invocation.Permanent},
		{Outcome{StatusCode: 302}, invocation.Permanent},
		{Outcome{StatusCode: 500, Message: "Error in workflow"}, invocation.Permanent},
		{Outcome{StatusCode: 500, Message: "There was a problem executing the workflow"}, invocation.Unknown},
		{Outcome{StatusCode: 501}, invocation.Unknown},
		{Outcome{StatusCode: 418}, invocation.Unknown},
		{Outcome{Err: errors.New("connection refused")}, invocation.Transient},
		{Outcome{Err: io.ErrUnexpectedEOF}, invocation.Transient},
		{Outcome{Err: context.DeadlineExceeded, TimedOut: true}, invocation.Unknown},
	}
	for _, tt := range tests {
		if got, ok := N8N(&tt.o); !ok || got != tt.want {
			t.Errorf("classify(%d %q %v) = %s, want %s", tt.o.StatusCode, tt.o.Message, tt.o.Err, got, tt.want)
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
