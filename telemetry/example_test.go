package telemetry_test

import (
	"log/slog"
	"os"

	"github.com/n8n-invoker/n8n-invoker/telemetry"
)

func ExampleRedactHandler() {
	h := slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})
	log := slog.New(telemetry.RedactHandler(h, "n8n_api_1234"))
	log.Warn("request failed", "error", "401 with key n8n_api_1234")
	// Output: level=WARN msg="request failed" error="401 with key REDACTED"
}
