package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"

	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// A token's workflow allow-list (Principal.Workflows) is checked against
// the resolved workflow, not the name a request used, so that an alias,
// the n8n id and the n8n name of one workflow get the same answer:
//
//   - the name is resolved to its n8n workflow id the way the invoker
//     resolves it (Manager.WorkflowID: an alias's configured id, the
//     workflow whose webhook serves the alias's path, or an n8n id or
//     name looked up through n8n's API);
//   - the workflow is allowed when a pattern matches that id, or matches
//     a configured alias that resolves to the same id.
//
// n8n's display names are resolved but never matched: anyone who may
// edit workflows in n8n can rename one, so a pattern matching names would
// let an n8n editor move a workflow into a token's list. The aliases
// (this service's configuration) and the ids (fixed by n8n) cannot be
// changed from n8n. An alias whose id cannot be found (no n8n.api_key,
// or n8n's API not answering) is the workflow of its webhook: it is
// allowed when a pattern matches an alias with the same webhook (method
// and path). A name that resolves to no workflow is refused (403, as
// any workflow outside the list: a restricted token learns nothing of
// the others); a name that cannot be resolved now (n8n's API not
// answering) and is not allowed by an alias is answered 503
// workflow_unresolved.

// allWorkflows reports whether p may act on every workflow.
func (p *Principal) allWorkflows() bool {
	return p.Workflows == nil || slices.Contains(p.Workflows, "*")
}

// matches reports whether one of p's patterns matches name.
func (p *Principal) matches(name string) bool {
	for _, pat := range p.Workflows {
		if ok, _ := path.Match(pat, name); ok || pat == "*" {
			return true
		}
	}
	return false
}

// errUnresolved wraps a resolution that failed for a reason that may
// pass (n8n's API not answering).
var errUnresolved = errors.New("the workflow could not be resolved to check the token's workflow list")

// allowed reports whether p may act on workflow (a name as a request or
// a stored invocation carries it: an alias, an n8n id or name); an error
// wraps errUnresolved.
func (s *Server) allowed(ctx context.Context, p *Principal, workflow string) (bool, error) {
	if p.allWorkflows() {
		return true, nil
	}
	m := s.o.Manager
	aliases := m.Config().Workflows
	id, err := m.WorkflowID(ctx, workflow)
	if err == nil && id != "" {
		if p.matches(id) {
			return true, nil
		}
		for _, a := range sortedAliases(aliases) {
			if !p.matches(a) {
				continue
			}
			aid := aliases[a].ID
			if aid == "" {
				if aid, err = m.WorkflowID(ctx, a); err != nil {
					continue // not this one, as far as can be told
				}
			}
			if aid == id {
				return true, nil
			}
		}
		return false, nil
	}
	if w, ok := aliases[workflow]; ok {
		key := webhookKey(w)
		for _, a := range sortedAliases(aliases) {
			if p.matches(a) && webhookKey(aliases[a]) == key {
				return true, nil
			}
		}
	}
	if m.API() == nil || errors.Is(err, invocation.ErrUnknownWorkflow) || errors.Is(err, invocation.ErrPermanent) {
		return false, nil
	}
	// n8n's API did not answer: the id, which a pattern may match, is
	// unknown for now.
	return false, fmt.Errorf("%w: %v", errUnresolved, err)
}

func sortedAliases(ws map[string]config.Workflow) []string {
	out := make([]string, 0, len(ws))
	for k := range ws {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// webhookKey is what identifies an alias's workflow without its id: the
// n8n id for the MCP transport, else the webhook's method and path.
func webhookKey(w config.Workflow) string {
	if w.Transport == "mcp" {
		return "id " + w.ID
	}
	method := strings.ToUpper(w.Method)
	if method == "" {
		method = http.MethodPost
	}
	return method + " " + strings.Trim(w.Path, "/")
}

// mayAct answers a refusal when p may not act on workflow; false when it
// answered.
func (s *Server) mayAct(w http.ResponseWriter, r *http.Request, p *Principal, workflow string) bool {
	ok, err := s.allowed(r.Context(), p, workflow)
	switch {
	case err != nil:
		s.log.Warn("server: a token's workflow list could not be checked", "token", p.Name, "workflow", workflow, "err", err)
		writeError(w, http.StatusServiceUnavailable, "workflow_unresolved", err.Error()+"; nothing was done, try again")
		return false
	case !ok:
		s.log.Info("server: workflow not allowed", "token", p.Name, "workflow", workflow, "path", r.URL.Path)
		writeError(w, http.StatusForbidden, "workflow_not_allowed", fmt.Sprintf("token %q may not act on workflow %q (not in its workflow list)", p.Name, workflow))
		return false
	}
	return true
}

// visible keeps the items of list whose workflow p may see, at most
// limit of them (a workflow that cannot be resolved now is left out).
func visible[T any](ctx context.Context, s *Server, p *Principal, list []T, workflow func(T) string, limit int) []T {
	if list == nil {
		return []T{}
	}
	if p.allWorkflows() {
		return list[:min(len(list), limit)]
	}
	seen := map[string]bool{}
	out := make([]T, 0, min(len(list), limit))
	for _, it := range list {
		if len(out) == limit {
			break
		}
		wf := workflow(it)
		ok, known := seen[wf]
		if !known {
			ok, _ = s.allowed(ctx, p, wf)
			seen[wf] = ok
		}
		if ok {
			out = append(out, it)
		}
	}
	return out
}

// scanLimit is how many items a list reads for a token with a workflow
// list before it filters them (the API's largest limit).
const scanLimit = 1000

// listLimit is the limit a list asks the store for: limit, or scanLimit
// for a token with a workflow list (whose items are filtered after).
func listLimit(p *Principal, limit int) int {
	if p.allWorkflows() {
		return limit
	}
	return max(limit, scanLimit)
}
