package policy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Classifier classifies an attempt's error. ok is false when it has no
// opinion, so that the next classifier in the chain decides. Errors of
// the webhook transport (*invocation.HTTPError, *invocation.TransportError)
// carry what a classifier needs: the status, header and message of the
// answer, or the network error and whether the attempt timed out.
type Classifier interface {
	Classify(err error) (c invocation.Class, ok bool)
}

// ClassifierFunc adapts a function to Classifier.
type ClassifierFunc func(err error) (invocation.Class, bool)

// Classify calls f.
func (f ClassifierFunc) Classify(err error) (invocation.Class, bool) { return f(err) }

// Chain asks its classifiers in order; the first definite answer wins.
// When none answers, the N8N rules decide.
type Chain []Classifier

// Classify returns the first definite answer, else N8N's.
func (ch Chain) Classify(err error) invocation.Class {
	for _, c := range ch {
		if cl, ok := c.Classify(err); ok {
			return cl
		}
	}
	c, _ := N8N(err)
	return c
}

// MessageWorkflowError is the body message of an n8n workflow that ran and
// failed: 500 {"message":"Error in workflow"}.
const MessageWorkflowError = "Error in workflow"

// N8N holds n8n-invoker's rules for n8n's answers. It always decides.
// An answer's code (invocation.HTTPError.AnswerCode: who wrote it, by its
// body and the target's response mode) decides first:
//
//   - Permanent: the workflow ran and failed (500 "Error in workflow") or
//     answered for itself through a Respond to Webhook node (any answer
//     that is not n8n's own or a proxy's): re-sending would run it again.
//   - Transient: an answer that says nothing ran (a 429 or 503 that is not
//     a Respond node's, n8n starting up, a starting n8n's HTML 404) and a
//     proxy's answer that may come after forwarding (502, 504, 524, a
//     "reset before headers" 503): the retry loop reconciles those before
//     any re-send, by their outcome.
//   - Permanent: 400, 401, 403, 404, 405, 409, 410, 413, 422, 3xx, a DNS
//     name that does not exist. Transient: 408.
//   - Unknown: everything else (a 500 n8n did not explain, a 501, a 520),
//     whose outcome is ambiguous, and attempt timeouts (n8n may still be
//     running the workflow).
//   - An error of another transport that reports its own class keeps it;
//     any other network error is transient, anything else unknown.
var N8N ClassifierFunc = func(err error) (invocation.Class, bool) {
	var he *invocation.HTTPError
	if !errors.As(err, &he) {
		var te *invocation.TransportError
		if errors.As(err, &te) {
			return classifyTransport(te.Err, te.TimedOut), true
		}
		var own interface{ Class() invocation.Class }
		if errors.As(err, &own) {
			return own.Class(), true
		}
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) {
			return classifyTransport(err, ne != nil && ne.Timeout()), true
		}
		return invocation.Unknown, true
	}
	switch he.AnswerCode() {
	case invocation.CodeWorkflowFailed, invocation.CodeWorkflowAnswered:
		return invocation.Permanent, true
	case invocation.CodeUnavailable, invocation.CodeRateLimited, invocation.CodeLost:
		return invocation.Transient, true
	case invocation.CodeRejected:
		if he.StatusCode == 408 {
			return invocation.Transient, true
		}
		return invocation.Permanent, true
	}
	return invocation.Unknown, true
}

func classifyTransport(err error, timedOut bool) invocation.Class {
	if timedOut {
		return invocation.Unknown
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return invocation.Permanent
	}
	// A certificate n8n's address does not prove will not prove it on a
	// retry either.
	var verr *tls.CertificateVerificationError
	var uaErr x509.UnknownAuthorityError
	var hnErr x509.HostnameError
	var ciErr x509.CertificateInvalidError
	if errors.As(err, &verr) || errors.As(err, &uaErr) || errors.As(err, &hnErr) || errors.As(err, &ciErr) {
		return invocation.Permanent
	}
	// Refused, reset, EOF: transient. When the request may already have
	// gone out, the idempotency key makes a re-send recognisable.
	return invocation.Transient
}
