package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/telemetry"
)

// Sampler maps the configuration's tracing section to a sampler:
// ParentBased(TraceIDRatioBased(sample_rate)).
func Sampler(t config.Tracing) sdktrace.Sampler {
	return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(t.SampleRate))
}

// otelSetup wires the OpenTelemetry SDK for the CLI (the library never
// does): traces go to OTLP/HTTP when tracing is enabled and an OTLP
// endpoint is set by the standard OTEL_EXPORTER_OTLP_* variables; metrics
// are served for Prometheus on metricsAddr when given.
type otelSetup struct {
	opts     []invoker.Option
	shutdown []func(context.Context) error
	// metrics serves the Prometheus registry (with --metrics-addr, or for
	// serve's /metrics).
	metrics http.Handler
}

func newOtelSetup(ctx context.Context, cfg *config.Config, metricsAddr string, wantMetrics bool, stderr io.Writer) (*otelSetup, error) {
	s := &otelSetup{}
	res := resource.NewSchemaless(semconv.ServiceName("n8n-invoker"), semconv.ServiceVersion(version))
	var topts []telemetry.Option
	topts = append(topts, telemetry.WithPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})))
	endpoint := os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	if cfg.Tracing.Enabled && cfg.Tracing.Backend == "opentelemetry" && endpoint {
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTLP trace exporter: %w", err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSampler(Sampler(cfg.Tracing)), sdktrace.WithResource(res))
		topts = append(topts, telemetry.WithTracerProvider(tp))
		s.shutdown = append(s.shutdown, tp.Shutdown)
	}
	if metricsAddr != "" || wantMetrics {
		reg := prometheus.NewRegistry()
		exp, err := otelprom.New(otelprom.WithRegisterer(reg))
		if err != nil {
			return nil, fmt.Errorf("prometheus exporter: %w", err)
		}
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
		topts = append(topts, telemetry.WithMeterProvider(mp))
		s.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
		s.shutdown = append(s.shutdown, mp.Shutdown)
	}
	if metricsAddr != "" {
		ln, err := net.Listen("tcp", metricsAddr)
		if err != nil {
			return nil, usageErr("--metrics-addr: %v", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", s.metrics)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		fmt.Fprintf(stderr, "n8n-invoker: serving metrics on http://%s/metrics\n", ln.Addr())
		s.shutdown = append(s.shutdown, srv.Shutdown)
	}
	s.opts = append(s.opts, invoker.WithTelemetry(topts...))
	return s, nil
}

func (s *otelSetup) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for i := len(s.shutdown) - 1; i >= 0; i-- {
		errs = append(errs, s.shutdown[i](ctx))
	}
	_ = errors.Join(errs...)
}
