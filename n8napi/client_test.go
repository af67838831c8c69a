package n8napi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// setup returns a client bound to a test server behind a non-empty base
// path, as go-github's tests do.
func setup(t *testing.T) (*Client, *http.ServeMux) {
	t.Helper()
	mux := http.NewServeMux()
	api := http.NewServeMux()
	api.Handle("/n8n/api/v1/", http.StripPrefix("/n8n/api/v1", mux))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(HeaderAPIKey) != "test-key" {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"message":"Unauthorized"}`)
			return
		}
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL+"/n8n/", secret.New("test-key"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, mux
}

func TestIDAcceptsStringsAndNumbers(t *testing.T) {
	t.Parallel()
	var e Execution
	if err := json.Unmarshal([]byte(`{"id":"12","workflowId":"abc","retryOf":7,"retrySuccessId":null,"status":"success","extra":{"x":1}}`), &e); err != nil {
		t.Fatal(err)
	}
	if e.ID != "12" || e.RetryOf != "7" || e.RetrySuccessID != "" || !e.Terminal() {
		t.Errorf("%+v", e)
	}
}

func TestPagingIterator(t *testing.T) {
	t.Parallel()
	c, mux := setup(t)
	mux.HandleFunc("GET /executions", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("workflowId") != "wf1" || r.URL.Query().Get("includeData") != "true" {
			t.Errorf("query %s", r.URL.RawQuery)
		}
		switch r.URL.Query().Get("cursor") {
		case "":
			fmt.Fprint(w, `{"data":[{"id":"3","status":"success"},{"id":"2","status":"error"}],"nextCursor":"c2"}`)
		case "c2":
			fmt.Fprint(w, `{"data":[{"id":1,"status":"crashed"}],"nextCursor":null}`)
		}
	})
	var ids []string
	for e, err := range c.Executions.All(context.Background(), &ExecutionListOptions{WorkflowID: "wf1", IncludeData: true}) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID.String())
	}
	if strings.Join(ids, ",") != "3,2,1" {
		t.Errorf("ids %v", ids)
	}
}

func TestAPIErrors(t *testing.T) {
	t.Parallel()
	c, mux := setup(t)
	mux.HandleFunc("GET /workflows/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(404)
		fmt.Fprint(w, `{"message":"Not Found"}`)
	})
	_, _, err := c.Workflows.Get(context.Background(), "nope")
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 404 || ae.Message != "Not Found" || !IsNotFound(err) || ae.Class() != invocation.Permanent {
		t.Errorf("err %v", err)
	}
	bad, _ := NewClient(strings.TrimSuffix(c.base.String(), "api/v1/"), secret.New("wrong"))
	defer bad.Close()
	_, _, err = bad.Workflows.Get(context.Background(), "x")
	if !errors.As(err, &ae) || ae.StatusCode != 401 || strings.Contains(err.Error(), "wrong") {
		t.Errorf("bad key: %v", err)
	}
	if _, err := NewClient("http://x", secret.Secret{}); err == nil {
		t.Error("a client without key")
	}
}
