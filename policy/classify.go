package policy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Outcome is what a Classifier sees of one attempt: an answer
// (StatusCode set) or a transport error (Err set).
type Outcome struct {
	// StatusCode is the HTTP status, 0 when no answer came.
	StatusCode int
	// Header is the answer's header (an http.Header).
	Header map[string][]string
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
	Classify(o *Outcome) (c invocation.Class, ok bool)
}

// ClassifierFunc adapts a function to Classifier.
type ClassifierFunc func(o *Outcome) (invocation.Class, bool)

// Classify calls f.
func (f ClassifierFunc) Classify(o *Outcome) (invocation.Class, bool) { return f(o) }

// Chain asks its classifiers in order; the first definite answer wins.
// When none answers, the N8N rules decide.
type Chain []Classifier

// Classify returns the first definite answer, else N8N's.
func (ch Chain) Classify(o *Outcome) invocation.Class {
	for _, c := range ch {
		if cl, ok := c.Classify(o); ok {
			return cl
		}
	}
	c, _ := N8N(o)
	return c
}

// MessageWorkflowError is the body message of an n8n workflow that ran and
// failed: 500 {"message":"Error in workflow"}.
const MessageWorkflowError = "Error in workflow"

// N8N holds n8n-invoker's rules for n8n's answers. It always decides.
//
//   - Transient: connection failures, 408, 429, 502, 503, 504, 524.
//   - Permanent: 400, 401, 403, 404, 405, 409, 410, 413, 422, 3xx, a DNS
//     name that does not exist, and 500 "Error in workflow" (it ran).
//     A 404 HTML page is transient: a starting n8n serves its editor's
//     404 until the webhooks are registered.
//   - Unknown: everything else, and attempt timeouts (n8n may still be
//     running the workflow).
var N8N ClassifierFunc = func(o *Outcome) (invocation.Class, bool) {
	if o.StatusCode == 0 {
		return classifyTransport(o), true
	}
	switch o.StatusCode {
	case 408, 429, 502, 503, 504, 524:
		return invocation.Transient, true
	case 404:
		if isHTML(o) {
			// n8n's editor answers before the webhooks are registered
			// while n8n starts: it will be there in a moment.
			return invocation.Transient, true
		}
		return invocation.Permanent, true
	case 400, 401, 403, 405, 409, 410, 413, 422:
		return invocation.Permanent, true
	case 500:
		if o.Message == MessageWorkflowError {
			return invocation.Permanent, true
		}
	}
	if o.StatusCode >= 300 && o.StatusCode < 400 {
		return invocation.Permanent, true
	}
	return invocation.Unknown, true
}

func classifyTransport(o *Outcome) invocation.Class {
	if o.TimedOut {
		return invocation.Unknown
	}
	var dnsErr *net.DNSError
	if errors.As(o.Err, &dnsErr) && dnsErr.IsNotFound {
		return invocation.Permanent
	}
	// A certificate n8n's address does not prove will not prove it on a
	// retry either.
	var verr *tls.CertificateVerificationError
	var uaErr x509.UnknownAuthorityError
	var hnErr x509.HostnameError
	var ciErr x509.CertificateInvalidError
	if errors.As(o.Err, &verr) || errors.As(o.Err, &uaErr) || errors.As(o.Err, &hnErr) || errors.As(o.Err, &ciErr) {
		return invocation.Permanent
	}
	// Refused, reset, EOF: transient. When the request may already have
	// gone out, the idempotency key makes a re-send recognisable.
	return invocation.Transient
}

func isHTML(o *Outcome) bool {
	for _, ct := range o.Header["Content-Type"] {
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "text/html") {
			return true
		}
	}
	return strings.HasPrefix(o.Message, "<")
}
