package config

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse: any input gives a Config or an error naming the file; never
// a panic.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"n8n: {base_url: 'http://x'}\n",
		"n8n:\n  base_url: ${URL:-http://127.0.0.1:5678}\n  api_key: ${KEY}\n  timeout: 1.5\n",
		"invokers:\n  http:\n    max_retries: -1\n",
		"workflows:\n  a: {path: p, auth: {type: header, name: X, value: v}}\n",
		"hooks: {pre_execution: [logging_hook, 3, {a: b}]}\n",
		"n8n: &a {base_url: *a}\n",
		"- [\n",
	} {
		f.Add([]byte(s))
	}
	lookup := WithLookupEnv(func(k string) (string, bool) { return "http://127.0.0.1:1", k == "URL" || k == "KEY" })
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "fuzz.yaml", lookup)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error without file name: %v", err)
			}
			return
		}
		if cfg.N8N.BaseURL == "" {
			t.Fatal("a config without base URL was accepted")
		}
	})
}

// FuzzExpand: expansion never panics, and text without "$" is unchanged.
func FuzzExpand(f *testing.F) {
	for _, s := range []string{"plain", "${A}", "${A:-d}", "$${A}", "${", "${A", "x${B:-${C}}y", "$"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := Expand(s, func(k string) (string, bool) { return "v", k == "A" })
		if !strings.Contains(s, "$") && (err != nil || out != s) {
			t.Fatalf("Expand(%q) = %q, %v", s, out, err)
		}
	})
}
