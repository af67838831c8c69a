package invoker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/internal/n8ntest"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// TestRedactionEverywhere runs calls that succeed and fail against the
// real n8n with every kind of secret configured, captures all logs (debug
// level), errors, spans, metrics, dead letters, results and the printed
// configuration, and checks that no secret appears in any of them.
func TestRedactionEverywhere(t *testing.T) {
	t.Parallel()
	n8n := n8ntest.Require(t)
	var notified bytes.Buffer
	var nmu sync.Mutex
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		nmu.Lock()
		notified.Write(b)
		nmu.Unlock()
	}))
	defer recv.Close()
	notifyToken := "T0KEN-notify-0123456789"
	cfg := n8n.Config(t)
	cfg.Hooks.PreExecution = []config.HookRef{{Name: "logging_hook"}}
	cfg.Hooks.PostExecution = []config.HookRef{{Name: "logging_hook"}}
	cfg.Hooks.Error = []config.HookRef{{Name: "logging_hook"}, {Name: "notification_hook"}}
	cfg.Hooks.Notification = config.Notification{URL: secret.New(recv.URL + "/hooks/" + notifyToken), Format: "json"}
	cfg.Tracing.Enabled = true
	cfg.DLQ = config.DLQ{Enabled: true, On: []string{"transient", "unknown", "permanent"}}
	cfg.Store.Path = filepath.Join(t.TempDir(), "dlq.db")
	cfg.Invokers.HTTP.MaxRetries = 1
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{
		"api key": n8n.APIKey, "header value": n8n.HeaderValue, "basic password": n8n.BasicPassword,
		"hmac secret": n8n.HMACSecret, "jwt secret": n8n.JWTSecret, "notification token": notifyToken,
	}

	var logs bytes.Buffer
	var lmu sync.Mutex
	fx := newTelemetryFixture(t)
	m, err := invoker.New(cfg, fx.options(), invoker.WithLogger(slog.New(slog.NewJSONHandler(lockedWriter{&logs, &lmu}, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var seen strings.Builder
	record := func(res *invocation.Result, err error) {
		if res != nil {
			b, _ := json.Marshal(res)
			seen.Write(b)
		}
		if err != nil {
			fmt.Fprintf(&seen, "%v\n%+v\n%#v\n", err, err, err)
		}
	}
	for _, w := range []string{n8ntest.HeaderAuth, n8ntest.BasicAuth, n8ntest.Signed, n8ntest.JWTAuth, n8ntest.Fail, n8ntest.Missing} {
		record(m.ExecuteWorkflow(ctx, w, map[string]any{"w": w}))
	}
	record(m.ExecuteWorkflow(ctx, n8n.WorkflowID(t, "n8n-invoker fail"), nil, invoker.Wait()))
	// Wrong secrets everywhere.
	bad := n8n.Config(t)
	for name, w := range bad.Workflows {
		w.Auth.Value, w.Auth.Password, w.Auth.Secret = secret.New("wrong-"+n8n.HeaderValue), secret.New("wrong-"+n8n.BasicPassword), secret.New("wrong-"+n8n.HMACSecret)
		bad.Workflows[name] = w
	}
	bad.N8N.APIKey = secret.New("wrong-" + n8n.APIKey)
	mb, err := invoker.New(bad, fx.options(), invoker.WithLogger(slog.New(slog.NewJSONHandler(lockedWriter{&logs, &lmu}, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{n8ntest.HeaderAuth, n8ntest.BasicAuth, n8ntest.Signed, n8ntest.JWTAuth, "some-workflow-id"} {
		record(mb.ExecuteWorkflow(ctx, w, nil))
	}
	_, _, err = mb.API().Executions.Get(ctx, "1", false)
	record(nil, err)
	_ = mb.Close(context.Background())
	entries, _ := m.DLQ().List(ctx, dlq.Filter{})
	b, _ := json.Marshal(entries)
	seen.Write(b)
	_ = m.Close(context.Background())
	fmt.Fprintf(&seen, "%v %+v %#v", cfg, *cfg, *cfg)
	b, _ = json.Marshal(cfg)
	seen.Write(b)

	for _, s := range fx.spans.GetSpans() {
		fmt.Fprintf(&seen, "%s %v %v %v", s.Name, s.Attributes, s.Events, s.Status)
	}
	var rm metricdata.ResourceMetrics
	_ = fx.reader.Collect(context.Background(), &rm)
	fmt.Fprintf(&seen, "%+v", rm)
	lmu.Lock()
	seen.Write(logs.Bytes())
	lmu.Unlock()
	nmu.Lock()
	seen.Write(notified.Bytes())
	nmu.Unlock()

	all := seen.String()
	for what, s := range secrets {
		if s == "" {
			t.Fatalf("no %s to look for", what)
		}
		if strings.Contains(all, s) {
			i := strings.Index(all, s)
			t.Errorf("the %s appears in the captured output: ...%s...", what, all[max(0, i-120):min(len(all), i+40)])
		}
	}
	if !strings.Contains(all, "REDACTED") || len(entries) == 0 || notified.Len() == 0 || len(fx.spans.GetSpans()) == 0 {
		t.Errorf("the capture missed something: %d dead letters, %d bytes notified, %d spans", len(entries), notified.Len(), len(fx.spans.GetSpans()))
	}
	t.Logf("redaction: %d bytes of logs, errors, spans, metrics, dead letters, results and config checked for %d secrets", len(all), len(secrets))
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
