package config

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/policy"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

func env(m map[string]string) Option {
	return WithLookupEnv(func(k string) (string, bool) { v, ok := m[k]; return v, ok })
}

func TestLoadSeedSchema(t *testing.T) {
	t.Parallel()
	cfg, err := Load("testdata/seed.yaml", env(map[string]string{"N8N_API_KEY": "k-123"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.N8N.BaseURL != "https://n8n.example.com" || cfg.N8N.APIKey.Reveal() != "k-123" || cfg.N8N.Timeout.D() != 30*time.Second {
		t.Errorf("n8n = %+v", cfg.N8N)
	}
	want := Default().Invokers.HTTP
	want.MaxRetries = 3 // the seed's file sets it
	if !reflect.DeepEqual(cfg.Invokers.HTTP, want) {
		t.Errorf("http = %+v, want %+v", cfg.Invokers.HTTP, want)
	}
	if !cfg.Tracing.Enabled || cfg.Tracing.Backend != "opentelemetry" || cfg.Tracing.SampleRate != 1 {
		t.Errorf("tracing = %+v", cfg.Tracing)
	}
	var names []string
	for _, r := range cfg.Hooks.PreExecution {
		names = append(names, r.Name)
	}
	if strings.Join(names, ",") != "logging_hook,metrics_hook" || cfg.Hooks.PreExecution[1].Pos.Line != 21 {
		t.Errorf("pre hooks = %+v", cfg.Hooks.PreExecution)
	}
	if len(cfg.Hooks.PostExecution) != 1 || len(cfg.Hooks.Error) != 1 || cfg.Hooks.Error[0].Name != "notification_hook" {
		t.Errorf("hooks = %+v", cfg.Hooks)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte(`
n8n:
  base_url: http://127.0.0.1:5678
workflows:
  w:
    path: /hook
`), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.Invokers.HTTP
	if cfg.N8N.Timeout.D() != DefaultTimeout || h.MaxRetries != DefaultMaxRetries || h.BackoffFactor != 2 || h.PoolConnections != 10 || h.PoolMaxSize != 20 {
		t.Errorf("defaults not applied: %+v %+v", cfg.N8N, h)
	}
	if cfg.Tracing.Enabled || cfg.Tracing.SampleRate != 1 {
		t.Errorf("tracing defaults: %+v", cfg.Tracing)
	}
	w := cfg.Workflows["w"]
	if w.Path != "hook" || w.Method != "POST" || w.ResponseMode != "lastNode" || w.Auth.Type != "none" {
		t.Errorf("workflow defaults: %+v", w)
	}
}

func TestPolicySections(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte(`
n8n: {base_url: 'http://x'}
invokers:
  http:
    retry:
      multiplier: 3
      max_delay: 10s
      max_elapsed: 2m
      budget: {enabled: false}
    circuit_breaker:
      consecutive_failures: 7
      open_timeout: 5
      half_open_probes: 2
    rate_limit: {enabled: true, requests_per_second: 8}
    bulkhead: {max_in_flight: 4, max_wait: 1.5}
`), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.Invokers.HTTP
	if h.Retry.Multiplier != 3 || h.Retry.MaxDelay.D() != 10*time.Second || h.Retry.MaxElapsed.D() != 2*time.Minute ||
		h.Retry.MaxRetryAfter.D() != DefaultMaxRetryAfter || h.Retry.Budget.Enabled || h.Retry.Budget.Capacity != DefaultBudgetCapacity {
		t.Errorf("retry = %+v", h.Retry)
	}
	cb := h.CircuitBreaker
	if !cb.Enabled || cb.ConsecutiveFailures != 7 || cb.OpenTimeout.D() != 5*time.Second || cb.HalfOpenProbes != 2 || cb.MinCalls != DefaultMinCalls || cb.FailureRate != DefaultFailureRate || cb.MaxPause.D() != DefaultMaxPause {
		t.Errorf("breaker = %+v", cb)
	}
	if !h.RateLimit.Enabled || h.RateLimit.RequestsPerSecond != 8 || h.Bulkhead.MaxInFlight != 4 || h.Bulkhead.MaxWait.D() != 1500*time.Millisecond {
		t.Errorf("rate %+v bulkhead %+v", h.RateLimit, h.Bulkhead)
	}
}

func TestExplicitZeroRetriesKept(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte("n8n: {base_url: 'http://x'}\ninvokers: {http: {max_retries: 0, backoff_factor: 0}}\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Invokers.HTTP.MaxRetries != 0 || cfg.Invokers.HTTP.BackoffFactor != 0 {
		t.Errorf("explicit zero overwritten: %+v", cfg.Invokers.HTTP)
	}
}

func TestEnvExpansionInValues(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte(`
n8n:
  base_url: "${N8N_URL:-http://127.0.0.1:5678}"
  timeout: ${TIMEOUT}
invokers:
  http:
    max_retries: ${RETRIES:-5}
workflows:
  onboarding:
    path: user-onboarding
    auth:
      type: header
      name: X-Token
      value: "${TOKEN}"
`), "c.yaml", env(map[string]string{"TIMEOUT": "2.5", "TOKEN": "s3cret: with # chars"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.N8N.BaseURL != "http://127.0.0.1:5678" || cfg.N8N.Timeout.D() != 2500*time.Millisecond || cfg.Invokers.HTTP.MaxRetries != 5 {
		t.Errorf("expanded = %+v %+v", cfg.N8N, cfg.Invokers.HTTP)
	}
	if got := cfg.Workflows["onboarding"].Auth.Value.Reveal(); got != "s3cret: with # chars" {
		t.Errorf("token = %q", got)
	}
}

func TestExpand(t *testing.T) {
	t.Parallel()
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"A": "1", "EMPTY": ""}[k]
		return v, ok
	}
	tests := []struct {
		in, want, err string
	}{
		{in: "plain", want: "plain"},
		{in: "${A}", want: "1"},
		{in: "x${A}y${A}", want: "x1y1"},
		{in: "${B:-def}", want: "def"},
		{in: "${B:-}", want: ""},
		{in: "${EMPTY:-def}", want: "def"},
		{in: "${EMPTY}", want: ""},
		{in: "$${A}", want: "${A}"},
		{in: "cost $5", want: "cost $5"},
		{in: "${B}", err: "B is not set"},
		{in: "${A", err: "unterminated"},
		{in: "${}", err: "invalid variable"},
		{in: "${1A}", err: "invalid variable"},
	}
	for _, tt := range tests {
		got, err := Expand(tt.in, lookup)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Expand(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// testserver stands for a server store another module registers
// (contrib/postgres): it needs a DSN.
func init() {
	if err := policy.RegisterSharedLimit("testlimit", func(context.Context, policy.SharedLimitOptions) (policy.SharedLimiter, error) {
		return nil, errors.New("not for opening")
	}); err != nil {
		panic(err)
	}
	if err := dlq.Register("testserver", func(context.Context, dlq.StoreOptions) (dlq.Backend, error) {
		return nil, errors.New("not for opening")
	}); err != nil {
		panic(err)
	}
}

func TestErrorsNameFileLineField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml string
		line       int
		field, msg string
	}{
		{"unset env", "n8n:\n  base_url: http://x\n  api_key: ${NOPE}\n", 3, "n8n.api_key", "NOPE is not set"},
		{"unknown key", "n8n:\n  base_url: http://x\n  timeot: 3\n", 3, "n8n.timeot", "unknown field"},
		{"unknown top key", "n8n:\n  base_url: http://x\nworkflow: {}\n", 3, "workflow", "unknown field"},
		{"wrong type int", "n8n: {base_url: 'http://x'}\ninvokers:\n  http:\n    max_retries: three\n", 4, "invokers.http.max_retries", "want an integer"},
		{"wrong type map", "n8n:\n  base_url: http://x\ninvokers: [1]\n", 3, "invokers", "want a mapping"},
		{"wrong type bool", "n8n: {base_url: 'http://x'}\ntracing:\n  enabled: maybe\n", 3, "tracing.enabled", "true or false"},
		{"negative retries", "n8n: {base_url: 'http://x'}\ninvokers:\n  http:\n    max_retries: -1\n", 4, "invokers.http.max_retries", "between 0 and 100"},
		{"url without scheme", "n8n:\n  base_url: n8n.example.com\n", 2, "n8n.base_url", "http:// or https://"},
		{"missing base url", "n8n:\n  timeout: 3\n", 0, "n8n.base_url", "is required"},
		{"sample rate", "n8n: {base_url: 'http://x'}\ntracing:\n  sample_rate: 1.5\n", 3, "tracing.sample_rate", "between 0 and 1"},
		{"bad backend", "n8n: {base_url: 'http://x'}\ntracing:\n  backend: jaeger\n", 3, "tracing.backend", "opentelemetry or none"},
		{"bad timeout", "n8n:\n  base_url: http://x\n  timeout: soon\n", 3, "n8n.timeout", "want seconds"},
		{"negative pool", "n8n: {base_url: 'http://x'}\ninvokers:\n  http:\n    pool_maxsize: -2\n", 4, "invokers.http.pool_maxsize", "negative"},
		{"workflow no path", "n8n: {base_url: 'http://x'}\nworkflows:\n  a:\n    method: POST\n", 3, "workflows.a.path", "is required"},
		{"workflow bad mode", "n8n: {base_url: 'http://x'}\nworkflows:\n  a:\n    path: p\n    response_mode: whenDone\n", 5, "workflows.a.response_mode", "onReceived"},
		{"workflow bad method", "n8n: {base_url: 'http://x'}\nworkflows:\n  a:\n    path: p\n    method: FETCH\n", 5, "workflows.a.method", "must be one of"},
		{"header auth no value", "n8n: {base_url: 'http://x'}\nworkflows:\n  a:\n    path: p\n    auth:\n      type: header\n      name: X-K\n", 0, "workflows.a.auth.value", "required"},
		{"auth type", "n8n: {base_url: 'http://x'}\nworkflows:\n  a:\n    path: p\n    auth:\n      type: oauth\n", 6, "workflows.a.auth.type", "none, header, basic, hmac or jwt"},
		{"duplicate key", "n8n:\n  base_url: http://x\n  base_url: http://y\n", 3, "n8n.base_url", "duplicate"},
		{"syntax", "n8n:\n  base_url: [http://x\n", 1, "", "YAML syntax"},
		{"list for scalar", "n8n:\n  base_url: [a, b]\n", 2, "n8n.base_url", "single value"},
		{"empty hook", "n8n: {base_url: 'http://x'}\nhooks:\n  error: ['']\n", 3, "hooks.error[0]", "empty hook name"},
		{"empty file", "", 1, "", "empty configuration"},
		{"empty key (found by fuzzing)", "n8n: {base_url: 'http://x'}\n\"\": 1\n", 2, "", "unknown field"},
		{"credential type", "n8n: {base_url: 'http://x'}\ncredentials:\n  my cred:\n    type: jwt\n", 4, "credentials.my cred.type", "header or basic"},
		{"breaker rate", "n8n: {base_url: 'http://x'}\ninvokers:\n  http:\n    circuit_breaker:\n      failure_rate: 2\n", 5, "invokers.http.circuit_breaker.failure_rate", "(0, 1]"},
		{"breaker unknown key", "n8n: {base_url: 'http://x'}\ninvokers:\n  http:\n    circuit_breaker:\n      treshold: 2\n", 5, "invokers.http.circuit_breaker.treshold", "unknown field"},
		{"negative open timeout", "n8n: {base_url: 'http://x'}\ninvokers:\n  http:\n    circuit_breaker:\n      open_timeout: -1\n", 5, "invokers.http.circuit_breaker.open_timeout", "negative"},
		{"multiplier", "n8n: {base_url: 'http://x'}\ninvokers:\n  http:\n    retry:\n      multiplier: 0.5\n", 5, "invokers.http.retry.multiplier", "between 1 and 100"},
		{"budget", "n8n: {base_url: 'http://x'}\ninvokers:\n  http:\n    retry:\n      budget: {capacity: -5}\n", 5, "invokers.http.retry.budget.capacity", "negative"},
		{"rate limit", "n8n: {base_url: 'http://x'}\ninvokers:\n  http:\n    rate_limit:\n      enabled: true\n", 4, "invokers.http.rate_limit.requests_per_second", "positive"},
		{"store backend", "n8n: {base_url: 'http://x'}\nstore:\n  backend: mysql\n", 3, "store.backend", "unknown store \"mysql\""},
		{"store dsn", "n8n: {base_url: 'http://x'}\nstore:\n  backend: testserver\n", 0, "store.dsn", "required for store \"testserver\""},
		{"store dsn unset", "n8n: {base_url: 'http://x'}\nstore:\n  backend: testserver\n  dsn: ${PG_DSN}\n", 4, "store.dsn", "PG_DSN is not set"},
		{"sqlite schema", "n8n: {base_url: 'http://x'}\nstore:\n  schema: s\n", 3, "store.schema", "server stores"},
		{"store lease", "n8n: {base_url: 'http://x'}\nstore:\n  lease: 100ms\n", 3, "store.lease", "at least 1s"},
		{"shared limit backend", "n8n: {base_url: 'http://x'}\nrate_limit:\n  backend: memcached\n  url: x\n  requests_per_second: 5\n  fallback_per_process: 1\n", 3, "rate_limit.backend", "unknown shared limit \"memcached\""},
		{"shared limit no backend", "n8n: {base_url: 'http://x'}\nrate_limit:\n  requests_per_second: 5\n", 2, "rate_limit.backend", "is required"},
		{"shared limit no url", "n8n: {base_url: 'http://x'}\nrate_limit:\n  backend: testlimit\n  requests_per_second: 5\n  fallback_per_process: 1\n", 0, "rate_limit.url", "required"},
		{"shared limit no fallback", "n8n: {base_url: 'http://x'}\nrate_limit:\n  backend: testlimit\n  url: redis://x\n  requests_per_second: 5\n", 0, "rate_limit.fallback_per_process", "never no limit"},
		{"shared limit rate", "n8n: {base_url: 'http://x'}\nrate_limit:\n  backend: testlimit\n  url: redis://x\n  requests_per_second: -1\n  fallback_per_process: 1\n", 5, "rate_limit.requests_per_second", "positive"},
		{"bulkhead", "n8n: {base_url: 'http://x'}\ninvokers:\n  http:\n    bulkhead: {max_in_flight: -1}\n", 4, "invokers.http.bulkhead.max_in_flight", "negative"},
		{"transport", "n8n: {base_url: 'http://x'}\nworkflows:\n  a:\n    path: p\n    transport: grpc\n", 5, "workflows.a.transport", "webhook or mcp"},
		{"mcp without id", "n8n: {base_url: 'http://x'}\ninvokers: {mcp: {token: t}}\nworkflows:\n  a:\n    transport: mcp\n", 0, "workflows.a.id", "required with transport mcp"},
		{"mcp without token", "n8n: {base_url: 'http://x'}\nworkflows:\n  a:\n    transport: mcp\n    id: W1\n", 4, "workflows.a.transport", "invokers.mcp.token"},
		{"mcp token twice", "n8n: {base_url: 'http://x'}\ninvokers:\n  mcp:\n    token: t\n    token_file: f\n", 5, "invokers.mcp.token_file", "not both"},
		{"mcp rate", "n8n: {base_url: 'http://x'}\ninvokers:\n  mcp:\n    rate_limit: {requests: -5}\n", 4, "invokers.mcp.rate_limit.requests", "-1 for none"},
		{"mcp unknown key", "n8n: {base_url: 'http://x'}\ninvokers:\n  mcp:\n    tokn: t\n", 4, "invokers.mcp.tokn", "unknown field"},
		{"hmac version", "n8n: {base_url: 'http://x'}\nworkflows:\n  a:\n    path: p\n    auth:\n      type: hmac\n      secret: 0123456789abcdef\n      hmac_version: 3\n", 8, "workflows.a.auth.hmac_version", "1, 2 or both"},
		{"hmac version 1 on GET", "n8n: {base_url: 'http://x'}\nworkflows:\n  a:\n    path: p\n    method: GET\n    auth:\n      type: hmac\n      secret: 0123456789abcdef\n      hmac_version: 1\n", 9, "workflows.a.auth.hmac_version", "signs nothing"},
		{"hmac version without hmac", "n8n: {base_url: 'http://x'}\nworkflows:\n  a:\n    path: p\n    auth:\n      type: jwt\n      secret: 0123456789abcdef\n      hmac_version: 2\n", 8, "workflows.a.auth.hmac_version", "only for hmac"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tt.yaml), "conf.yaml", env(nil))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error = %v (%T), want *Error", err, err)
			}
			if e.Pos.File != "conf.yaml" || (tt.line != 0 && e.Pos.Line != tt.line) || e.Field != tt.field || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("error = %q; want conf.yaml line %d field %q msg %q", err, tt.line, tt.field, tt.msg)
			}
			if tt.line != 0 && !strings.HasPrefix(err.Error(), fmt.Sprintf("conf.yaml:%d", tt.line)) {
				t.Errorf("message %q does not start with file:line", err)
			}
		})
	}
}

// TestHMACVersion: hmac_version reads 1, 2 and both (numbers or
// strings) and defaults to both, on a GET webhook too (v2 covers its
// query); only version 1 on a GET is refused (see the error cases).
func TestHMACVersion(t *testing.T) {
	t.Parallel()
	tests := []struct{ method, version, want string }{
		{"POST", "", HMACVersionBoth},
		{"GET", "", HMACVersionBoth},
		{"POST", "1", HMACVersion1},
		{"POST", "'1'", HMACVersion1},
		{"GET", "2", HMACVersion2},
		{"GET", "both", HMACVersionBoth},
		{"HEAD", "2", HMACVersion2},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.version, func(t *testing.T) {
			t.Parallel()
			y := "n8n: {base_url: 'http://x'}\nworkflows:\n  a:\n    path: p\n    method: " + tt.method + "\n    auth:\n      type: hmac\n      secret: 0123456789abcdef\n"
			if tt.version != "" {
				y += "      hmac_version: " + tt.version + "\n"
			}
			c, err := Parse([]byte(y), "conf.yaml", env(nil))
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Workflows["a"].Auth.HMACVersion; got != tt.want {
				t.Errorf("hmac_version = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestSecretValuesCoverEverySecret: every secret.Secret field of the
// configuration (in maps and slices too) is among SecretValues, which
// feeds the log-redaction backstop: the MCP token and the credentials'
// secrets included. A new secret field is covered or this test fails.
func TestSecretValuesCoverEverySecret(t *testing.T) {
	t.Parallel()
	var c Config
	var want []string
	var fill func(v reflect.Value, path string)
	fill = func(v reflect.Value, path string) {
		switch {
		case v.Type() == reflect.TypeFor[secret.Secret]():
			s := fmt.Sprintf("secret-%d-%s", len(want), path)
			want = append(want, s)
			v.Set(reflect.ValueOf(secret.New(s)))
		case v.Kind() == reflect.Struct:
			for i := range v.NumField() {
				if v.Type().Field(i).IsExported() {
					fill(v.Field(i), path+"."+v.Type().Field(i).Name)
				}
			}
		case v.Kind() == reflect.Map && v.Type().Key().Kind() == reflect.String:
			e := reflect.New(v.Type().Elem()).Elem()
			fill(e, path+"[x]")
			if v.IsNil() {
				v.Set(reflect.MakeMap(v.Type()))
			}
			v.SetMapIndex(reflect.ValueOf("x").Convert(v.Type().Key()), e)
		case v.Kind() == reflect.Slice:
			e := reflect.New(v.Type().Elem()).Elem()
			fill(e, path+"[0]")
			v.Set(reflect.Append(v, e))
		case v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Struct:
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			fill(v.Elem(), path)
		}
	}
	fill(reflect.ValueOf(&c).Elem(), "")
	if len(want) < 8 {
		t.Fatalf("found only %d secret fields: %v", len(want), want)
	}
	got := map[string]bool{}
	for _, s := range c.SecretValues() {
		got[s] = true
	}
	for _, s := range want {
		if !got[s] {
			t.Errorf("SecretValues misses %s", s)
		}
	}
}

func TestSeveralErrorsReported(t *testing.T) {
	t.Parallel()
	_, err := Parse([]byte("n8n:\n  base_url: ftp://x\ninvokers:\n  http:\n    max_retries: -1\n    backoff_factor: -2\n"), "c.yaml")
	j, ok := err.(interface{ Unwrap() []error })
	if !ok || len(j.Unwrap()) != 3 {
		t.Fatalf("err = %v, want 3 errors", err)
	}
	if es := j.Unwrap(); !strings.HasPrefix(es[0].Error(), "c.yaml:2:") || !strings.HasPrefix(es[2].Error(), "c.yaml:6:") {
		t.Errorf("not sorted by line: %v", err)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	t.Parallel()
	s := secret.New("hunter2")
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "key", s)
	js, _ := json.Marshal(struct{ K secret.Secret }{s})
	outs := []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q %x", s, s, s, s, s, s),
		fmt.Sprintf("%+v", N8N{APIKey: s}), fmt.Sprintf("%#v", N8N{APIKey: s}),
		logged.String(), string(js),
	}
	for _, o := range outs {
		if strings.Contains(o, "hunter2") {
			t.Errorf("secret leaked: %s", o)
		}
		if !strings.Contains(o, "REDACTED") {
			t.Errorf("no REDACTED in %q", o)
		}
	}
	if s.Reveal() != "hunter2" {
		t.Error("Reveal lost the value")
	}
}

// The held wait's default covers the owner's longest decision: an
// attempt's timeout, a reconcile's wait, a margin; at least 2m.
func TestHeldWaitDefault(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		yaml string
		want time.Duration
	}{
		{"n8n: {base_url: 'http://x'}\n", 3 * time.Minute},
		{"n8n: {base_url: 'http://x', timeout: 60}\n", 3*time.Minute + 30*time.Second},
		{"n8n: {base_url: 'http://x', timeout: 5}\ninvokers: {http: {reconcile_timeout: 30s}}\n", 2 * time.Minute},
		{"n8n: {base_url: 'http://x'}\nstore: {held_wait: 10s}\n", 10 * time.Second},
	} {
		c, err := Parse([]byte(tc.yaml), "c.yaml", env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Store.HeldWait.D(); got != tc.want {
			t.Errorf("%q: held_wait %s, want %s", tc.yaml, got, tc.want)
		}
	}
}

// TestDefaultIsComplete checks that Default holds every default Validate
// fills in, so that Default, go doc and the generated reference cannot
// disagree: a file that leaves everything out gets Default, but for the
// values computed from others.
func TestDefaultIsComplete(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte("n8n: {base_url: 'http://127.0.0.1:5678'}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.N8N.BaseURL = cfg.N8N.BaseURL
	want.Store.HeldWait = Duration(max(DefaultStoreHeldWait, DefaultTimeout+DefaultReconcileTimeout+30*time.Second))
	want.Queue.JobTimeout = Duration(DefaultQueueJobTimeout)
	cfg.file, cfg.pos = "", nil
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Parse of an empty file = %+v\nwant Default() = %+v\n(a default is filled by applyDefaults but missing from Default)", cfg, want)
	}
}
