package invoker_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/httpinvoker"
	"github.com/n8n-invoker/n8n-invoker/internal/n8ntest"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// signedVector is a case of httpinvoker/testdata/hmac-v2-vectors.json.
type signedVector struct {
	Name           string            `json:"name"`
	Method         string            `json:"method"`
	Path           string            `json:"path"`
	Params         map[string]string `json:"params"`
	Query          map[string]string `json:"query"`
	IdempotencyKey string            `json:"idempotency_key"`
	Body           string            `json:"body"`
}

// signedRequest is one request on the wire, to be sent as it is or
// tampered with.
type signedRequest struct {
	method, path string // path under /webhook/
	query        url.Values
	header       http.Header
	body         string
}

func (r signedRequest) clone() signedRequest {
	c := r
	c.header = r.header.Clone()
	c.query = url.Values{}
	for k, v := range r.query {
		c.query[k] = append([]string(nil), v...)
	}
	return c
}

// TestRealN8NSignatureV2Vectors sends every vector's request, signed by
// the invoker's signer with the fixture's secret and a fresh timestamp,
// to the fixture workflows that run the verification template's code
// (testdata/workflows/signed*.json: POST and GET on one path, and a path
// with a parameter): n8n accepts each as sent, sees the decoded params
// and query the vector holds, and refuses it with the method, the path, a
// path parameter, the query, the idempotency key or the body changed, and
// with only the v1 signature. Each vector also goes through a Manager
// (hmac_version's default, both).
func TestRealN8NSignatureV2Vectors(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	b, err := os.ReadFile(filepath.Join("httpinvoker", "testdata", "hmac-v2-vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Vectors []signedVector `json:"vectors"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	m, err := invoker.New(n8n.Config(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Minute}
	key := secret.New(n8n.HMACSecret)
	targets := map[string]struct {
		workflow string
		target   invocation.Target
	}{
		"POST invoker-signed":                 {n8ntest.Signed, invocation.Target{Path: "invoker-signed", Method: "POST"}},
		"GET invoker-signed":                  {n8ntest.SignedGet, invocation.Target{Path: "invoker-signed", Method: "GET"}},
		"POST invoker-signed-orders/:orderId": {n8ntest.SignedOrders, invocation.Target{Path: "invoker-signed-orders/:orderId", Method: "POST", WebhookID: n8ntest.SignedOrdersWebhookID}},
	}
	send := func(ctx context.Context, r signedRequest) (int, string) {
		u := n8n.BaseURL + "/webhook/" + r.path
		if len(r.query) > 0 {
			u += "?" + r.query.Encode()
		}
		var body io.Reader
		if r.body != "" {
			body = strings.NewReader(r.body)
		}
		req, err := http.NewRequestWithContext(ctx, r.method, u, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = r.header.Clone()
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	for _, v := range doc.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			tg, ok := targets[v.Method+" "+v.Path]
			if !ok {
				t.Fatalf("no fixture for %s %s", v.Method, v.Path)
			}
			target := tg.target
			target.Auth = invocation.Auth{Type: invocation.AuthHMAC, Secret: key, HMACVersion: invocation.HMACVersionBoth}
			req := &invocation.Request{Workflow: tg.workflow, PathParams: v.Params, IdempotencyKey: v.IdempotencyKey, RequestID: "sig-test"}
			a := &invocation.Attempt{Request: req, Target: &target, Number: 1}
			if v.Body != "" {
				a.Body = []byte(v.Body)
			}
			if len(v.Query) > 0 {
				req.Params = map[string]any{}
				for k, x := range v.Query {
					req.Params[k] = x
				}
			}
			path, err := invocation.FillPath(&target, req)
			if err != nil {
				t.Fatal(err)
			}
			// The request exactly as the signer signs it and the transport
			// would send it.
			var signed signedRequest
			_, err = httpinvoker.Signer{}.Attempt(ctx, a, func(_ context.Context, a *invocation.Attempt) (*invocation.Result, error) {
				h := a.Header.Clone()
				if a.Body != nil {
					h.Set("Content-Type", "application/json")
				}
				if v.IdempotencyKey != "" {
					h.Set(httpinvoker.HeaderIdempotencyKey, v.IdempotencyKey)
				}
				q := url.Values{}
				for k, x := range v.Query {
					q.Set(k, x)
				}
				signed = signedRequest{method: target.Method, path: path, query: q, header: h, body: string(a.Body)}
				return &invocation.Result{}, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			status, out := send(ctx, signed)
			var got struct {
				Verified bool              `json:"verified"`
				Params   map[string]string `json:"params"`
				Query    map[string]string `json:"query"`
			}
			if err := json.Unmarshal([]byte(out), &got); status != 200 || err != nil || !got.Verified {
				t.Fatalf("valid request: %d %s", status, out)
			}
			for k, x := range v.Params {
				if got.Params[k] != x {
					t.Errorf("n8n saw params %q, want %q", got.Params, v.Params)
				}
			}
			if len(got.Query) != len(v.Query) {
				t.Errorf("n8n saw query %q, want %q", got.Query, v.Query)
			}
			for k, x := range v.Query {
				if got.Query[k] != x {
					t.Errorf("n8n saw query %q, want %q", got.Query, v.Query)
				}
			}

			// A signature replayed with another method (POST and GET
			// share the static path) or to another path with the same
			// secret (the static path and the one with a parameter; only
			// POST serves the latter).
			tampered := map[string]func(r *signedRequest){}
			if target.WebhookID == "" {
				tampered["method"] = func(r *signedRequest) { r.method = map[string]string{"GET": "POST", "POST": "GET"}[r.method] }
				tampered["path"] = func(r *signedRequest) {
					r.method, r.path = "POST", n8ntest.SignedOrdersWebhookID+"/invoker-signed-orders/1"
				}
			} else {
				tampered["path"] = func(r *signedRequest) { r.path = "invoker-signed" }
			}
			for name, change := range map[string]func(r *signedRequest){
				"query":           func(r *signedRequest) { r.query.Set("admin", "1") },
				"idempotency key": func(r *signedRequest) { r.header.Set(httpinvoker.HeaderIdempotencyKey, "another-key") },
				"only v1":         func(r *signedRequest) { r.header.Del(httpinvoker.HeaderSignatureV2) },
			} {
				tampered[name] = change
			}
			if target.Method == "POST" {
				tampered["body"] = func(r *signedRequest) {
					r.body = strings.Replace(r.body, "{", `{"x":1`+map[bool]string{true: "", false: ","}[r.body == "{}"], 1)
				}
			}
			if len(v.Query) > 0 {
				tampered["query value"] = func(r *signedRequest) {
					for k := range r.query {
						r.query.Set(k, r.query.Get(k)+"x")
						break
					}
				}
			}
			if target.WebhookID != "" {
				tampered["path parameter"] = func(r *signedRequest) { r.path = strings.Replace(r.path, "A%2042", "B%2042", 1) }
			}
			for name, change := range tampered {
				r := signed.clone()
				change(&r)
				if r.method == "GET" {
					r.body = ""
					r.header.Del("Content-Type")
				}
				status, out := send(ctx, r)
				if status != 500 || !strings.Contains(out, "Error in workflow") {
					t.Errorf("tampered %s: %d %s, want the verification to refuse it (500)", name, status, out)
				}
			}

			// The same request through a Manager, signed by its pipeline.
			res, err := m.Execute(ctx, &invocation.Request{Workflow: tg.workflow, Params: req.Params, Body: bodyOf(v),
				PathParams: v.Params, IdempotencyKey: v.IdempotencyKey})
			if err != nil || !strings.Contains(string(res.Output), `"verified":true`) {
				t.Errorf("through the manager: %v %v", res, err)
			}
		})
	}
}

func bodyOf(v signedVector) json.RawMessage {
	if v.Method == "GET" || v.Body == "" {
		return nil
	}
	return json.RawMessage(v.Body)
}

// TestVerificationTemplateCopies: every workflow in templates/ and
// testdata/workflows/ that verifies the invoker's signature runs exactly
// the code of templates/verify-hmac-signature.json, which verifies v2.
func TestVerificationTemplateCopies(t *testing.T) {
	t.Parallel()
	code := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var wf struct {
			Nodes []struct {
				Type       string `json:"type"`
				Parameters struct {
					JSCode string `json:"jsCode"`
				} `json:"parameters"`
			} `json:"nodes"`
		}
		if err := json.Unmarshal(b, &wf); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, n := range wf.Nodes {
			if strings.Contains(strings.ToLower(n.Parameters.JSCode), "x-invoker-signature") {
				return n.Parameters.JSCode
			}
		}
		return ""
	}
	want := code(filepath.Join("templates", "verify-hmac-signature.json"))
	if !strings.Contains(want, "x-invoker-signature-v2") {
		t.Fatal("the template does not verify the v2 signature")
	}
	files, _ := filepath.Glob(filepath.Join("templates", "*.json"))
	more, _ := filepath.Glob(filepath.Join("testdata", "workflows", "*.json"))
	copies := 0
	for _, f := range append(files, more...) {
		if got := code(f); got != "" {
			copies++
			if got != want {
				t.Errorf("%s: its verification code differs from the template's", f)
			}
		}
	}
	if copies < 4 {
		t.Errorf("%d copies of the verification code, want the template and 3 fixtures", copies)
	}
}
