package telemetry

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestRedactHandler(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(RedactHandler(slog.NewJSONHandler(&buf, nil), "hunter22", "abc")).With("preset", "key=hunter22")
	log.Info("calling with hunter22", "err", errors.New("401 for key hunter22"), slog.Group("g", "token", "hunter22"), "short", "abc")
	out := buf.String()
	if strings.Contains(out, "hunter22") || strings.Count(out, "REDACTED") != 4 || !strings.Contains(out, `"short":"abc"`) {
		t.Errorf("log: %s", out)
	}
}

// TestRedactorAdd: a secret added after the handler was made (a secret
// file reloaded) is redacted from then on, by handlers made before (with
// attributes and groups too); a secret that contains another is
// redacted whole.
func TestRedactorAdd(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	r := NewRedactor("old-key-1234")
	log := slog.New(r.Handler(slog.NewJSONHandler(&buf, nil))).With("preset", "x").WithGroup("g")
	r.Add("new-key-5678", "old-key-1234-longer", "ab")
	log.Info("calling with new-key-5678", "err", errors.New("401 for new-key-5678 and old-key-1234-longer"), "short", "ab")
	out := buf.String()
	if strings.Contains(out, "new-key") || strings.Contains(out, "old-key") || strings.Contains(out, "longer") || !strings.Contains(out, `"short":"ab"`) {
		t.Errorf("log: %s", out)
	}
	if got := r.Replace("a new-key-5678 b"); got != "a REDACTED b" {
		t.Errorf("Replace = %q", got)
	}
}
