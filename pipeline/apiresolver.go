package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
)

// DefaultResolverTTL is how long a resolved webhook is cached.
const DefaultResolverTTL = 5 * time.Minute

// notInN8N is the cause of an unknown-workflow error from n8n's API:
// n8n knows no workflow of that id or name.
type notInN8N string

func (e notInN8N) Error() string { return string(e) }

// resolveError is the error of a workflow id or name that has no usable
// webhook: unknown to n8n (code invocation.CodeUnknownWorkflow), or not
// runnable by webhook as it is (invocation.CodeBadRequest).
func resolveError(workflow, reason string, notFound bool) *invocation.Error {
	if notFound {
		return &invocation.Error{Code: invocation.CodeUnknownWorkflow, Workflow: workflow, Err: notInN8N(reason)}
	}
	return &invocation.Error{Code: invocation.CodeBadRequest, Workflow: workflow, Message: reason}
}

// APIResolver resolves an n8n workflow id (or exact name) to its webhook
// trigger through the public API, from the active version of the
// workflow, and caches the answer: the warm path makes no API call. It
// implements APIResolver and is safe for concurrent use.
type APIResolver struct {
	c     *n8napi.Client
	ttl   time.Duration
	creds map[string]invocation.Auth
	group singleflight.Group

	// OnWarning, when set, hears what resolution finds that weakens the
	// invoker's guarantees (a workflow that does not save successful
	// executions: reconcile and Wait cannot see them).
	OnWarning func(workflow, msg string)

	mu    sync.Mutex
	cache map[string]cached
	// Lookups counts the API lookups made (cache misses), for tests and
	// metrics.
	lookups int
}

type cached struct {
	ep      *invocation.Target
	id      string
	expires time.Time
}

// NewAPIResolver returns a resolver using c. ttl 0 means DefaultResolverTTL.
// creds gives webhook credential secrets by n8n credential name.
func NewAPIResolver(c *n8napi.Client, ttl time.Duration, creds map[string]invocation.Auth) *APIResolver {
	if ttl <= 0 {
		ttl = DefaultResolverTTL
	}
	return &APIResolver{c: c, ttl: ttl, creds: creds, cache: map[string]cached{}}
}

// Resolve returns the webhook of the workflow with id (or name) workflow.
func (r *APIResolver) Resolve(ctx context.Context, workflow string) (*invocation.Target, error) {
	ep, _, err := r.resolve(ctx, workflow)
	return ep, err
}

// WorkflowID returns the n8n id of workflow (an id or a name), resolving
// it if needed.
func (r *APIResolver) WorkflowID(ctx context.Context, workflow string) (string, error) {
	_, id, err := r.resolve(ctx, workflow)
	return id, err
}

func (r *APIResolver) resolve(ctx context.Context, workflow string) (*invocation.Target, string, error) {
	r.mu.Lock()
	if c, ok := r.cache[workflow]; ok && time.Now().Before(c.expires) {
		r.mu.Unlock()
		ep := *c.ep
		return &ep, c.id, nil
	}
	r.mu.Unlock()
	v, err, _ := r.group.Do(workflow, func() (any, error) {
		r.mu.Lock()
		r.lookups++
		r.mu.Unlock()
		w, err := r.lookup(ctx, workflow)
		if err != nil {
			return nil, err
		}
		ep, err := r.endpoint(workflow, w)
		if err != nil {
			return nil, err
		}
		c := cached{ep: ep, id: w.ID.String(), expires: time.Now().Add(r.ttl)}
		r.mu.Lock()
		r.cache[workflow] = c
		r.mu.Unlock()
		return c, nil
	})
	if err != nil {
		return nil, "", err
	}
	c := v.(cached)
	ep := *c.ep
	return &ep, c.id, nil
}

// Invalidate drops workflow from the cache, e.g. after its webhook
// answered "not registered".
func (r *APIResolver) Invalidate(workflow string) {
	r.mu.Lock()
	delete(r.cache, workflow)
	r.mu.Unlock()
}

// Lookups returns the number of API lookups made so far.
func (r *APIResolver) Lookups() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookups
}

func (r *APIResolver) lookup(ctx context.Context, workflow string) (*n8napi.Workflow, error) {
	if workflow == "" || strings.ContainsAny(workflow, "/?#") {
		return nil, resolveError(workflow, "not a workflow id or name", true)
	}
	w, _, err := r.c.Workflows.Get(ctx, workflow)
	if err == nil {
		return w, nil
	}
	var ae *n8napi.APIError
	if !errors.As(err, &ae) || (ae.StatusCode != 404 && ae.StatusCode != 400) {
		return nil, err
	}
	// Not an id: try it as a name.
	for w, err := range r.c.Workflows.All(ctx, &n8napi.WorkflowListOptions{Name: workflow}) {
		if err != nil {
			return nil, err
		}
		if w.Name == workflow {
			full, _, err := r.c.Workflows.Get(ctx, w.ID.String())
			return full, err
		}
	}
	return nil, resolveError(workflow, "n8n has no workflow with this id or name", true)
}

func (r *APIResolver) endpoint(workflow string, w *n8napi.Workflow) (*invocation.Target, error) {
	var settings struct {
		SaveSuccess string `json:"saveDataSuccessExecution"`
	}
	if len(w.Settings) > 0 && json.Unmarshal(w.Settings, &settings) == nil && settings.SaveSuccess == "none" && r.OnWarning != nil {
		r.OnWarning(workflow, fmt.Sprintf("workflow %s (%q) does not save successful executions: a lost answer cannot be reconciled (it ends unresolved) and Wait cannot follow it", w.ID, w.Name))
	}
	if !w.Active {
		return nil, resolveError(workflow, fmt.Sprintf("workflow %s (%q) is not active: activate it in n8n to run it by webhook", w.ID, w.Name), false)
	}
	var hooks []n8napi.Node
	for _, n := range w.LiveNodes() {
		if n.Type == n8napi.WebhookNodeType && !n.Disabled {
			hooks = append(hooks, n)
		}
	}
	switch len(hooks) {
	case 0:
		return nil, resolveError(workflow, fmt.Sprintf("workflow %s (%q) has no Webhook trigger node in its active version", w.ID, w.Name), false)
	case 1:
	default:
		return nil, resolveError(workflow, fmt.Sprintf("workflow %s (%q) has %d Webhook nodes; give each an alias in the configuration", w.ID, w.Name, len(hooks)), false)
	}
	n := hooks[0]
	str := func(k, def string) string {
		if v, ok := n.Parameters[k].(string); ok && v != "" {
			return v
		}
		return def
	}
	path := strings.Trim(str("path", ""), "/")
	if path == "" {
		path = n.WebhookID
	}
	// Paths with parameters are served under the node's webhookId
	// (invocation.FillPath).
	ep := &invocation.Target{
		Workflow:     workflow,
		WorkflowID:   w.ID.String(),
		Path:         path,
		WebhookID:    n.WebhookID,
		Method:       strings.ToUpper(str("httpMethod", "GET")),
		ResponseMode: str("responseMode", invocation.ResponseModeOnReceived),
		ResponseData: str("responseData", ""),
		Auth:         invocation.Auth{Type: invocation.AuthNone},
	}
	switch auth := str("authentication", "none"); auth {
	case "none":
	case "headerAuth", "basicAuth":
		credType := map[string]string{"headerAuth": "httpHeaderAuth", "basicAuth": "httpBasicAuth"}[auth]
		ref := n.Credentials[credType]
		a, ok := r.creds[ref.Name]
		if !ok {
			return nil, resolveError(workflow, fmt.Sprintf(
				"its webhook uses %s with the n8n credential %q; give its secret under credentials.%q in the configuration (n8n's API never returns secrets)",
				auth, ref.Name, ref.Name), false)
		}
		ep.Auth = a
	default:
		return nil, resolveError(workflow, fmt.Sprintf("its webhook uses %s authentication, which n8n-invoker does not support yet", auth), false)
	}
	if strings.ContainsAny(path, "?#") {
		return nil, resolveError(workflow, fmt.Sprintf("webhook path %q is not usable", url.PathEscape(path)), false)
	}
	return ep, nil
}

// IDForPath returns the id of the active workflow whose webhook serves
// method and path (as configured for an alias), scanning the workflows
// once and caching the answer.
func (r *APIResolver) IDForPath(ctx context.Context, method, path string) (string, error) {
	key := "path:" + method + " " + path
	r.mu.Lock()
	if c, ok := r.cache[key]; ok && time.Now().Before(c.expires) {
		r.mu.Unlock()
		return c.id, nil
	}
	r.mu.Unlock()
	v, err, _ := r.group.Do(key, func() (any, error) {
		r.mu.Lock()
		r.lookups++
		r.mu.Unlock()
		active := true
		for w, err := range r.c.Workflows.All(ctx, &n8napi.WorkflowListOptions{Active: &active}) {
			if err != nil {
				return "", err
			}
			for _, n := range w.LiveNodes() {
				p, _ := n.Parameters["path"].(string)
				m, _ := n.Parameters["httpMethod"].(string)
				if m == "" {
					m = "GET"
				}
				if n.Type == n8napi.WebhookNodeType && strings.Trim(p, "/") == path && strings.EqualFold(m, method) {
					r.mu.Lock()
					r.cache[key] = cached{ep: &invocation.Target{}, id: w.ID.String(), expires: time.Now().Add(r.ttl)}
					r.mu.Unlock()
					return w.ID.String(), nil
				}
			}
		}
		return "", resolveError(path, fmt.Sprintf("no active workflow serves %s %s", method, path), true)
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}
