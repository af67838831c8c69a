package httpinvoker

import (
	"errors"
	"net"
	"net/http"

	"github.com/n8n-invoker/n8n-invoker/internal/core"
)

// Outcome is what a Classifier sees of one attempt: either an answer
// (StatusCode set) or a transport error (Err set).
type Outcome struct {
	// StatusCode is the HTTP status, 0 when no answer came.
	StatusCode int
	// Header is the answer's header.
	Header http.Header
	// Message is n8n's "message" field or the start of a text body.
	Message string
	// Err is the transport error when no answer came.
	Err error
	// TimedOut is true when the attempt's own timeout expired.
	TimedOut bool
}

// Classifier classifies an attempt's outcome. ok is false when it has no
// opinion, so that the next classifier in the chain decides.
type Classifier interface {
	Classify(o *Outcome) (c core.Class, ok bool)
}

// ClassifierFunc adapts a function to Classifier.
type ClassifierFunc func(o *Outcome) (core.Class, bool)

// Classify calls f.
func (f ClassifierFunc) Classify(o *Outcome) (core.Class, bool) { return f(o) }

// n8nMessageWorkflowError is the body message of a workflow that ran and
// failed (n8n answers 500 {"message":"Error in workflow"}).
const n8nMessageWorkflowError = "Error in workflow"

// N8NClassifier holds n8n-invoker's rules for n8n's answers. It always
// decides.
var N8NClassifier ClassifierFunc = func(o *Outcome) (core.Class, bool) {
	if o.StatusCode == 0 {
		return classifyTransport(o), true
	}
	switch o.StatusCode {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout, 524:
		return core.Transient, true
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
		http.StatusMethodNotAllowed, http.StatusConflict, http.StatusGone,
		http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return core.Permanent, true
	case http.StatusInternalServerError:
		if o.Message == n8nMessageWorkflowError {
			return core.Permanent, true
		}
	}
	if o.StatusCode >= 300 && o.StatusCode < 400 {
		return core.Permanent, true
	}
	return core.Unknown, true
}

func classifyTransport(o *Outcome) core.Class {
	if o.TimedOut {
		// The request may have reached n8n, which may still run it.
		return core.Unknown
	}
	var dnsErr *net.DNSError
	if errors.As(o.Err, &dnsErr) && dnsErr.IsNotFound {
		return core.Permanent
	}
	// Refused, reset, EOF: transient. When the request may already have
	// gone out, the idempotency key makes a re-send recognisable.
	return core.Transient
}

func classify(chain []Classifier, o *Outcome) core.Class {
	for _, c := range chain {
		if cl, ok := c.Classify(o); ok {
			return cl
		}
	}
	c, _ := N8NClassifier(o)
	return c
}
