package invoker

import (
	"context"
	"crypto/tls"
	"time"

	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/httpinvoker"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/mcpinvoker"
	"github.com/n8n-invoker/n8n-invoker/pipeline"
	"github.com/n8n-invoker/n8n-invoker/policy"
	"github.com/n8n-invoker/n8n-invoker/secret"
	"github.com/n8n-invoker/n8n-invoker/telemetry"
)

// This file is the one place that maps the configuration to the options
// of the layers: policy, httpinvoker, pipeline, n8napi, telemetry and dlq
// never read a config.Config.

func keySourceFromConfig(cfg *config.Config) (secret.Provider, error) {
	if cfg.N8N.APIKeyFile != "" {
		f, err := secret.NewFile(cfg.N8N.APIKeyFile)
		if err != nil {
			return nil, &config.Error{Pos: cfg.PositionOf("n8n.api_key_file"), Field: "n8n.api_key_file", Msg: err.Error()}
		}
		return f, nil
	}
	return secret.Static(cfg.N8N.APIKey), nil
}

// mcpFromConfig builds the MCP transport of invokers.mcp, with its token
// registered with the log redaction backstop.
func mcpFromConfig(cfg *config.Config, tlsConf *tls.Config, red *telemetry.Redactor) (*mcpinvoker.Transport, secret.Provider, error) {
	mc := &cfg.Invokers.MCP
	var token secret.Provider = secret.Static(mc.Token)
	if mc.TokenFile != "" {
		f, err := secret.NewFile(mc.TokenFile)
		if err != nil {
			return nil, nil, &config.Error{Pos: cfg.PositionOf("invokers.mcp.token_file"), Field: "invokers.mcp.token_file", Msg: err.Error()}
		}
		token = f
	}
	token = redacted(token, red)
	t, err := mcpinvoker.New(mcpinvoker.Options{BaseURL: cfg.N8N.BaseURL, Token: token, TLSConfig: tlsConf, Timeout: cfg.N8N.Timeout.D(),
		RateRequests: mc.RateLimit.Requests, RatePer: mc.RateLimit.Per.D(), MaxRetryAfter: mc.MaxRetryAfter.D()})
	return t, token, err
}

// redactedProvider registers every value its provider gives (at start
// for a secret file, on every read, after every reload) with the log
// redaction backstop, so that a rotated secret is redacted as soon as it
// can be used.
type redactedProvider struct {
	p   secret.Provider
	red *telemetry.Redactor
}

func redacted(p secret.Provider, red *telemetry.Redactor) secret.Provider {
	if p == nil {
		return nil
	}
	if f, ok := p.(*secret.File); ok {
		if s, err := f.Secret(context.Background()); err == nil {
			red.Add(s.Reveal())
		}
	}
	return redactedProvider{p: p, red: red}
}

// Secret returns the provider's value, registered first.
func (r redactedProvider) Secret(ctx context.Context) (secret.Secret, error) {
	s, err := r.p.Secret(ctx)
	if err == nil {
		r.red.Add(s.Reveal())
	}
	return s, err
}

// Reload reloads a reloadable provider and registers its new value.
func (r redactedProvider) Reload(ctx context.Context) (bool, error) {
	rl, ok := r.p.(secret.Reloader)
	if !ok {
		return false, nil
	}
	changed, err := rl.Reload(ctx)
	if s, serr := r.p.Secret(ctx); serr == nil {
		r.red.Add(s.Reveal())
	}
	return changed, err
}

func tlsFromConfig(t config.TLS) (*tls.Config, error) {
	return httpinvoker.TLSConfig(httpinvoker.TLSFiles{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile,
		ServerName: t.ServerName, MinVersion: t.MinVersion, InsecureSkipVerify: t.InsecureSkipVerify})
}

func authFromConfig(a config.Auth) invocation.Auth {
	return invocation.Auth{Type: a.Type, Name: a.Name, Value: a.Value, Username: a.Username, Password: a.Password, Secret: a.Secret, HMACVersion: a.HMACVersion}
}

func authsFromConfig(creds map[string]config.Auth) map[string]invocation.Auth {
	out := make(map[string]invocation.Auth, len(creds))
	for k, a := range creds {
		out[k] = authFromConfig(a)
	}
	return out
}

// staticResolver is the resolver of the configuration's workflows
// section.
func staticResolver(cfg *config.Config) pipeline.StaticResolver {
	r := make(pipeline.StaticResolver, len(cfg.Workflows))
	for name, w := range cfg.Workflows {
		t := &invocation.Target{
			Workflow: name, WorkflowID: w.ID, Path: w.Path, WebhookID: w.WebhookID, Method: w.Method, ResponseMode: w.ResponseMode,
			ResponseData: w.ResponseData, Timeout: w.Timeout.D(), Auth: authFromConfig(w.Auth),
		}
		if w.Transport == config.TransportMCP {
			t.Transport, t.TriggerNode, t.MaxRetryAfter = mcpinvoker.Name, w.TriggerNode, cfg.Invokers.MCP.MaxRetryAfter.D()
		}
		r[name] = t
	}
	return r
}

func transportOptions(cfg *config.Config, tlsConf *tls.Config) []httpinvoker.Option {
	h := &cfg.Invokers.HTTP
	opts := []httpinvoker.Option{
		httpinvoker.WithTLSConfig(tlsConf),
		httpinvoker.WithTimeout(cfg.N8N.Timeout.D()),
		httpinvoker.WithPool(h.PoolConnections, h.PoolMaxSize),
		httpinvoker.WithMaxResponseBytes(h.MaxResponseBytes),
	}
	if len(h.ExecutionIDHeaders) > 0 {
		opts = append(opts, httpinvoker.WithExecutionIDHeaders(h.ExecutionIDHeaders...))
	}
	return opts
}

// retryFromConfig maps invokers.http to the retry loop: backoff_factor
// is the first backoff cap in seconds.
func retryFromConfig(h *config.HTTP) (*pipeline.Retry, error) {
	r := &pipeline.Retry{Policy: &policy.Retry{
		MaxRetries:    h.MaxRetries,
		BaseDelay:     time.Duration(h.BackoffFactor * float64(time.Second)),
		Multiplier:    h.Retry.Multiplier,
		MaxDelay:      h.Retry.MaxDelay.D(),
		MaxElapsed:    h.Retry.MaxElapsed.D(),
		MaxRetryAfter: h.Retry.MaxRetryAfter.D(),
	}}
	if b := h.Retry.Budget; b.Enabled {
		budget, err := policy.NewBudget(policy.BudgetConfig{Capacity: b.Capacity, RetryCost: b.RetryCost, TimeoutCost: b.TimeoutCost})
		if err != nil {
			return nil, err
		}
		r.Budget = budget
	}
	return r, nil
}

// breakersFromConfig maps circuit_breaker; with a fallback, an open
// breaker sends calls to it at once instead of pausing them.
func breakersFromConfig(cb config.CircuitBreaker, fallback bool, onStateChange func(endpoint string, from, to policy.State)) (*policy.Breakers, error) {
	if !cb.Enabled {
		return nil, nil
	}
	pause := cb.MaxPause.D()
	if fallback {
		pause = -1
	}
	return policy.NewBreakers(policy.BreakerConfig{
		ConsecutiveFailures: cb.ConsecutiveFailures, FailureRate: cb.FailureRate, Window: cb.Window.D(),
		MinCalls: cb.MinCalls, OpenTimeout: cb.OpenTimeout.D(), HalfOpenProbes: cb.HalfOpenProbes,
		MaxPause: pause, OnStateChange: onStateChange,
	})
}

// limiterFromConfig maps invokers.http.rate_limit; its pause after a 429
// is capped at retry.max_retry_after.
func limiterFromConfig(rl config.RateLimit, maxPause time.Duration) (*policy.RateLimiter, error) {
	if !rl.Enabled {
		return nil, nil
	}
	return policy.NewRateLimiter(rl.RequestsPerSecond, rl.Burst, policy.WithMaxPause(maxPause))
}

func bulkheadFromConfig(b config.Bulkhead) *policy.Bulkhead {
	if b.MaxInFlight <= 0 {
		return nil
	}
	return policy.NewBulkhead(b.MaxInFlight, b.MaxWait.D())
}
