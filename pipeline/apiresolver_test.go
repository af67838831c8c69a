package pipeline

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// setupAPI returns an n8n API client bound to a test server behind a
// non-empty base path, and the mux of its /api/v1.
func setupAPI(t *testing.T) (*n8napi.Client, *http.ServeMux) {
	t.Helper()
	mux := http.NewServeMux()
	api := http.NewServeMux()
	api.Handle("/n8n/api/v1/", http.StripPrefix("/n8n/api/v1", mux))
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	c, err := n8napi.NewClient(srv.URL+"/n8n", secret.New("test-key"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, mux
}

func TestAPIResolverFindsTheWebhook(t *testing.T) {
	t.Parallel()
	c, mux := setupAPI(t)
	calls := 0
	wf := func(active bool, nodes string) string {
		return fmt.Sprintf(`{"id":"W1","name":"Onboarding","active":%v,"nodes":[],"activeVersion":{"nodes":%s}}`, active, nodes)
	}
	answers := map[string]string{
		"W1": wf(true, `[{"name":"Webhook","type":"n8n-nodes-base.webhook","webhookId":"uuid-1","parameters":{"path":"onboard","httpMethod":"POST","responseMode":"responseNode","authentication":"headerAuth"},"credentials":{"httpHeaderAuth":{"id":"c1","name":"Onboarding token"}}}]`),
		"W2": wf(false, `[]`),
		"W3": wf(true, `[{"name":"Cron","type":"n8n-nodes-base.scheduleTrigger","parameters":{}}]`),
		"W4": wf(true, `[{"name":"Webhook","type":"n8n-nodes-base.webhook","webhookId":"uuid-4","parameters":{"path":"orders/:id"}}]`),
	}
	mux.HandleFunc("GET /workflows/{id}", func(w http.ResponseWriter, r *http.Request) {
		calls++
		if a, ok := answers[r.PathValue("id")]; ok {
			fmt.Fprint(w, a)
			return
		}
		w.WriteHeader(404)
		fmt.Fprint(w, `{"message":"Not Found"}`)
	})
	mux.HandleFunc("GET /workflows", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"data":[],"nextCursor":null}`)
	})
	creds := map[string]invocation.Auth{"Onboarding token": {Type: invocation.AuthHeader, Name: "X-T", Value: secret.New("s")}}
	r := NewAPIResolver(c, 0, creds)
	ctx := context.Background()
	ep, err := r.Resolve(ctx, "W1")
	if err != nil || ep.Path != "onboard" || ep.Method != "POST" || ep.ResponseMode != "responseNode" || ep.Auth.Name != "X-T" || ep.WorkflowID != "W1" {
		t.Fatalf("W1: %+v %v", ep, err)
	}
	for range 5 {
		_, _ = r.Resolve(ctx, "W1")
	}
	if calls != 1 || r.Lookups() != 1 {
		t.Errorf("%d API calls for 6 resolutions of a cached workflow", calls)
	}
	r.Invalidate("W1")
	_, _ = r.Resolve(ctx, "W1")
	if calls != 2 {
		t.Errorf("invalidation did not force a lookup")
	}
	ep, err = r.Resolve(ctx, "W4")
	if err != nil || ep.Path != "orders/:id" || ep.WebhookID != "uuid-4" || ep.Method != "GET" || ep.ResponseMode != "onReceived" {
		t.Errorf("W4: %+v %v", ep, err)
	}
	for id, want := range map[string]string{"W2": "not active", "W3": "no Webhook trigger", "missing": "no workflow with this id"} {
		_, err := r.Resolve(ctx, id)
		if c := invocation.CodeOf(err); (c != invocation.CodeBadRequest && c != invocation.CodeUnknownWorkflow) || !strings.Contains(err.Error(), want) || invocation.ClassOf(err) != invocation.Permanent {
			t.Errorf("%s: %v", id, err)
		}
	}
	if _, err := NewAPIResolver(c, 0, nil).Resolve(ctx, "W1"); err == nil || !strings.Contains(err.Error(), `credentials."Onboarding token"`) {
		t.Errorf("auth without secret: %v", err)
	}
}

// BenchmarkResolverWarm is the warm path of run-by-id: a cached webhook,
// no API call.
func BenchmarkAPIResolverWarm(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"id":"W1","name":"x","active":true,"nodes":[{"name":"Webhook","type":"n8n-nodes-base.webhook","parameters":{"path":"p","httpMethod":"POST"}}]}`)
	}))
	defer srv.Close()
	c, _ := n8napi.NewClient(srv.URL, secret.New("k"))
	defer c.Close()
	r := NewAPIResolver(c, 0, nil)
	ctx := context.Background()
	if _, err := r.Resolve(ctx, "W1"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Resolve(ctx, "W1"); err != nil {
			b.Fatal(err)
		}
	}
	if r.Lookups() != 1 {
		b.Fatalf("%d lookups", r.Lookups())
	}
}
