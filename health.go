package invoker

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/n8n-invoker/n8n-invoker/n8napi"
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
	// N8NAPI is a call of n8n's API with the configured key (absent
	// without one): a wrong key makes the manager unhealthy, since
	// resolution by id, Wait and reconcile need it.
	N8NAPI *Check `json:"n8n_api,omitempty"`
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
	if m.api != nil {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, resp, err := m.api.Workflows.List(actx, &n8napi.WorkflowListOptions{Limit: 1})
		cancel()
		c := &Check{OK: err == nil}
		if resp != nil {
			c.Status = resp.StatusCode
		}
		var ae *n8napi.APIError
		if errors.As(err, &ae) {
			c.Status = ae.StatusCode
		}
		if err != nil {
			c.Error = cleanErr(err)
		}
		h.N8NAPI = c
	}
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
	h.Healthy = h.N8NLive.OK && h.N8NReady.OK && h.DLQError == "" && (h.N8NAPI == nil || h.N8NAPI.OK)
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
