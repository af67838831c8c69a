package invoker_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/telemetry"
)

type telemetryFixture struct {
	spans  *tracetest.InMemoryExporter
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
	mp     *sdkmetric.MeterProvider
}

func newTelemetryFixture(t *testing.T) *telemetryFixture {
	f := &telemetryFixture{spans: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader()}
	f.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(f.spans))
	f.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(f.reader))
	t.Cleanup(func() { _ = f.tp.Shutdown(context.Background()); _ = f.mp.Shutdown(context.Background()) })
	return f
}

func (f *telemetryFixture) options() invoker.Option {
	return invoker.WithTelemetry(telemetry.WithTracerProvider(f.tp), telemetry.WithMeterProvider(f.mp),
		telemetry.WithPropagator(propagation.TraceContext{}))
}

// metrics returns every data point's value by metric name and attributes.
func (f *telemetryFixture) metrics(t *testing.T) map[string]float64 {
	var rm metricdata.ResourceMetrics
	if err := f.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	key := func(name string, set attribute.Set) string {
		return name + set.Encoded(attribute.DefaultEncoder())
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = float64(p.Value)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = float64(p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = float64(p.Count)
				}
			}
		}
	}
	return out
}

func TestTelemetrySpansAndMetrics(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	var mu sync.Mutex
	var traceparents []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		traceparents = append(traceparents, r.Header.Get("traceparent"))
		mu.Unlock()
		if calls.Add(1) == 1 {
			w.WriteHeader(503)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"executionId":"77"}`)
	}))
	defer srv.Close()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`n8n: {base_url: %q, api_key: "sekret-api-key"}
invokers: {http: {max_retries: 2, backoff_factor: 0.001}}
tracing: {enabled: true}
workflows: {onboarding: {path: onboarding}, fail: {path: fail}}
`, srv.URL)), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fx := newTelemetryFixture(t)
	var records []*telemetry.Record
	m, err := invoker.New(cfg, fx.options(), invoker.WithTracer(tracerFunc(func(_ context.Context, r *telemetry.Record) { records = append(records, r) })))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	res, err := m.ExecuteWorkflow(t.Context(), "onboarding", map[string]any{"email": "a@b.c"})
	if err != nil || res.Attempts != 2 {
		t.Fatalf("%+v %v", res, err)
	}

	spans := fx.spans.GetSpans()
	var exec tracetest.SpanStub
	var attempts []tracetest.SpanStub
	for _, s := range spans {
		switch s.Name {
		case "n8n.execute":
			exec = s
		case "POST webhook":
			attempts = append(attempts, s)
		}
	}
	if exec.Name == "" || len(attempts) != 2 {
		t.Fatalf("spans: %d (%v)", len(spans), spans)
	}
	attrs := map[attribute.Key]attribute.Value{}
	for _, a := range exec.Attributes {
		attrs[a.Key] = a.Value
	}
	if attrs[telemetry.AttrWorkflow].AsString() != "onboarding" || attrs[telemetry.AttrExecutionID].AsString() != "77" || attrs[telemetry.AttrOutcome].AsString() != "success" {
		t.Errorf("execution span attributes %v", exec.Attributes)
	}
	for i, a := range attempts {
		if a.Parent.SpanID() != exec.SpanContext.SpanID() || a.SpanContext.TraceID() != exec.SpanContext.TraceID() {
			t.Errorf("attempt %d is not a child of the execution span", i)
		}
		resend := -1
		for _, kv := range a.Attributes {
			if kv.Key == telemetry.AttrResendCount {
				resend = int(kv.Value.AsInt64())
			}
		}
		if (i == 0 && resend != -1) || (i == 1 && resend != 1) {
			t.Errorf("attempt %d resend count %d", i, resend)
		}
		want := fmt.Sprintf("00-%s-%s-01", a.SpanContext.TraceID(), a.SpanContext.SpanID())
		if traceparents[i] != want {
			t.Errorf("attempt %d sent traceparent %q, want %q", i, traceparents[i], want)
		}
	}
	for _, s := range spans {
		for _, kv := range s.Attributes {
			if kv.Value.String() == "sekret-api-key" || kv.Value.String() == srv.URL+"/webhook/onboarding" {
				t.Errorf("span %s carries %s=%s", s.Name, kv.Key, kv.Value.String())
			}
		}
	}
	mt := fx.metrics(t)
	for k, want := range map[string]float64{
		"n8n_invoker.invocationsn8n.outcome=success,n8n.workflow=onboarding": 1,
		"n8n_invoker.attemptsn8n.workflow=onboarding":                        2,
		"n8n_invoker.retriesn8n.workflow=onboarding":                         1,
		"n8n_invoker.durationn8n.outcome=success,n8n.workflow=onboarding":    1,
		"n8n_invoker.breaker.staten8n.endpoint=onboarding":                   0,
	} {
		if got, ok := mt[k]; !ok || got != want {
			t.Errorf("metric %s = %v (present %v), want %v; all: %v", k, got, ok, want, mt)
		}
	}
	if len(records) != 1 || records[0].ExecutionID != "77" || records[0].Attempts != 2 || records[0].Outcome != "success" {
		t.Errorf("tracer records %+v", records)
	}
}

type tracerFunc func(context.Context, *telemetry.Record)

func (f tracerFunc) TrackExecution(ctx context.Context, r *telemetry.Record) { f(ctx, r) }

func TestTracingDisabledByConfig(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("traceparent") != "" {
			t.Error("traceparent sent with tracing disabled")
		}
	}))
	defer srv.Close()
	cfg, _ := config.Parse([]byte(fmt.Sprintf("n8n: {base_url: %q}\ntracing: {enabled: false}\nworkflows: {w: {path: w}}\n", srv.URL)), "t.yaml")
	fx := newTelemetryFixture(t)
	m, err := invoker.New(cfg, fx.options())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	_, _ = m.ExecuteWorkflow(t.Context(), "w", nil)
	if n := len(fx.spans.GetSpans()); n != 0 {
		t.Errorf("%d spans with tracing disabled", n)
	}
	if mt := fx.metrics(t); mt["n8n_invoker.invocationsn8n.outcome=success,n8n.workflow=w"] != 1 {
		t.Errorf("metrics stay on: %v", mt)
	}
}
