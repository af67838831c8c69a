package invoker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/httpinvoker"
	"github.com/n8n-invoker/n8n-invoker/internal/n8ntest"
	"github.com/n8n-invoker/n8n-invoker/internal/testcerts"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

func tlsStub(t *testing.T, certs *testcerts.Set, mTLS bool) *httptest.Server {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"tls":true}`)
	}))
	srv.TLS = certs.ServerTLS(mTLS)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func tlsConfigYAML(url, tls string) string {
	return fmt.Sprintf("n8n:\n  base_url: %q\n  tls: %s\ninvokers: {http: {max_retries: 1, backoff_factor: 0.001}}\nworkflows: {w: {path: w}}\n", url, tls)
}

func TestTLS(t *testing.T) {
	t.Parallel()
	certs := testcerts.New(t)
	plain := tlsStub(t, certs, false)
	mutual := tlsStub(t, certs, true)
	tests := []struct {
		name, url, tls string
		ok             bool
		warn           bool
	}{
		{"unknown CA refused by default", plain.URL, "{}", false, false},
		{"custom CA bundle", plain.URL, fmt.Sprintf("{ca_file: %q}", certs.CAFile), true, false},
		{"mTLS without client cert", mutual.URL, fmt.Sprintf("{ca_file: %q}", certs.CAFile), false, false},
		{"mTLS", mutual.URL, fmt.Sprintf("{ca_file: %q, cert_file: %q, key_file: %q}", certs.CAFile, certs.ClientCert, certs.ClientKey), true, false},
		{"skip verify only by flag, with a warning", plain.URL, "{insecure_skip_verify: true}", true, true},
		{"TLS 1.3 minimum", plain.URL, fmt.Sprintf("{ca_file: %q, min_version: '1.3'}", certs.CAFile), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := config.Parse([]byte(tlsConfigYAML(tt.url, tt.tls)), "tls.yaml")
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			m, err := invoker.New(cfg, invoker.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
			res, err := m.ExecuteWorkflow(t.Context(), "w", nil)
			if tt.ok != (err == nil) {
				t.Fatalf("res %v err %v", res, err)
			}
			if !tt.ok && (invocation.ClassOf(err) != invocation.Permanent && !strings.Contains(err.Error(), "certificate")) {
				t.Logf("refusal: %v", err)
			}
			if tt.warn != strings.Contains(logs.String(), "verification of n8n is OFF") {
				t.Errorf("warning logged: %v; logs %s", !tt.warn, logs.String())
			}
		})
	}
	// A certificate error is permanent: no retry storm against a wrong cert.
	cfg, _ := config.Parse([]byte(tlsConfigYAML(plain.URL, "{}")), "tls.yaml")
	m, _ := invoker.New(cfg)
	defer m.Close(context.Background())
	_, err := m.ExecuteWorkflow(t.Context(), "w", nil)
	if invocation.ClassOf(err) != invocation.Permanent || invocation.AttemptsOf(err) != 1 {
		t.Errorf("unknown CA: %v (class %s, %d attempts)", err, invocation.ClassOf(err), invocation.AttemptsOf(err))
	}
	if _, err := config.Parse([]byte(tlsConfigYAML(plain.URL, "{cert_file: x.pem}")), "tls.yaml"); err == nil {
		t.Error("cert_file without key_file accepted")
	}
}

// TestMTLSProxyToRealN8N puts a TLS-terminating proxy that requires a
// client certificate in front of the real n8n, and runs a workflow by
// alias and by id (the API client goes through it too).
func TestMTLSProxyToRealN8N(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	certs := testcerts.New(t)
	target, _ := url.Parse(n8n.BaseURL)
	proxy := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(target))
	proxy.TLS = certs.ServerTLS(true)
	proxy.StartTLS()
	defer proxy.Close()
	cfg := n8n.Config(t)
	cfg.N8N.BaseURL = proxy.URL
	cfg.N8N.TLS = config.TLS{CAFile: certs.CAFile, CertFile: certs.ClientCert, KeyFile: certs.ClientKey}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m, err := invoker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := m.ExecuteWorkflow(ctx, n8ntest.Echo, map[string]any{"over": "mtls"})
	if err != nil || !strings.Contains(string(res.Output), `"over":"mtls"`) {
		t.Fatalf("alias over mTLS: %v %v", res, err)
	}
	if _, err := m.ExecuteWorkflow(ctx, n8n.WorkflowID(t, "n8n-invoker echo"), nil, invoker.Wait()); err != nil {
		t.Fatalf("by id and awaited over mTLS: %v", err)
	}
	if h := m.Health(ctx); !h.Healthy {
		t.Errorf("health over mTLS: %+v", h)
	}
}

func TestAPIKeyFileRotation(t *testing.T) {
	t.Parallel()
	var current atomic.Value
	current.Store("key-one")
	var calls atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("X-N8N-API-KEY") != current.Load().(string) {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"message":"Unauthorized"}`)
			return
		}
		fmt.Fprint(w, `{"id":"1","status":"success"}`)
	}))
	defer api.Close()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "api-key")
	_ = os.WriteFile(keyFile, []byte("key-one\n"), 0o600)
	cfg, err := config.Parse([]byte(fmt.Sprintf("n8n: {base_url: %q, api_key_file: %q}\n", api.URL, keyFile)), "k.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := invoker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	ctx := t.Context()
	if _, _, err := m.API().Executions.Get(ctx, "1", false); err != nil {
		t.Fatal(err)
	}
	// n8n's key is rotated and the mounted file updated: the next call
	// gets a 401, reloads the file and succeeds, with no restart.
	current.Store("key-two")
	_ = os.WriteFile(keyFile, []byte("key-two-longer\n"), 0o600)
	current.Store("key-two-longer")
	before := calls.Load()
	if _, _, err := m.API().Executions.Get(ctx, "1", false); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if n := calls.Load() - before; n > 2 {
		t.Errorf("%d calls after rotation, want at most 2 (a 401 then the retry)", n)
	}
	// A wrong key that does not change stays a clear 401.
	current.Store("key-three")
	_, _, err = m.API().Executions.Get(ctx, "1", false)
	if err == nil || !strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "key-two") {
		t.Errorf("stale key: %v", err)
	}
	// SIGHUP path: ReloadSecrets picks the new file up.
	_ = os.WriteFile(keyFile, []byte("key-three\n"), 0o600)
	if changed, err := m.ReloadSecrets(ctx); err != nil || !changed {
		t.Errorf("reload: %v %v", changed, err)
	}
	if _, _, err := m.API().Executions.Get(ctx, "1", false); err != nil {
		t.Errorf("after reload: %v", err)
	}
	if _, err := config.Parse([]byte(fmt.Sprintf("n8n: {base_url: %q, api_key_file: %q}\n", api.URL, filepath.Join(dir, "missing"))), "k.yaml"); err == nil ||
		!strings.Contains(err.Error(), "n8n.api_key_file") {
		t.Errorf("missing key file: %v", err)
	}
	var ce *config.Error
	_, err = config.Parse([]byte(fmt.Sprintf("n8n: {base_url: %q, api_key: x, api_key_file: %q}\n", api.URL, keyFile)), "k.yaml")
	if !errors.As(err, &ce) {
		t.Errorf("both api_key and api_key_file: %v", err)
	}
}

// TestSignedWebhooksAgainstRealN8N sends HMAC-signed requests to the
// template workflow that verifies them, and JWT-authenticated requests to
// a webhook with n8n's own JWT auth.
func TestSignedWebhooksAgainstRealN8N(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	good, _ := realManager(t, nil)
	res, err := good.ExecuteWorkflow(ctx, n8ntest.Signed, map[string]any{"order": 7})
	if err != nil || !strings.Contains(string(res.Output), `"verified":true`) || !strings.Contains(string(res.Output), `"order":7`) {
		t.Fatalf("signed: %v %v", res, err)
	}
	res, err = good.ExecuteWorkflow(ctx, n8ntest.JWTAuth, map[string]any{"x": 1})
	if err != nil || !strings.Contains(string(res.Output), `"jwtPayload"`) {
		t.Fatalf("jwt: %v %v", res, err)
	}
	wrong := secret.New("not-the-right-secret-0123")
	bad, _ := realManager(t, func(c *config.Config) {
		for _, n := range []string{n8ntest.Signed, n8ntest.JWTAuth} {
			w := c.Workflows[n]
			w.Auth.Secret = wrong
			c.Workflows[n] = w
		}
	})
	if _, err := bad.ExecuteWorkflow(ctx, n8ntest.Signed, nil); !errors.Is(err, invocation.ErrWorkflowFailed) || invocation.AttemptsOf(err) != 1 {
		t.Errorf("bad HMAC secret: %v", err)
	}
	var he *invocation.HTTPError
	if _, err := bad.ExecuteWorkflow(ctx, n8ntest.JWTAuth, nil); !errors.As(err, &he) || he.StatusCode != 403 || he.ErrClass != invocation.Permanent {
		t.Errorf("bad JWT secret: %v", err)
	}
	// A replayed (stale) signature is rejected by the template workflow.
	body := []byte(`{"order":8}`)
	ts, sig := httpinvoker.Sign(secret.New(n8n.HMACSecret), time.Now().Add(-10*time.Minute), body)
	req, _ := http.NewRequestWithContext(ctx, "POST", n8n.BaseURL+"/webhook/invoker-signed", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(httpinvoker.HeaderTimestamp, ts)
	req.Header.Set(httpinvoker.HeaderSignature, sig)
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 {
		t.Errorf("stale signature answered %d", resp.StatusCode)
	}
}

// TestRedactionOfSecretFiles: the contents of the secret files (the API
// key file, the MCP token file) are in the log-redaction backstop from
// the start, and so are the new contents after a reload (SIGHUP's
// ReloadSecrets): logging them through the library's logger, or through
// one derived from it before the reload, never shows them.
func TestRedactionOfSecretFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyFile, tokenFile := filepath.Join(dir, "api-key"), filepath.Join(dir, "mcp-token")
	write := func(f, v string) {
		if err := os.WriteFile(f, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(keyFile, "api-key-one-0001")
	write(tokenFile, "mcp-token-one-0001")
	cfg, err := config.Parse([]byte(fmt.Sprintf("n8n: {base_url: 'http://127.0.0.1:1', api_key_file: %q}\ninvokers:\n  mcp: {token_file: %q}\n", keyFile, tokenFile)), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	m, err := invoker.New(cfg, invoker.WithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	derived := m.Logger().With("component", "test")
	leak := func(log *slog.Logger, values ...string) {
		msg := "n8n answered 401 for " + strings.Join(values, " and ")
		log.Error(msg, "error", errors.New(msg), "detail", msg, slog.Group("g", "v", msg))
	}
	leak(m.Logger(), "api-key-one-0001", "mcp-token-one-0001")

	write(keyFile, "api-key-two-000000002")
	write(tokenFile, "mcp-token-two-000000002")
	if changed, err := m.ReloadSecrets(t.Context()); err != nil || !changed {
		t.Fatalf("reload: %v %v", changed, err)
	}
	leak(m.Logger(), "api-key-two-000000002", "mcp-token-two-000000002")
	leak(derived, "api-key-two-000000002", "mcp-token-two-000000002", "api-key-one-0001")
	out := logs.String()
	for _, s := range []string{"api-key-one", "mcp-token-one", "api-key-two", "mcp-token-two"} {
		if strings.Contains(out, s) {
			t.Errorf("%s appears in the log:\n%s", s, out)
		}
	}
	if n := strings.Count(out, "REDACTED"); n < 12 {
		t.Errorf("%d REDACTED in the log, want every value redacted:\n%s", n, out)
	}
}
