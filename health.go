package invoker

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/n8n-invoker/n8n-invoker/policy"
)

// Check is the result of one health probe.
type Check struct {
	OK     bool   `json:"ok"`
	Status int    `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Health is the state of the manager and the n8n it talks to.
type Health struct {
	// Healthy is true when n8n is live and ready and no breaker is open.
	Healthy bool `json:"healthy"`
	// N8NLive and N8NReady are n8n's /healthz and /healthz/readiness.
	N8NLive  Check                 `json:"n8n_live"`
	N8NReady Check                 `json:"n8n_ready"`
	Breakers []policy.BreakerState `json:"breakers,omitempty"`
	// DLQDepth is the number of dead letters, -1 without a queue.
	DLQDepth int    `json:"dlq_depth"`
	DLQError string `json:"dlq_error,omitempty"`
}

// Health probes n8n's /healthz and /healthz/readiness (5 s each at most)
// and reports the breakers and the dead-letter queue's depth.
func (m *Manager) Health(ctx context.Context) *Health {
	h := &Health{DLQDepth: -1, Breakers: m.BreakerStates()}
	base := strings.TrimSuffix(m.cfg.N8N.BaseURL, "/")
	h.N8NLive = probe(ctx, m.healthClient, base+"/healthz")
	h.N8NReady = probe(ctx, m.healthClient, base+"/healthz/readiness")
	if c, ok := m.dlq.(interface {
		Count(context.Context) (int, error)
	}); ok {
		n, err := c.Count(ctx)
		if err != nil {
			h.DLQError = err.Error()
		} else {
			h.DLQDepth = n
		}
	}
	h.Healthy = h.N8NLive.OK && h.N8NReady.OK && h.DLQError == ""
	for _, b := range h.Breakers {
		if b.State == policy.Open {
			h.Healthy = false
		}
	}
	return h
}

func probe(ctx context.Context, c *http.Client, url string) Check {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Check{Error: err.Error()}
	}
	resp, err := c.Do(req)
	if err != nil {
		return Check{Error: cleanErr(err)}
	}
	resp.Body.Close()
	return Check{OK: resp.StatusCode == http.StatusOK, Status: resp.StatusCode}
}

func cleanErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.Contains(s, "Get \"") {
		return s[i+2:]
	}
	return s
}
