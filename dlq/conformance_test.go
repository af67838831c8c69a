package dlq_test

import (
	"testing"

	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/dlq/dlqtest"
	"path/filepath"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	var last string
	dlqtest.Run(t, func(t *testing.T) dlq.Backend {
		last = filepath.Join(t.TempDir(), "dlq.db")
		s, err := dlq.Open(t.Context(), last, dlq.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, dlqtest.Options{Reopen: func(t *testing.T) dlq.Backend {
		s, err := dlq.Open(t.Context(), last, dlq.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}})
}
