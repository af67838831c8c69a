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
