package httpinvoker

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// Headers of HMAC-signed webhook requests: the timestamp both versions
// sign, the version 1 signature ("v1=...") and the version 2 signature
// ("v2=...", see SignV2).
const (
	HeaderTimestamp   = "X-Invoker-Timestamp"
	HeaderSignature   = "X-Invoker-Signature"
	HeaderSignatureV2 = "X-Invoker-Signature-V2"
)

// Sign returns the timestamp and version 1 signature headers of an
// HMAC-signed request: timestamp is unix seconds, signature is
// "v1=" + hex(HMAC-SHA256(secret, timestamp + "." + body)). A verifier
// recomputes it over the raw body and rejects timestamps outside its
// replay window. Every attempt is signed afresh.
//
// Version 1 covers neither the method, the path, the query nor the
// idempotency key: prefer SignV2 (docs/security.md).
func Sign(secret secret.Secret, now time.Time, body []byte) (timestamp, signature string) {
	timestamp = strconv.FormatInt(now.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret.Reveal()))
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return timestamp, "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// VerifySignature checks a signature made by Sign, within window of now.
func VerifySignature(secret secret.Secret, now time.Time, window time.Duration, body []byte, timestamp, signature string) bool {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return false
	}
	if d := now.Sub(time.Unix(ts, 0)); d > window || d < -window {
		return false
	}
	_, want := Sign(secret, time.Unix(ts, 0), body)
	return hmac.Equal([]byte(want), []byte(signature))
}

// JWT returns an HS256 token for n8n's JWT webhook authentication
// (credential type jwtAuth, passphrase, HS256): issued now, valid 60 s,
// with the request id as jti.
func JWT(secret secret.Secret, now time.Time, jti string) string {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims := map[string]any{"iat": now.Unix(), "exp": now.Add(60 * time.Second).Unix()}
	if jti != "" {
		claims["jti"] = jti
	}
	b, _ := json.Marshal(claims)
	unsigned := header + "." + enc.EncodeToString(b)
	mac := hmac.New(sha256.New, []byte(secret.Reveal()))
	mac.Write([]byte(unsigned))
	return unsigned + "." + enc.EncodeToString(mac.Sum(nil))
}

// SignedRequest is what a version 2 signature covers: the request as the
// n8n Code node behind the Webhook node can see it.
type SignedRequest struct {
	// Method is the webhook node's HTTP method; empty means POST.
	Method string
	// Path is the webhook node's configured path, with its :name
	// segments (e.g. "orders/:orderId"); leading and trailing slashes
	// are not signed.
	Path string
	// Params are the path parameters' decoded values; only those named
	// in Path are signed (n8n's params object has no others).
	Params map[string]string
	// Query is the decoded query string (one value per key): what n8n's
	// query object holds.
	Query map[string]string
	// IdempotencyKey is the Idempotency-Key header's value ("" when none
	// is sent).
	IdempotencyKey string
	// Body is the raw request body (nil or empty for none).
	Body []byte
}

// CanonicalV2 returns the string a version 2 signature signs: these
// lines joined by "\n" (no newline at the end):
//
//	v2
//	METHOD             the webhook's method, upper case
//	path               the configured path, leading and trailing "/" trimmed
//	params             the path parameters, canonical form
//	query              the query, canonical form
//	idempotency key    the header's value, as sent ("" when none)
//	timestamp          unix seconds, the X-Invoker-Timestamp header
//	body hash          hex(SHA-256(raw body)), lower case
//
// The canonical form of params and query is "key=value" pairs joined by
// "&" and sorted as byte strings, where key and value are the DECODED
// text percent-encoded byte by byte from UTF-8: the RFC 3986 unreserved
// bytes A-Z a-z 0-9 - . _ ~ stay, every other byte is %XX with upper-case
// hex (a space is %20, "+" is %2B). An empty object is an empty line.
//
// It fails, rather than signing what a verifier could never rebuild, for
// text that is not UTF-8, an empty query key, and a query key with "[" or
// "]" (n8n's query parser turns it into a nested object).
func CanonicalV2(r *SignedRequest, timestamp string) ([]byte, error) {
	method := strings.ToUpper(r.Method)
	if method == "" {
		method = http.MethodPost
	}
	path := strings.Trim(r.Path, "/")
	var params map[string]string
	for seg := range strings.SplitSeq(path, "/") {
		if name, ok := strings.CutPrefix(seg, ":"); ok {
			if params == nil {
				params = map[string]string{}
			}
			params[name] = r.Params[name]
		}
	}
	p, err := canonicalPairs("path parameter", params)
	if err != nil {
		return nil, err
	}
	q, err := canonicalPairs("query parameter", r.Query)
	if err != nil {
		return nil, err
	}
	for _, k := range sortedKeys(r.Query) {
		if k == "" || strings.ContainsAny(k, "[]") {
			return nil, fmt.Errorf("query parameter %q: an empty key or one with [ or ] cannot be signed (n8n parses it into a nested object)", k)
		}
	}
	sum := sha256.Sum256(r.Body)
	var b strings.Builder
	for i, line := range []string{"v2", method, path, p, q, r.IdempotencyKey, timestamp, hex.EncodeToString(sum[:])} {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(line)
	}
	return []byte(b.String()), nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// canonicalPairs returns m's canonical form (see CanonicalV2).
func canonicalPairs(what string, m map[string]string) (string, error) {
	pairs := make([]string, 0, len(m))
	for k, v := range m {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return "", fmt.Errorf("%s %q: not UTF-8, cannot be signed", what, strings.ToValidUTF8(k, "?"))
		}
		pairs = append(pairs, pctEncode(k)+"="+pctEncode(v))
	}
	slices.Sort(pairs)
	return strings.Join(pairs, "&"), nil
}

// pctEncode percent-encodes every byte of s but the RFC 3986 unreserved
// ones, with upper-case hex.
func pctEncode(s string) string {
	const hexUpper = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexUpper[c>>4])
		b.WriteByte(hexUpper[c&15])
	}
	return b.String()
}

// SignV2 returns the timestamp (unix seconds of now) and the version 2
// signature of r: "v2=" + hex(HMAC-SHA256(secret, CanonicalV2(r,
// timestamp))), sent in X-Invoker-Timestamp and X-Invoker-Signature-V2.
// An n8n Code node rebuilds the canonical string from the Webhook node's
// configured method and path, its params and query objects, the
// idempotency-key header and the raw body
// (templates/verify-hmac-signature.json).
func SignV2(secret secret.Secret, now time.Time, r *SignedRequest) (timestamp, signature string, err error) {
	timestamp = strconv.FormatInt(now.Unix(), 10)
	c, err := CanonicalV2(r, timestamp)
	if err != nil {
		return "", "", err
	}
	mac := hmac.New(sha256.New, []byte(secret.Reveal()))
	mac.Write(c)
	return timestamp, "v2=" + hex.EncodeToString(mac.Sum(nil)), nil
}

// VerifySignatureV2 checks a signature made by SignV2 for r, within
// window of now.
func VerifySignatureV2(secret secret.Secret, now time.Time, window time.Duration, r *SignedRequest, timestamp, signature string) bool {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || strconv.FormatInt(ts, 10) != timestamp {
		return false
	}
	if d := now.Sub(time.Unix(ts, 0)); d > window || d < -window {
		return false
	}
	_, want, err := SignV2(secret, time.Unix(ts, 0), r)
	return err == nil && hmac.Equal([]byte(want), []byte(signature))
}

// signError is the error of a request that cannot be signed with HMAC
// version 2 (see CanonicalV2): code invocation.CodeBadRequest, refused
// before sending.
func signError(workflow string, err error) *invocation.Error {
	return &invocation.Error{Code: invocation.CodeBadRequest, Workflow: workflow, Message: "cannot sign the request (hmac v2)", Err: err}
}

// Signer is the signing stage of the pipeline: it adds the per-attempt
// credentials of hmac and jwt webhooks (a fresh timestamp or token on
// every attempt) to the attempt's headers. Header and basic auth are
// static and sent by the transport. An hmac webhook gets the signature
// versions its Auth.HMACVersion names (default both: v1 in
// X-Invoker-Signature, v2 in X-Invoker-Signature-V2).
type Signer struct{}

// Attempt signs a and calls next.
func (Signer) Attempt(ctx context.Context, a *invocation.Attempt, next invocation.AttemptHandler) (*invocation.Result, error) {
	switch au := a.Target.Auth; au.Type {
	case invocation.AuthHMAC:
		now := time.Now()
		v := au.HMACVersion
		if v == "" {
			v = invocation.HMACVersionBoth
		}
		if v == invocation.HMACVersion2 || v == invocation.HMACVersionBoth {
			r, err := signedRequest(a)
			if err != nil {
				return nil, signError(a.Request.Workflow, err)
			}
			ts, sig, err := SignV2(au.Secret, now, r)
			if err != nil {
				return nil, signError(a.Request.Workflow, err)
			}
			a.SetHeader(HeaderTimestamp, ts)
			a.SetHeader(HeaderSignatureV2, sig)
		}
		if v == invocation.HMACVersion1 || v == invocation.HMACVersionBoth {
			ts, sig := Sign(au.Secret, now, a.Body)
			a.SetHeader(HeaderTimestamp, ts)
			a.SetHeader(HeaderSignature, sig)
		}
	case invocation.AuthJWT:
		a.SetHeader("Authorization", "Bearer "+JWT(au.Secret, time.Now(), a.Request.RequestID))
	}
	return next(ctx, a)
}

// signedRequest is the request the transport sends for a, as SignV2
// covers it.
func signedRequest(a *invocation.Attempt) (*SignedRequest, error) {
	t := a.Target
	r := &SignedRequest{Method: t.Method, Path: t.Path, Params: a.Request.PathParams,
		IdempotencyKey: a.Request.IdempotencyKey, Body: a.Body}
	if r.Method == "" {
		r.Method = http.MethodPost
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		q, err := queryValues(a.Request)
		if err != nil {
			return nil, err
		}
		r.Query = q
	}
	return r, nil
}
