package invocation

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/n8n-invoker/n8n-invoker/secret"
)

// Outcome is what one attempt did on the wire, as its transport reports
// it. It is the fact the layers above need to tell a safe retry from an
// ambiguous one.
type Outcome uint8

const (
	// NotSent: the request never left (refused connection, a breaker or a
	// limiter said no, the context ended first). Safe to retry.
	NotSent Outcome = iota
	// Answered: n8n (or something in front of it) answered.
	Answered
	// Accepted: n8n took the request and gave an execution id; the
	// result comes later (a webhook in onReceived mode, MCP's start).
	Accepted
	// Ambiguous: the request was sent and the answer was lost (a reset
	// after writing, a timeout): the workflow may have run.
	Ambiguous
)

// String returns "not-sent", "answered", "accepted" or "ambiguous".
func (o Outcome) String() string {
	switch o {
	case NotSent:
		return "not-sent"
	case Answered:
		return "answered"
	case Accepted:
		return "accepted"
	default:
		return "ambiguous"
	}
}

// MarshalText encodes the outcome as its name.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// OutcomeOf returns the outcome the first error of err's chain that
// reports one (an Outcome() Outcome method) says, else the outcome of its
// code (CodeOf): NotSent for a context's error or a sentinel that says
// nothing was sent, Ambiguous for a failure nobody explains (it may have
// reached n8n). A nil error is Answered.
func OutcomeOf(err error) Outcome {
	if err == nil {
		return Answered
	}
	var o interface{ Outcome() Outcome }
	if errors.As(err, &o) {
		return o.Outcome()
	}
	return CodeOf(err).Outcome()
}

// Target is where a workflow is reached, as resolution found it: enough
// for any transport (a webhook path and method for the HTTP transport; a
// workflow id and trigger node for one that starts workflows by id).
type Target struct {
	// Workflow is the name the caller gave.
	Workflow string
	// WorkflowID is n8n's id of the workflow, when known.
	WorkflowID string
	// Transport names the transport that serves the workflow; empty
	// means the manager's default.
	Transport string
	// Path is the webhook node's path, served at <base>/webhook/<path>; a
	// path with :name segments is served under the node's webhook id:
	// <base>/webhook/<WebhookID>/<path>.
	Path string
	// WebhookID is the webhook node's id, the prefix n8n serves dynamic
	// paths under.
	WebhookID string
	// Method is the HTTP method; empty means POST.
	Method string
	// ResponseMode is the webhook node's response mode (ResponseMode...).
	ResponseMode string
	// ResponseData is the webhook node's "Response Data" option in
	// lastNode mode (ResponseData...); empty means ResponseDataFirstEntry.
	ResponseData string
	// TriggerNode names the trigger node, for transports that start a
	// workflow by id.
	TriggerNode string
	// Timeout overrides the transport's attempt timeout when not zero.
	Timeout time.Duration
	// MaxRetryAfter overrides the retry policy's longest honoured
	// Retry-After when not zero (the MCP transport's server asks for up
	// to its whole 5-minute window).
	MaxRetryAfter time.Duration
	// Auth is the webhook's authentication.
	Auth Auth
}

// Response modes of an n8n webhook node.
const (
	ResponseModeOnReceived   = "onReceived"
	ResponseModeLastNode     = "lastNode"
	ResponseModeResponseNode = "responseNode"
)

// Response data options of an n8n webhook node in lastNode mode.
const (
	// ResponseDataFirstEntry answers the last node's first item's JSON.
	ResponseDataFirstEntry = "firstEntryJson"
	// ResponseDataAllEntries answers every item of the last node, as an
	// array (what a packed workflow uses).
	ResponseDataAllEntries = "allEntries"
	// ResponseDataNoData answers an empty body.
	ResponseDataNoData = "noData"
	// ResponseDataFirstBinary answers the first item's binary data.
	ResponseDataFirstBinary = "firstEntryBinary"
)

// Auth types of a workflow's webhook.
const (
	AuthNone   = "none"
	AuthHeader = "header"
	AuthBasic  = "basic"
	// AuthHMAC signs each request with an HMAC-SHA256 of the secret,
	// in the versions Auth.HMACVersion names: X-Invoker-Timestamp, and
	// X-Invoker-Signature: v1=hex(HMAC-SHA256(secret, timestamp "." body))
	// and/or X-Invoker-Signature-V2: v2=... over the method, path, path
	// parameters, query, idempotency key, timestamp and body (see
	// httpinvoker.CanonicalV2).
	AuthHMAC = "hmac"
	// AuthJWT sends n8n's JWT webhook auth: Authorization: Bearer <an HS256
	// token made per request with the secret, valid 60 s>.
	AuthJWT = "jwt"
)

// Versions of the HMAC signature (Auth.HMACVersion).
const (
	// HMACVersion1 sends only the version 1 signature, which covers the
	// timestamp and the body alone.
	HMACVersion1 = "1"
	// HMACVersion2 sends only the version 2 signature.
	HMACVersion2 = "2"
	// HMACVersionBoth sends both, each in its own header: a verifier of
	// either version accepts the request. The default.
	HMACVersionBoth = "both"
)

// Auth is a webhook's authentication.
type Auth struct {
	// Type is one of the Auth... constants; empty means none.
	Type string
	// Name is the header name for header auth.
	Name string
	// Value is the header value for header auth.
	Value secret.Secret
	// Username is the user for basic auth.
	Username string
	// Password is the password for basic auth.
	Password secret.Secret
	// Secret is the key of hmac and jwt auth.
	Secret secret.Secret
	// HMACVersion is the HMAC signature version hmac auth sends: one of
	// the HMACVersion... constants; empty means HMACVersionBoth.
	HMACVersion string
}

// Attempt is one try of a call, as the per-attempt stages and the
// transport see it.
type Attempt struct {
	// Request is the call's request. Do not modify it.
	Request *Request
	// Target is the resolved target. Do not modify it.
	Target *Target
	// Number is 1 for the first attempt, 2 for the first retry, ...
	Number int
	// Body is the request's JSON body, encoded once per call.
	Body []byte
	// Header holds headers the per-attempt stages add (trace context,
	// signatures); a transport that speaks HTTP sends them. Nil until a
	// stage adds one: use SetHeader.
	Header http.Header
}

// SetHeader sets a header to send with this attempt.
func (a *Attempt) SetHeader(key, value string) {
	if a.Header == nil {
		a.Header = make(http.Header, 2)
	}
	a.Header[http.CanonicalHeaderKey(key)] = []string{value}
}

// Transport makes one attempt: one request on the wire, no retries, no
// decisions. It returns the result of an answer with success (its
// Completed false when n8n accepted the request and the result comes
// later), or an error that reports, through OutcomeOf, whether the
// request was sent. A Transport must be safe for concurrent use.
type Transport interface {
	Attempt(ctx context.Context, a *Attempt) (*Result, error)
}

// TransportFunc adapts a function to Transport.
type TransportFunc func(ctx context.Context, a *Attempt) (*Result, error)

// Attempt calls f.
func (f TransportFunc) Attempt(ctx context.Context, a *Attempt) (*Result, error) { return f(ctx, a) }

// AttemptHandler is the rest of the per-attempt stages, down to the
// transport.
type AttemptHandler func(ctx context.Context, a *Attempt) (*Result, error)

// AttemptCode is the code of an attempt's error that has none of its
// own (a custom transport's plain error), from the class the pipeline's
// classifiers gave it and its outcome on the wire.
func AttemptCode(class Class, o Outcome) Code {
	switch {
	case o == NotSent && class == Permanent:
		return CodeBadRequest
	case o == NotSent:
		return CodeNotSent
	case o == Ambiguous && class == Transient:
		return CodeLost
	case o == Answered && class == Permanent:
		return CodeRejected
	case o == Answered && class == Transient:
		return CodeUnavailable
	}
	return CodeUnknown
}

func pathError(req *Request, t *Target, msg string) *Error {
	return &Error{Code: CodeBadRequest, Workflow: req.Workflow, Message: "webhook path " + quote(t.Path) + ": " + msg}
}

// FillPath returns the path of t with req's path parameters filled in,
// percent-encoded, under the webhook id when the path has parameters. A
// value with a slash, and the values "." and ".." (a proxy that
// normalises dot segments would turn them into another webhook's path),
// are refused with an error of code CodeBadRequest.
func FillPath(t *Target, req *Request) (string, error) {
	path := strings.Trim(t.Path, "/")
	if !strings.Contains(path, ":") {
		return path, nil
	}
	segs := strings.Split(path, "/")
	var missing []string
	for i, s := range segs {
		name, ok := strings.CutPrefix(s, ":")
		if !ok {
			continue
		}
		v, ok := req.PathParams[name]
		if !ok || v == "" {
			missing = append(missing, name)
			continue
		}
		if strings.Contains(v, "/") {
			// n8n decodes the path before matching it: the segment would
			// split in two and match no webhook.
			return "", pathError(req, t, fmt.Sprintf("the value of %s contains a slash, which n8n cannot match in a path segment", name))
		}
		if v == "." || v == ".." {
			// url.PathEscape leaves dots alone, and RFC 3986 dot segments
			// are removed by proxies and clients that normalise paths:
			// orders/../admin would reach another webhook.
			return "", pathError(req, t, fmt.Sprintf("the value of %s is %q, a dot segment that proxies normalise into another path", name, v))
		}
		segs[i] = url.PathEscape(v)
	}
	if len(missing) > 0 {
		return "", pathError(req, t, "needs the path parameter(s) "+strings.Join(missing, ", ")+" (Request.PathParams, -P name=value)")
	}
	filled := strings.Join(segs, "/")
	if t.WebhookID == "" {
		return "", pathError(req, t, "has parameters, which n8n serves under the webhook node's id: set webhook_id in the workflow's configuration (or run it by n8n id with n8n.api_key)")
	}
	return t.WebhookID + "/" + filled, nil
}
