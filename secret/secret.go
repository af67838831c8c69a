package secret

import (
	"fmt"
	"log/slog"
)

const redacted = "REDACTED"

// Secret holds a credential. It prints, logs and marshals as REDACTED;
// only Reveal returns the value.
type Secret struct{ v string }

// New wraps a credential.
func New(v string) Secret { return Secret{v: v} }

// Reveal returns the credential. Call it only where the value is sent.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == "" }

// String returns REDACTED (or "" for an empty secret).
func (s Secret) String() string {
	if s.v == "" {
		return ""
	}
	return redacted
}

// GoString returns REDACTED, also for %#v.
func (s Secret) GoString() string { return `secret.Secret("` + s.String() + `")` }

// Format prints REDACTED whatever the verb.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(s.GoString()))
		return
	}
	_, _ = f.Write([]byte(s.String()))
}

// LogValue makes slog print REDACTED.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON encodes REDACTED.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// MarshalText encodes REDACTED.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
