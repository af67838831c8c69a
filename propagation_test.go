package invoker_test

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/internal/n8ntest"
	"github.com/n8n-invoker/n8n-invoker/telemetry"
)

// otlpSpan is a span n8n exported.
type otlpSpan struct {
	name, traceID, spanID, parentID string
	attrs                           map[string]string
}

// otlpReceiver is a minimal OTLP/HTTP (protobuf) trace receiver.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []otlpSpan
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		body = gz
	}
	b, _ := io.ReadAll(body)
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	o.mu.Lock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				sp := otlpSpan{name: s.Name, traceID: hex.EncodeToString(s.TraceId), spanID: hex.EncodeToString(s.SpanId),
					parentID: hex.EncodeToString(s.ParentSpanId), attrs: map[string]string{}}
				for _, a := range s.Attributes {
					sp.attrs[a.Key] = a.Value.GetStringValue()
				}
				o.spans = append(o.spans, sp)
			}
		}
	}
	o.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	b, _ = proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	_, _ = w.Write(b)
}

func (o *otlpReceiver) find(traceID string) []otlpSpan {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []otlpSpan
	for _, s := range o.spans {
		if s.traceID == traceID {
			out = append(out, s)
		}
	}
	return out
}

// TestTracePropagatesIntoN8N starts a private n8n with its OpenTelemetry
// export on, pointed at a receiver in this test, and checks that n8n's
// workflow span continues the invoker's trace, as a child of the
// invoker's attempt span.
func TestTracePropagatesIntoN8N(t *testing.T) {
	t.Parallel()
	recv := &otlpReceiver{}
	srv := httptest.NewServer(recv)
	defer srv.Close()
	priv := n8ntest.StartPrivate(t, "N8N_OTEL_ENABLED=true", "N8N_OTEL_EXPORTER_OTLP_ENDPOINT="+srv.URL,
		"N8N_OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "N8N_OTEL_EXPORTER_SERVICE_NAME=n8n-under-test")
	cfg := priv.Config(t)
	cfg.Tracing.Enabled = true
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background())
	m, err := invoker.New(cfg, invoker.WithTelemetry(telemetry.WithTracerProvider(tp), telemetry.WithPropagator(propagation.TraceContext{})))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := m.ExecuteWorkflow(ctx, n8ntest.Echo, map[string]any{"traced": true})
	if err != nil {
		t.Fatal(err)
	}
	var attempt tracetest.SpanStub
	for _, s := range spans.GetSpans() {
		if s.Name == "POST webhook" {
			attempt = s
		}
	}
	traceID, spanID := attempt.SpanContext.TraceID().String(), attempt.SpanContext.SpanID().String()
	var got []otlpSpan
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if got = recv.find(traceID); len(got) > 0 {
			break
		}
	}
	if len(got) == 0 {
		recv.mu.Lock()
		n := len(recv.spans)
		recv.mu.Unlock()
		t.Fatalf("n8n exported %d spans, none in trace %s", n, traceID)
	}
	var root *otlpSpan
	for i, s := range got {
		if s.parentID == spanID {
			root = &got[i]
		}
	}
	if root == nil {
		t.Fatalf("no n8n span has the invoker's attempt span %s as parent: %+v", spanID, got)
	}
	if root.attrs["n8n.execution.id"] != res.ExecutionID {
		t.Errorf("n8n span %q has execution id %q, the invoker saw %q", root.name, root.attrs["n8n.execution.id"], res.ExecutionID)
	}
	t.Logf("propagation: n8n exported %d spans in the invoker's trace %s; %q (execution %s) is a child of the invoker's attempt span %s",
		len(got), traceID, root.name, root.attrs["n8n.execution.id"], spanID)
}
