package httpinvoker

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// Headers of HMAC-signed webhook requests.
const (
	HeaderTimestamp = "X-Invoker-Timestamp"
	HeaderSignature = "X-Invoker-Signature"
)

// Sign returns the timestamp and signature headers of an HMAC-signed
// request: timestamp is unix seconds, signature is
// "v1=" + hex(HMAC-SHA256(secret, timestamp + "." + body)). A verifier
// recomputes it over the raw body and rejects timestamps outside its
// replay window (templates/verify-hmac-signature.json uses 300 s). Every
// attempt is signed afresh.
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

// Signer is the signing stage of the pipeline: it adds the per-attempt
// credentials of hmac and jwt webhooks (a fresh timestamp or token on
// every attempt) to the attempt's headers. Header and basic auth are
// static and sent by the transport.
type Signer struct{}

// Attempt signs a and calls next.
func (Signer) Attempt(ctx context.Context, a *invocation.Attempt, next invocation.AttemptHandler) (*invocation.Result, error) {
	switch au := a.Target.Auth; au.Type {
	case invocation.AuthHMAC:
		ts, sig := Sign(au.Secret, time.Now(), a.Body)
		a.SetHeader(HeaderTimestamp, ts)
		a.SetHeader(HeaderSignature, sig)
	case invocation.AuthJWT:
		a.SetHeader("Authorization", "Bearer "+JWT(au.Secret, time.Now(), a.Request.RequestID))
	}
	return next(ctx, a)
}
