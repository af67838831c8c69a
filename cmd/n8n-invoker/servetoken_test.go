package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/n8n-invoker/n8n-invoker/server"
)

// TestServeToken: `serve token` prints the token on stdout and the line
// on stderr; --workflows puts the allow-list in the line, which the
// token file reads back; a bad pattern is a usage error.
func TestServeToken(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		args      []string
		code      int
		workflows []string // of the principal; nil: every workflow
		stderr    string
	}{
		{"every workflow", []string{"ops", "read,submit"}, 0, nil, "may act on every workflow"},
		{"a list", []string{"ci", "submit", "--workflows", "orders,billing-*"}, 0, []string{"orders", "billing-*"}, "workflows=orders,billing-*"},
		{"a list, flag twice", []string{"ci", "submit", "--workflows", "orders", "--workflows", "W1"}, 0, []string{"orders", "W1"}, "workflows=orders,W1"},
		{"a bad pattern", []string{"ci", "submit", "--workflows", "orders["}, exitUsage, nil, "orders["},
		{"an empty entry", []string{"ci", "submit", "--workflows", "orders,,x"}, exitUsage, nil, "empty workflow"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			code := run(context.Background(), append([]string{"serve", "token"}, tc.args...), nil, &out, &errOut)
			if code != tc.code || !strings.Contains(errOut.String(), tc.stderr) {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, errOut.String())
			}
			if code != 0 {
				return
			}
			tok := strings.TrimSpace(out.String())
			_, line, _ := strings.Cut(errOut.String(), "add to the token file:\n")
			line, _, _ = strings.Cut(line, "\n")
			p := filepath.Join(t.TempDir(), "tokens")
			if err := os.WriteFile(p, []byte(line+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := server.NewTokenFile(p)
			if err != nil {
				t.Fatal(err)
			}
			pr, ok := f.Authenticate(tok)
			if !ok || strings.Join(pr.Workflows, " ") != strings.Join(tc.workflows, " ") || (tc.workflows == nil) != (pr.Workflows == nil) {
				t.Errorf("the line %q gives %+v %v", line, pr, ok)
			}
		})
	}
}
