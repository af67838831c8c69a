package httpinvoker

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// v2Vector is one case of testdata/hmac-v2-vectors.json.
type v2Vector struct {
	Name           string            `json:"name"`
	Method         string            `json:"method"`
	Path           string            `json:"path"`
	Params         map[string]string `json:"params"`
	Query          map[string]string `json:"query"`
	IdempotencyKey string            `json:"idempotency_key"`
	Body           string            `json:"body"`
	Timestamp      string            `json:"timestamp"`
	Canonical      string            `json:"canonical"`
	Signature      string            `json:"signature"`
}

func readV2Vectors(t *testing.T) (secret.Secret, []v2Vector) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "hmac-v2-vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Secret  string     `json:"secret"`
		Vectors []v2Vector `json:"vectors"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Vectors) < 5 {
		t.Fatalf("only %d vectors", len(doc.Vectors))
	}
	return secret.New(doc.Secret), doc.Vectors
}

func (v v2Vector) request() *SignedRequest {
	r := &SignedRequest{Method: v.Method, Path: v.Path, Params: v.Params, Query: v.Query, IdempotencyKey: v.IdempotencyKey}
	if v.Body != "" {
		r.Body = []byte(v.Body)
	}
	return r
}

// TestSignV2Vectors: the canonical string and the signature of every
// vector (written by an implementation independent of this one) come
// out byte for byte, and each verifies.
func TestSignV2Vectors(t *testing.T) {
	t.Parallel()
	key, vectors := readV2Vectors(t)
	for _, v := range vectors {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			c, err := CanonicalV2(v.request(), v.Timestamp)
			if err != nil || string(c) != v.Canonical {
				t.Fatalf("canonical %q (%v)\nwant %q", c, err, v.Canonical)
			}
			ts := time.Unix(1_800_000_000, 0)
			gotTS, sig, err := SignV2(key, ts, v.request())
			if err != nil || gotTS != v.Timestamp || sig != v.Signature {
				t.Fatalf("SignV2 = %s %s %v, want %s %s", gotTS, sig, err, v.Timestamp, v.Signature)
			}
			if !VerifySignatureV2(key, ts.Add(time.Minute), 5*time.Minute, v.request(), v.Timestamp, v.Signature) {
				t.Error("the vector's own signature does not verify")
			}
		})
	}
}

// TestVerifyV2RefusesTampering: a v2 signature no longer verifies when
// the method, path, a path parameter, the query, the idempotency key, the
// body or the timestamp changes, or when it is stale.
func TestVerifyV2RefusesTampering(t *testing.T) {
	t.Parallel()
	key := secret.New("0123456789abcdef-secret")
	now := time.Unix(1_800_000_000, 0)
	base := func() *SignedRequest {
		return &SignedRequest{Method: "GET", Path: "orders/:id", Params: map[string]string{"id": "7"},
			Query: map[string]string{"q": "a b"}, IdempotencyKey: "k-1", Body: nil}
	}
	ts, sig, err := SignV2(key, now, base())
	if err != nil || !strings.HasPrefix(sig, "v2=") || len(sig) != 3+64 {
		t.Fatalf("SignV2: %s %v", sig, err)
	}
	tests := []struct {
		name   string
		change func(r *SignedRequest)
		ts     string
		now    time.Time
		ok     bool
	}{
		{"unchanged", func(*SignedRequest) {}, ts, now, true},
		{"extra path parameter not in the path is not signed", func(r *SignedRequest) { r.Params["other"] = "x" }, ts, now, true},
		{"leading slash of the path", func(r *SignedRequest) { r.Path = "/orders/:id/" }, ts, now, true},
		{"method", func(r *SignedRequest) { r.Method = "POST" }, ts, now, false},
		{"path", func(r *SignedRequest) { r.Path = "invoices/:id" }, ts, now, false},
		{"path parameter", func(r *SignedRequest) { r.Params["id"] = "8" }, ts, now, false},
		{"query value", func(r *SignedRequest) { r.Query["q"] = "a+b" }, ts, now, false},
		{"query added", func(r *SignedRequest) { r.Query["admin"] = "1" }, ts, now, false},
		{"query removed", func(r *SignedRequest) { r.Query = nil }, ts, now, false},
		{"idempotency key", func(r *SignedRequest) { r.IdempotencyKey = "k-2" }, ts, now, false},
		{"body", func(r *SignedRequest) { r.Body = []byte(`{}`) }, ts, now, false},
		{"timestamp", func(*SignedRequest) {}, "1800000001", now, false},
		{"stale", func(*SignedRequest) {}, ts, now.Add(6 * time.Minute), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := base()
			tt.change(r)
			if got := VerifySignatureV2(key, tt.now, 5*time.Minute, r, tt.ts, sig); got != tt.ok {
				t.Errorf("verified %v, want %v", got, tt.ok)
			}
		})
	}
}

// TestSignV2Refuses: what a Code node could not see as signed (query keys
// that n8n's query parser turns into nested objects, text that is not
// UTF-8, an empty key) is an error, not a signature that never verifies.
func TestSignV2Refuses(t *testing.T) {
	t.Parallel()
	tests := map[string]*SignedRequest{
		"bracket key":             {Method: "GET", Path: "p", Query: map[string]string{"a[b]": "1"}},
		"empty key":               {Method: "GET", Path: "p", Query: map[string]string{"": "1"}},
		"invalid UTF-8 value":     {Method: "GET", Path: "p", Query: map[string]string{"a": "\xff"}},
		"invalid UTF-8 parameter": {Method: "POST", Path: "p/:id", Params: map[string]string{"id": "\xff"}},
	}
	for name, r := range tests {
		if _, _, err := SignV2(secret.New("0123456789abcdef"), time.Now(), r); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
}

// TestSignerVersions: hmac_version 1 sends only the v1 header, 2 only the
// v2 header, both (and the default, empty) both; a request the v2
// signature cannot cover is refused before sending.
func TestSignerVersions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		version string
		v1, v2  bool
	}{
		{invocation.HMACVersion1, true, false},
		{invocation.HMACVersion2, false, true},
		{invocation.HMACVersionBoth, true, true},
		{"", true, true},
	}
	key := secret.New("0123456789abcdef-secret")
	for _, tt := range tests {
		t.Run("version "+tt.version, func(t *testing.T) {
			t.Parallel()
			a := &invocation.Attempt{
				Request: &invocation.Request{Workflow: "wf", IdempotencyKey: "k-1", Params: map[string]any{"q": "a b", "n": 2},
					PathParams: map[string]string{"id": "7"}},
				Target: &invocation.Target{Path: "orders/:id", Method: "GET", Auth: invocation.Auth{Type: invocation.AuthHMAC, Secret: key, HMACVersion: tt.version}},
				Number: 1,
			}
			var h http.Header
			_, err := Signer{}.Attempt(context.Background(), a, func(_ context.Context, a *invocation.Attempt) (*invocation.Result, error) {
				h = a.Header
				return &invocation.Result{}, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			ts := h.Get(HeaderTimestamp)
			if (h.Get(HeaderSignature) != "") != tt.v1 || (h.Get(HeaderSignatureV2) != "") != tt.v2 || ts == "" {
				t.Fatalf("headers %v", h)
			}
			if tt.v2 {
				// The query is the one the transport sends: non-strings as JSON.
				r := &SignedRequest{Method: "GET", Path: "orders/:id", Params: map[string]string{"id": "7"},
					Query: map[string]string{"q": "a b", "n": "2"}, IdempotencyKey: "k-1"}
				if !VerifySignatureV2(key, time.Now(), time.Minute, r, ts, h.Get(HeaderSignatureV2)) {
					t.Errorf("v2 signature does not cover the request the transport sends")
				}
			}
		})
	}
	a := &invocation.Attempt{
		Request: &invocation.Request{Workflow: "wf", Params: map[string]any{"a[b]": "1"}},
		Target:  &invocation.Target{Path: "p", Method: "GET", Auth: invocation.Auth{Type: invocation.AuthHMAC, Secret: key}},
	}
	called := false
	_, err := Signer{}.Attempt(context.Background(), a, func(context.Context, *invocation.Attempt) (*invocation.Result, error) {
		called = true
		return nil, nil
	})
	if called || invocation.CodeOf(err) != invocation.CodeBadRequest || !errors.Is(err, invocation.ErrPermanent) || invocation.OutcomeOf(err) != invocation.NotSent {
		t.Errorf("unsignable request: called %v, err %v", called, err)
	}
}
