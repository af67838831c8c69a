package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"go.uber.org/goleak"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/outbox"
	"github.com/n8n-invoker/n8n-invoker/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a server over a manager whose n8n is a stub: /webhook/echo
// answers with its body, /webhook/denied with a 403 (n8n never ran it).
type env struct {
	t                     *testing.T
	srv                   *httptest.Server
	q                     outbox.Queue
	m                     *invoker.Manager
	router                routers.Router
	reader, submit, admin string
	denied                atomic.Bool
	n8nCalls              atomic.Int32
	stored                func() int
	// apiDown makes the stub n8n's API answer 500.
	apiDown atomic.Bool
	// tokFile is the server's token file, checked on every request.
	tokFile string
	// lines are the token file's lines, by token name.
	lines map[string]string
}

// envOptions vary an env.
type envOptions struct {
	// api gives the manager an n8n API key and the stub n8n's API two
	// active workflows: W1 "Echo flow" (webhook POST echo) and W2 "Denied
	// flow" (webhook POST denied); the configuration adds the alias
	// echo-by-id (id W1, path echo).
	api bool
}

func newEnv(t *testing.T) *env { return newEnvWith(t, envOptions{}) }

// stubWorkflows are the stub n8n API's workflows, by id.
var stubWorkflows = map[string]string{"W1": "Echo flow", "W2": "Denied flow"}

func stubWorkflow(id string) string {
	path := map[string]string{"W1": "echo", "W2": "denied"}[id]
	return fmt.Sprintf(`{"id":%q,"name":%q,"active":true,"nodes":[{"name":"Webhook","type":"n8n-nodes-base.webhook","webhookId":"hook-%s","parameters":{"path":%q,"httpMethod":"POST","responseMode":"lastNode"}}]}`,
		id, stubWorkflows[id], id, path)
}

// stubAPI answers the n8n API calls the resolver makes.
func stubAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	rest, _ := strings.CutPrefix(r.URL.Path, "/api/v1/")
	switch {
	case strings.HasPrefix(rest, "workflows/"):
		id := strings.TrimPrefix(rest, "workflows/")
		if _, ok := stubWorkflows[id]; !ok {
			w.WriteHeader(404)
			fmt.Fprint(w, `{"message":"Not Found"}`)
			return
		}
		fmt.Fprint(w, stubWorkflow(id))
	case rest == "workflows":
		var data []string
		for _, id := range []string{"W1", "W2"} {
			if n := r.URL.Query().Get("name"); n == "" || n == stubWorkflows[id] {
				data = append(data, stubWorkflow(id))
			}
		}
		fmt.Fprintf(w, `{"data":[%s],"nextCursor":null}`, strings.Join(data, ","))
	default:
		fmt.Fprint(w, `{"data":[],"nextCursor":null}`)
	}
}

func newEnvWith(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{t: t, lines: map[string]string{}}
	e.denied.Store(true)
	n8n := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			if e.apiDown.Load() {
				w.WriteHeader(http.StatusInternalServerError)
				fmt.Fprint(w, `{"message":"down"}`)
				return
			}
			stubAPI(w, r)
			return
		}
		e.n8nCalls.Add(1)
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/webhook/echo":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"received":%s,"executionId":"%d"}`, body, e.n8nCalls.Load())
		case "/webhook/denied":
			if e.denied.Load() {
				w.WriteHeader(http.StatusForbidden)
				fmt.Fprint(w, `Authorization data is wrong!`)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"ok":true}`)
		default:
			w.WriteHeader(404)
		}
	}))
	t.Cleanup(n8n.Close)
	dir := t.TempDir()
	apiKey, byID := "", ""
	if o.api {
		apiKey, byID = ", api_key: test-key", "\n  echo-by-id: {path: echo, id: W1}"
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`n8n: {base_url: %q, timeout: 5%s}
invokers: {http: {max_retries: 1, backoff_factor: 0.01}}
dlq: {enabled: true, on: [transient, unknown, permanent]}
store: {path: %q}
workflows:
  echo: {path: echo}
  denied: {path: denied}%s
`, n8n.URL, apiKey, filepath.Join(dir, "store.db"), byID)), "serve.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e.m, err = invoker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.q, err = outbox.Open(context.Background(), e.m, &outbox.Options{Workers: 2, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, tok := range []struct {
		name   string
		scopes []string
		dst    *string
	}{{"reader", []string{"read"}, &e.reader}, {"submitter", []string{"submit"}, &e.submit}, {"admin", []string{"read", "submit", "replay"}, &e.admin}} {
		token, line, err := server.NewToken(tok.name, tok.scopes...)
		if err != nil {
			t.Fatal(err)
		}
		*tok.dst = token
		lines = append(lines, line)
		e.lines[tok.name] = line
	}
	e.tokFile = filepath.Join(dir, "tokens")
	if err := os.WriteFile(e.tokFile, []byte("# test tokens\n"+strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := server.NewTokenFile(e.tokFile, server.WithCheckInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(server.Options{Manager: e.m, Queue: e.q, Tokens: tokens, EditorURL: "https://editor.example",
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "invoker_up 1") })})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(s)
	t.Cleanup(func() {
		e.srv.Close()
		_ = e.q.Stop(context.Background())
		_ = e.m.Close(context.Background())
	})
	doc, err := openapi3.NewLoader().LoadFromData(server.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the OpenAPI document is invalid: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: e.srv.URL}}
	if e.router, err = gorillamux.NewRouter(doc); err != nil {
		t.Fatal(err)
	}
	e.stored = func() int {
		list, err := e.q.List(context.Background(), outbox.Filter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return len(list)
	}
	return e
}

// call sends a request and checks request and answer against the
// OpenAPI document (bodies the document says are JSON must match).
func (e *env) call(method, path, token string, body any, hdr ...string) (int, []byte, http.Header) {
	e.t.Helper()
	var rd io.Reader
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	default:
		raw, _ = json.Marshal(b)
	}
	if raw != nil {
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	route, params, err := e.router.FindRoute(req)
	if err != nil {
		if resp.StatusCode != 404 {
			e.t.Errorf("%s %s is not in the OpenAPI document: %v", method, path, err)
		}
		return resp.StatusCode, out, resp.Header
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, ExcludeRequestBody: true}}
	if err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(out)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	}); err != nil && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		e.t.Errorf("answer %d to %s %s does not match the OpenAPI document: %v\n%s", resp.StatusCode, method, path, err, out)
	}
	return resp.StatusCode, out, resp.Header
}

func errCode(b []byte) string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(b, &e)
	return e.Error.Code
}

// TestBadInputStoresNothing: every refusal is a JSON error with its
// status, and nothing is stored.
func TestBadInputStoresNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	big := `{"workflow":"echo","params":{"x":"` + strings.Repeat("a", server.DefaultMaxBodyBytes) + `"}}`
	cases := []struct {
		name, method, path, token string
		body                      any
		status                    int
		code                      string
	}{
		{"no token", "POST", "/v1/invocations", "", `{"workflow":"echo"}`, 401, "unauthorized"},
		{"wrong token", "POST", "/v1/invocations", "n8i_wrong", `{"workflow":"echo"}`, 401, "unauthorized"},
		{"read token submits", "POST", "/v1/invocations", e.reader, `{"workflow":"echo"}`, 403, "forbidden"},
		{"malformed JSON", "POST", "/v1/invocations", e.submit, `{"workflow":`, 400, "malformed"},
		{"empty body", "POST", "/v1/invocations", e.submit, "", 400, "malformed"},
		{"unknown field", "POST", "/v1/invocations", e.submit, `{"workflow":"echo","speed":"fast"}`, 400, "malformed"},
		{"no workflow", "POST", "/v1/invocations", e.submit, `{"params":{}}`, 400, "invalid"},
		{"params not an object", "POST", "/v1/invocations", e.submit, `{"workflow":"echo","params":[1]}`, 400, "invalid"},
		{"bad timeout", "POST", "/v1/invocations", e.submit, `{"workflow":"echo","wait":true,"timeout":"soon"}`, 400, "invalid"},
		{"unknown workflow", "POST", "/v1/invocations", e.submit, `{"workflow":"nope"}`, 404, "unknown_workflow"},
		{"oversized", "POST", "/v1/invocations", e.submit, big, 413, "too_large"},
		{"submit token reads", "GET", "/v1/invocations", e.submit, nil, 403, "forbidden"},
		{"bad status filter", "GET", "/v1/invocations?status=lost", e.reader, nil, 400, "invalid"},
		{"bad limit", "GET", "/v1/invocations?limit=0", e.reader, nil, 400, "invalid"},
		{"unknown invocation", "GET", "/v1/invocations/nope", e.reader, nil, 404, "not_found"},
		{"await unknown", "GET", "/v1/invocations/nope/await", e.reader, nil, 404, "not_found"},
		{"bad dead letter id", "GET", "/v1/dead-letters/x", e.reader, nil, 400, "invalid"},
		{"unknown dead letter", "GET", "/v1/dead-letters/999", e.reader, nil, 404, "not_found"},
		{"bad class filter", "GET", "/v1/dead-letters?class=fatal", e.reader, nil, 400, "invalid"},
		{"read token replays", "POST", "/v1/dead-letters/1/replay", e.reader, nil, 403, "forbidden"},
		{"replay unknown", "POST", "/v1/dead-letters/999/replay", e.admin, nil, 404, "not_found"},
		{"replay malformed", "POST", "/v1/dead-letters/1/replay", e.admin, `{"again":true}`, 400, "malformed"},
		{"purge unknown", "DELETE", "/v1/dead-letters/999", e.admin, nil, 404, "not_found"},
		{"read token purges", "DELETE", "/v1/dead-letters/1", e.reader, nil, 403, "forbidden"},
		{"unknown endpoint", "GET", "/v1/nothing", e.admin, nil, 404, "not_found"},
		{"metrics without token", "GET", "/metrics", "", nil, 401, "unauthorized"},
	}
	for _, tc := range cases {
		status, body, hdr := e.call(tc.method, tc.path, tc.token, tc.body)
		if status != tc.status || errCode(body) != tc.code || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %s, want %d %s", tc.name, status, body[:min(len(body), 200)], tc.status, tc.code)
		}
		for _, secret := range []string{e.reader, e.submit, e.admin} {
			if bytes.Contains(body, []byte(secret)) {
				t.Errorf("%s: the answer holds a token", tc.name)
			}
		}
	}
	if n := e.stored(); n != 0 {
		t.Errorf("%d invocations stored by refused requests", n)
	}
	if n := e.n8nCalls.Load(); n != 0 {
		t.Errorf("%d calls reached n8n", n)
	}
}

// TestSubmitGetAwaitList: a submission is acknowledged with 202 once
// stored and delivered once; the same key and body answer 200 with the
// same invocation, another body 409; wait, await and SSE see its end.
func TestSubmitGetAwaitList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	status, body, hdr := e.call("POST", "/v1/invocations", e.submit, map[string]any{"workflow": "echo", "params": map[string]any{"n": 1}, "idempotency_key": "k1"})
	var inv outbox.Invocation
	if err := json.Unmarshal(body, &inv); status != 202 || err != nil || inv.ID == "" || hdr.Get("Location") != "/v1/invocations/"+inv.ID {
		t.Fatalf("submit: %d %s", status, body)
	}
	status, body, _ = e.call("POST", "/v1/invocations", e.submit, map[string]any{"workflow": "echo", "params": map[string]any{"n": 1}, "idempotency_key": "k1"})
	var again outbox.Invocation
	if _ = json.Unmarshal(body, &again); status != 200 || again.ID != inv.ID {
		t.Errorf("same key, same body: %d %s", status, body)
	}
	status, body, _ = e.call("POST", "/v1/invocations", e.submit, map[string]any{"workflow": "echo", "params": map[string]any{"n": 2}, "idempotency_key": "k1"})
	if status != 409 || errCode(body) != "key_conflict" {
		t.Errorf("same key, other body: %d %s", status, body)
	}
	status, body, _ = e.call("GET", "/v1/invocations/"+inv.ID+"/await?timeout=10s", e.reader, nil)
	var done outbox.Invocation
	if _ = json.Unmarshal(body, &done); status != 200 || done.Status != outbox.Succeeded || done.Result == nil {
		t.Fatalf("await: %d %s", status, body)
	}
	status, body, _ = e.call("GET", "/v1/invocations/"+inv.ID, e.reader, nil)
	if status != 200 || !bytes.Contains(body, []byte(`"succeeded"`)) {
		t.Errorf("get: %d %s", status, body)
	}
	status, body, hdr = e.call("GET", "/v1/invocations/"+inv.ID+"/await", e.reader, nil, "Accept", "text/event-stream")
	if status != 200 || hdr.Get("Content-Type") != "text/event-stream" || !bytes.HasPrefix(body, []byte("event: done\ndata: {")) {
		t.Errorf("SSE: %d %q", status, body)
	}
	status, body, _ = e.call("POST", "/v1/invocations", e.submit, map[string]any{"workflow": "echo", "params": map[string]any{"n": 3}, "wait": true, "timeout": "10s"})
	if _ = json.Unmarshal(body, &done); status != 200 || done.Status != outbox.Succeeded {
		t.Errorf("submit and wait: %d %s", status, body)
	}
	status, body, _ = e.call("GET", "/v1/invocations?status=succeeded&workflow=echo&limit=10", e.reader, nil)
	var list struct{ Invocations []outbox.Invocation }
	if _ = json.Unmarshal(body, &list); status != 200 || len(list.Invocations) != 2 {
		t.Errorf("list: %d %s", status, body)
	}
	if n := e.n8nCalls.Load(); n != 2 {
		t.Errorf("n8n called %d times for 2 invocations", n)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if status, body, _ := e.call("GET", p, "", nil); status != 200 {
			t.Errorf("%s: %d %s", p, status, body)
		}
	}
	if status, body, _ := e.call("GET", "/metrics", e.reader, nil); status != 200 || !bytes.Contains(body, []byte("invoker_up")) {
		t.Errorf("metrics: %d %s", status, body)
	}
	if status, body, _ := e.call("GET", "/v1/breakers", e.reader, nil); status != 200 || !bytes.Contains(body, []byte(`"closed"`)) {
		t.Errorf("breakers: %d %s", status, body)
	}
	if status, _, _ := e.call("GET", "/v1/openapi.yaml", "", nil); status != 200 {
		t.Errorf("openapi: %d", status)
	}
}

// TestDeadLetterReplayAndPurge: a 403 (n8n never ran it) is dead-lettered;
// replay fails while the cause stays, succeeds once it is fixed and the
// entry leaves the queue; purge deletes another.
func TestDeadLetterReplayAndPurge(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := range 2 {
		status, body, _ := e.call("POST", "/v1/invocations", e.submit, map[string]any{"workflow": "denied", "params": map[string]any{"i": i}, "wait": true, "timeout": "10s"})
		if status != 200 || !bytes.Contains(body, []byte(`"dead_lettered"`)) {
			t.Fatalf("denied %d: %d %s", i, status, body)
		}
	}
	status, body, _ := e.call("GET", "/v1/dead-letters?workflow=denied&class=permanent", e.reader, nil)
	var list struct {
		DeadLetters []struct {
			ID       int64 `json:"id"`
			Attempts int   `json:"attempts"`
		} `json:"dead_letters"`
	}
	if _ = json.Unmarshal(body, &list); status != 200 || len(list.DeadLetters) != 2 {
		t.Fatalf("dead letters: %d %s", status, body)
	}
	id := list.DeadLetters[0].ID
	if status, body, _ := e.call("GET", fmt.Sprintf("/v1/dead-letters/%d", id), e.reader, nil); status != 200 || !bytes.Contains(body, []byte(`"reason"`)) {
		t.Errorf("get: %d %s", status, body)
	}
	status, body, _ = e.call("POST", fmt.Sprintf("/v1/dead-letters/%d/replay", id), e.admin, nil)
	if status != 200 || !bytes.Contains(body, []byte(`"failed":1`)) {
		t.Errorf("replay before the fix: %d %s", status, body)
	}
	e.denied.Store(false) // the operator fixes the credential
	status, body, _ = e.call("POST", fmt.Sprintf("/v1/dead-letters/%d/replay", id), e.admin, map[string]any{"run_again": false})
	if status != 200 || !bytes.Contains(body, []byte(`"succeeded":1`)) {
		t.Errorf("replay after the fix: %d %s", status, body)
	}
	if status, _, _ := e.call("GET", fmt.Sprintf("/v1/dead-letters/%d", id), e.reader, nil); status != 404 {
		t.Errorf("the replayed entry is still there: %d", status)
	}
	other := list.DeadLetters[1].ID
	if status, body, _ := e.call("DELETE", fmt.Sprintf("/v1/dead-letters/%d", other), e.admin, nil); status != 204 {
		t.Errorf("purge: %d %s", status, body)
	}
	if status, _, _ := e.call("GET", fmt.Sprintf("/v1/dead-letters/%d", other), e.reader, nil); status != 404 {
		t.Errorf("the purged entry is still there: %d", status)
	}
}

// TestConsoleSecurity: login with a token gives an HttpOnly, SameSite
// cookie; pages carry a CSP; a replay without the session's CSRF token
// or from another site is refused; no token appears in a page.
func TestConsoleSecurity(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(e.srv.URL + "/console/")
	if err != nil || resp.StatusCode != 303 || resp.Header.Get("Location") != "/console/login" {
		t.Fatalf("console without session: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	resp, _ = c.PostForm(e.srv.URL+"/console/login", url.Values{"token": {"n8i_wrong"}})
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("wrong token: %d", resp.StatusCode)
	}
	resp, _ = c.PostForm(e.srv.URL+"/console/login", url.Values{"token": {e.submit}})
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("token without read scope: %d", resp.StatusCode)
	}
	resp, _ = c.PostForm(e.srv.URL+"/console/login", url.Values{"token": {e.admin}})
	resp.Body.Close()
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "n8i_session" {
			cookie = ck
		}
	}
	if resp.StatusCode != 303 || cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("login: %d %+v", resp.StatusCode, cookie)
	}
	resp, _ = c.Get(e.srv.URL + "/console/dead-letters")
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	if resp.StatusCode != 200 || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || bytes.Contains(page, []byte(e.admin)) {
		t.Errorf("page: %d, CSP %q", resp.StatusCode, csp)
	}
	for name, form := range map[string]url.Values{"no csrf": {}, "wrong csrf": {"csrf": {"x"}}} {
		resp, _ = c.PostForm(e.srv.URL+"/console/dead-letters/1/purge", form)
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("%s: %d", name, resp.StatusCode)
		}
	}
	// A cross-site form post with the right token (a forged page could
	// not know it, but the origin check stands on its own).
	csrf := between(string(page), `name="csrf" value="`, `"`)
	req, _ := http.NewRequest("POST", e.srv.URL+"/console/dead-letters/1/purge", strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, _ = c.Do(req)
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("cross-site: %d", resp.StatusCode)
	}
	resp, _ = c.PostForm(e.srv.URL+"/console/dead-letters/1/purge", url.Values{"csrf": {csrf}})
	resp.Body.Close()
	if resp.StatusCode != 303 {
		t.Errorf("same-site purge with the session's token: %d", resp.StatusCode)
	}
}

func between(s, a, b string) string {
	_, after, _ := strings.Cut(s, a)
	v, _, _ := strings.Cut(after, b)
	return v
}

func TestTokenFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h := server.HashToken("x")
	for name, content := range map[string]string{
		"plain token":          "ci n8i_abc read\n",
		"unknown scope":        "ci " + h + " write\n",
		"two fields":           "ci " + h + "\n",
		"five fields":          "ci " + h + " read workflows=a b\n",
		"fourth field unknown": "ci " + h + " read echo\n",
		"empty list":           "ci " + h + " read workflows=\n",
		"empty entry":          "ci " + h + " read workflows=a,,b\n",
		"bad pattern":          "ci " + h + " read workflows=a[\n",
		"empty":                "# nothing\n",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		_ = os.WriteFile(p, []byte(content), 0o600)
		if _, err := server.NewTokenFile(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v", name, err)
		}
	}
	tok, line, err := server.NewToken("ops", "read", "replay")
	if err != nil || !strings.HasPrefix(tok, server.TokenPrefix) || strings.Contains(line, tok) || strings.Contains(line, "workflows=") {
		t.Fatalf("NewToken: %q %v", line, err)
	}
	tokW, lineW, err := server.NewTokenFor("ci", []string{"orders", "W1", "billing-*"}, "submit")
	if err != nil || !strings.HasSuffix(lineW, " submit workflows=orders,W1,billing-*") {
		t.Fatalf("NewTokenFor: %q %v", lineW, err)
	}
	p := filepath.Join(dir, "tokens")
	_ = os.WriteFile(p, []byte(line+"  # a line as before lists existed\n"+lineW+"\n"), 0o600)
	f, err := server.NewTokenFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if pr, ok := f.Authenticate(tok); !ok || pr.Name != "ops" || !pr.Can("replay") || pr.Can("submit") || pr.Workflows != nil || pr.ID != server.HashToken(tok) {
		t.Errorf("authenticate: %+v %v", pr, ok)
	}
	if pr, ok := f.Authenticate(tokW); !ok || strings.Join(pr.Workflows, " ") != "orders W1 billing-*" {
		t.Errorf("authenticate a token with a list: %+v %v", pr, ok)
	}
	if pr, ok := f.Lookup(server.HashToken(tokW)); !ok || pr.Name != "ci" {
		t.Errorf("lookup: %+v %v", pr, ok)
	}
	for _, id := range []string{"", tok, "sha256:00", server.HashToken("other")} {
		if _, ok := f.Lookup(id); ok {
			t.Errorf("lookup %q found a token", id)
		}
	}
	// Rotation: a new file replaces the old token without a restart.
	tok2, line2, _ := server.NewToken("ops", "read")
	synctest.Test(t, func(t *testing.T) {
		f, err := server.NewTokenFile(p)
		if err != nil {
			t.Fatal(err)
		}
		_ = os.WriteFile(p, []byte(line2+"\n# rotated\n"), 0o600)
		if _, ok := f.Authenticate(tok); !ok {
			t.Error("the file was read again before the check interval passed")
		}
		time.Sleep(server.DefaultTokenCheckInterval) // the fake clock
		if _, ok := f.Authenticate(tok2); !ok {
			t.Error("the rotated token is refused")
		}
		if _, ok := f.Authenticate(tok); ok {
			t.Error("the old token still works")
		}
	})
	for _, bad := range []struct {
		name      string
		workflows []string
		scopes    []string
	}{
		{"unknown scope", nil, []string{"write"}},
		{"bad pattern", []string{"a["}, []string{"read"}},
		{"empty workflow", []string{""}, []string{"read"}},
		{"space in a workflow", []string{"Echo flow"}, []string{"read"}},
	} {
		if _, _, err := server.NewTokenFor("ops", bad.workflows, bad.scopes...); err == nil {
			t.Errorf("%s: accepted", bad.name)
		}
	}
}
