package httpinvoker

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/n8n-invoker/n8n-invoker/secret"
)

func TestSignAndVerify(t *testing.T) {
	t.Parallel()
	key := secret.New("0123456789abcdef-secret")
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"email":"a@b.c"}`)
	ts, sig := Sign(key, now, body)
	if ts != "1800000000" || !strings.HasPrefix(sig, "v1=") || len(sig) != 3+64 {
		t.Fatalf("ts %s sig %s", ts, sig)
	}
	tests := []struct {
		name   string
		now    time.Time
		body   string
		secret string
		sig    string
		ok     bool
	}{
		{"valid", now.Add(10 * time.Second), string(body), key.Reveal(), sig, true},
		{"stale", now.Add(6 * time.Minute), string(body), key.Reveal(), sig, false},
		{"from the future", now.Add(-6 * time.Minute), string(body), key.Reveal(), sig, false},
		{"tampered body", now, `{"email":"x@b.c"}`, key.Reveal(), sig, false},
		{"wrong secret", now, string(body), "another-secret-0123", sig, false},
		{"garbage", now, string(body), key.Reveal(), "v1=zz", false},
	}
	for _, tt := range tests {
		if got := VerifySignature(secret.New(tt.secret), tt.now, 5*time.Minute, []byte(tt.body), ts, tt.sig); got != tt.ok {
			t.Errorf("%s: %v", tt.name, got)
		}
	}
}

func TestJWTShape(t *testing.T) {
	t.Parallel()
	tok := JWT(secret.New("0123456789abcdef"), time.Unix(1_800_000_000, 0), "req-1")
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %s", tok)
	}
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	if json.Unmarshal(b, &claims) != nil || claims["exp"].(float64)-claims["iat"].(float64) != 60 || claims["jti"] != "req-1" {
		t.Errorf("claims %s", b)
	}
}
