package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// ScopeName is the instrumentation scope of spans and metrics.
const ScopeName = "github.com/n8n-invoker/n8n-invoker"

// Attribute keys.
const (
	AttrWorkflow    = attribute.Key("n8n.workflow")
	AttrWorkflowID  = attribute.Key("n8n.workflow.id")
	AttrExecutionID = attribute.Key("n8n.execution.id")
	AttrRequestID   = attribute.Key("n8n.request.id")
	AttrOutcome     = attribute.Key("n8n.outcome")
	AttrClass       = attribute.Key("error.type")
	AttrEndpoint    = attribute.Key("n8n.endpoint")
	AttrResendCount = attribute.Key("http.request.resend_count")
)

// Record is what a custom Tracer gets of one execution.
type Record struct {
	Workflow    string
	WorkflowID  string
	RequestID   string
	ExecutionID string
	// Outcome is success, failure or canceled (OutcomeLabel of Code).
	Outcome string
	// Code is the error's code, invocation.CodeOK on success.
	Code invocation.Code
	// Class is the error's class, empty on success.
	Class    string
	Attempts int
	Started  time.Time
	Duration time.Duration
	Err      error
}

// Tracer receives a record of every execution, like the design's
// DatabaseTracer. It is called synchronously at the end of each
// execution: keep it quick or hand off.
type Tracer interface {
	TrackExecution(ctx context.Context, r *Record)
}

// Telemetry holds the tracer, the instruments and the propagator.
type Telemetry struct {
	tracer  trace.Tracer
	tracing bool
	prop    propagation.TextMapPropagator
	meter   metric.Meter
	sets    sync.Map // setKey -> *optionSet: attribute sets, built once

	invocations metric.Int64Counter
	attempts    metric.Int64Counter
	retries     metric.Int64Counter
	duration    metric.Float64Histogram
	inFlight    metric.Int64UpDownCounter
	hookFails   metric.Int64Counter
}

type options struct {
	tp      trace.TracerProvider
	mp      metric.MeterProvider
	prop    propagation.TextMapPropagator
	tracing bool
}

// Option configures Telemetry.
type Option func(*options)

// WithTracerProvider sets the tracer provider (default: the global one).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(o *options) { o.tp = tp } }

// WithMeterProvider sets the meter provider (default: the global one).
func WithMeterProvider(mp metric.MeterProvider) Option { return func(o *options) { o.mp = mp } }

// WithPropagator sets the propagator (default: the global one).
func WithPropagator(p propagation.TextMapPropagator) Option { return func(o *options) { o.prop = p } }

// WithTracingDisabled makes no spans (the configuration's
// tracing.enabled: false); metrics stay.
func WithTracingDisabled() Option { return func(o *options) { o.tracing = false } }

// New returns Telemetry for the given providers.
func New(opts ...Option) (*Telemetry, error) {
	o := &options{tracing: true}
	for _, f := range opts {
		f(o)
	}
	if o.tp == nil {
		o.tp = otel.GetTracerProvider()
	}
	if !o.tracing {
		o.tp = noop.NewTracerProvider()
	}
	if o.mp == nil {
		o.mp = otel.GetMeterProvider()
	}
	if o.prop == nil {
		o.prop = otel.GetTextMapPropagator()
	}
	t := &Telemetry{tracer: o.tp.Tracer(ScopeName), tracing: o.tracing, prop: o.prop, meter: o.mp.Meter(ScopeName)}
	var err error
	if t.invocations, err = t.meter.Int64Counter("n8n_invoker.invocations",
		metric.WithDescription("Workflow invocations by outcome.")); err != nil {
		return nil, err
	}
	if t.attempts, err = t.meter.Int64Counter("n8n_invoker.attempts", metric.WithDescription("HTTP attempts.")); err != nil {
		return nil, err
	}
	if t.retries, err = t.meter.Int64Counter("n8n_invoker.retries", metric.WithDescription("Retries (attempts after the first).")); err != nil {
		return nil, err
	}
	if t.duration, err = t.meter.Float64Histogram("n8n_invoker.duration", metric.WithUnit("s"),
		metric.WithDescription("Invocation duration, retries included."),
		metric.WithExplicitBucketBoundaries(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)); err != nil {
		return nil, err
	}
	if t.inFlight, err = t.meter.Int64UpDownCounter("n8n_invoker.batch.in_flight", metric.WithDescription("Batch items in flight.")); err != nil {
		return nil, err
	}
	if t.hookFails, err = t.meter.Int64Counter("n8n_invoker.hook.failures", metric.WithDescription("Hooks that panicked or timed out.")); err != nil {
		return nil, err
	}
	return t, nil
}

// HookFailure counts a hook that panicked or timed out.
func (t *Telemetry) HookFailure(ctx context.Context, stage, reason string) {
	t.hookFails.Add(ctx, 1, metric.WithAttributes(attribute.String("stage", stage), attribute.String("reason", reason)))
}

// Meter returns the meter, for hooks that add their own instruments.
func (t *Telemetry) Meter() metric.Meter { return t.meter }

// Tracing reports whether spans are made.
func (t *Telemetry) Tracing() bool { return t.tracing }

// noopSpan is boxed once: returning it allocates nothing.
var noopSpan trace.Span = noop.Span{}

// StartExecution starts the span of one execution.
func (t *Telemetry) StartExecution(ctx context.Context, workflow, requestID string) (context.Context, trace.Span) {
	if !t.tracing {
		return ctx, noopSpan
	}
	return t.tracer.Start(ctx, "n8n.execute", trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(AttrWorkflow.String(workflow), AttrRequestID.String(requestID)))
}

// attrSet returns the cached attribute set of workflow, outcome and
// class (all low-cardinality), with its option slices built once, so
// that recording allocates nothing.
type setKey struct{ workflow, outcome, class string }

type optionSet struct {
	add    []metric.AddOption
	record []metric.RecordOption
}

func (t *Telemetry) attrSet(workflow, outcome, class string) *optionSet {
	key := setKey{workflow, outcome, class}
	if v, ok := t.sets.Load(key); ok {
		return v.(*optionSet)
	}
	attrs := []attribute.KeyValue{AttrWorkflow.String(workflow)}
	if outcome != "" {
		attrs = append(attrs, AttrOutcome.String(outcome))
	}
	if class != "" {
		attrs = append(attrs, AttrClass.String(class))
	}
	o := metric.WithAttributeSet(attribute.NewSet(attrs...))
	v, _ := t.sets.LoadOrStore(key, &optionSet{add: []metric.AddOption{o}, record: []metric.RecordOption{o}})
	return v.(*optionSet)
}

// EndExecution ends the span and records the metrics of one execution.
func (t *Telemetry) EndExecution(ctx context.Context, span trace.Span, r *Record) {
	set := t.attrSet(r.Workflow, r.Outcome, ErrorType(r.Code))
	t.invocations.Add(ctx, 1, set.add...)
	t.duration.Record(ctx, r.Duration.Seconds(), set.record...)
	if r.Attempts > 0 && !t.tracing {
		// With tracing on, the attempt span stage counts attempts.
		t.attempts.Add(ctx, int64(r.Attempts), t.attrSet(r.Workflow, "", "").add...)
	}
	if r.Attempts > 1 {
		t.retries.Add(ctx, int64(r.Attempts-1), t.attrSet(r.Workflow, "", "").add...)
	}
	if !t.tracing {
		return
	}
	if r.WorkflowID != "" {
		span.SetAttributes(AttrWorkflowID.String(r.WorkflowID))
	}
	if r.ExecutionID != "" {
		span.SetAttributes(AttrExecutionID.String(r.ExecutionID))
	}
	span.SetAttributes(AttrOutcome.String(r.Outcome), attribute.Int("n8n.attempts", r.Attempts))
	if r.Err != nil && r.Outcome == "failure" {
		span.SetAttributes(AttrClass.String(r.Class))
		span.RecordError(r.Err)
		span.SetStatus(codes.Error, r.Err.Error())
	}
	span.End()
}

// BatchInFlight adds delta to the batch in-flight gauge.
func (t *Telemetry) BatchInFlight(ctx context.Context, delta int64) { t.inFlight.Add(ctx, delta) }

// ObserveBreakers reports the breakers' states on every collection.
// states calls yield with each breaker's endpoint and state (0 closed,
// 1 half-open, 2 open).
func (t *Telemetry) ObserveBreakers(states func(yield func(endpoint string, state int))) error {
	_, err := t.meter.Int64ObservableGauge("n8n_invoker.breaker.state",
		metric.WithDescription("Circuit breaker state: 0 closed, 1 half-open, 2 open."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			states(func(endpoint string, state int) {
				o.Observe(int64(state), metric.WithAttributes(AttrEndpoint.String(endpoint)))
			})
			return nil
		}))
	return err
}

// ObserveDLQ reports the dead-letter queue's depth on every collection.
func (t *Telemetry) ObserveDLQ(depth func(context.Context) (int, error)) error {
	_, err := t.meter.Int64ObservableGauge("n8n_invoker.dlq.depth",
		metric.WithDescription("Entries in the dead-letter queue."),
		metric.WithInt64Callback(func(ctx context.Context, o metric.Int64Observer) error {
			n, err := depth(ctx)
			if err != nil {
				return err
			}
			o.Observe(int64(n))
			return nil
		}))
	return err
}

// AttemptSpan is the attempt-span stage of the pipeline: a client span
// per attempt (with http.request.resend_count on retries), the W3C trace
// context added to the attempt's headers, and the attempts counter.
func (t *Telemetry) AttemptSpan() AttemptSpan { return AttemptSpan{t: t} }

// AttemptSpan is the stage AttemptSpan returns.
type AttemptSpan struct{ t *Telemetry }

// Attempt runs next inside the attempt's span.
func (s AttemptSpan) Attempt(ctx context.Context, a *invocation.Attempt, next invocation.AttemptHandler) (*invocation.Result, error) {
	t := s.t
	method := a.Target.Method
	if method == "" {
		method = http.MethodPost
	}
	ctx, span := t.tracer.Start(ctx, method+" webhook", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("http.request.method", method),
			AttrWorkflow.String(a.Request.Workflow),
		))
	if a.Number > 1 {
		span.SetAttributes(AttrResendCount.Int(a.Number - 1))
	}
	t.attempts.Add(ctx, 1, t.attrSet(a.Request.Workflow, "", "").add...)
	if a.Header == nil {
		a.Header = make(http.Header, 2)
	}
	t.prop.Inject(ctx, propagation.HeaderCarrier(a.Header))
	res, err := next(ctx, a)
	var he *invocation.HTTPError
	switch {
	case errors.As(err, &he):
		span.SetAttributes(attribute.Int("http.response.status_code", he.StatusCode))
		span.SetStatus(codes.Error, fmt.Sprintf("HTTP %d", he.StatusCode))
	case err != nil:
		span.RecordError(err)
		span.SetStatus(codes.Error, "transport error")
	default:
		span.SetAttributes(attribute.Int("http.response.status_code", res.StatusCode))
	}
	span.End()
	return res, err
}

// OutcomeLabel is the n8n.outcome label of an execution that ended with
// code c: success, canceled (not a failure) or failure.
func OutcomeLabel(c invocation.Code) string {
	switch c {
	case invocation.CodeOK:
		return "success"
	case invocation.CodeCanceled, invocation.CodeCanceledInFlight:
		return "canceled"
	}
	return "failure"
}

// ErrorType is the error.type label of an execution that ended with code
// c: the code's name for a failure, empty for a success or a
// cancellation.
func ErrorType(c invocation.Code) string {
	if OutcomeLabel(c) != "failure" {
		return ""
	}
	return c.String()
}
