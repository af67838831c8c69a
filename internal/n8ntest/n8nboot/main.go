// Command n8nboot prepares a freshly started n8n for n8n-invoker's tests
// and demo: it waits for readiness, creates the owner and a public API key
// (headlessly, through n8n's REST endpoints), creates the fixture
// credentials, loads and activates the fixture workflows, waits until
// their webhooks are registered and writes an env file. It is run by
// scripts/n8n start and is idempotent: state kept next to the data dir is
// reused while it still works.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

type state struct {
	Email       string            `json:"email"`
	Password    string            `json:"password"`
	APIKey      string            `json:"api_key"`
	Credentials map[string]string `json:"credentials"` // type -> id
	HeaderName  string            `json:"header_name"`
	HeaderValue string            `json:"header_value"`
	BasicUser   string            `json:"basic_user"`
	BasicPass   string            `json:"basic_password"`
	JWTSecret   string            `json:"jwt_secret"`
	HMACSecret  string            `json:"hmac_secret"`
	// MCPToken is the MCP server's token, kept from the first
	// GET /rest/mcp/api-key (later calls return it redacted).
	MCPToken string `json:"mcp_token,omitempty"`
}

type boot struct {
	base   string
	client *http.Client
	st     *state
	file   string
	pid    int
	mcp    bool
	login  bool // the session cookie is set
}

func main() {
	base := flag.String("base-url", "", "n8n base URL")
	dir := flag.String("state", "", "state directory")
	wfDir := flag.String("workflows", "", "directory of fixture workflow JSON files")
	envFile := flag.String("env", "", "env file to write")
	pid := flag.Int("pid", 0, "n8n's process id, to fail fast if it dies")
	timeout := flag.Duration("timeout", 4*time.Minute, "overall timeout")
	mcp := flag.Bool("mcp", false, "mark the fixtures available in MCP and keep the MCP server's token")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, *base, *dir, *wfDir, *envFile, *pid, *mcp); err != nil {
		fmt.Fprintln(os.Stderr, "n8nboot:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, base, dir, wfDir, envFile string, pid int, mcp bool) error {
	jar, _ := cookiejar.New(nil)
	b := &boot{base: strings.TrimSuffix(base, "/"), client: &http.Client{Jar: jar, Timeout: 30 * time.Second},
		st: &state{}, file: filepath.Join(dir, "bootstrap.json"), pid: pid, mcp: mcp}
	if data, err := os.ReadFile(b.file); err == nil {
		if err := json.Unmarshal(data, b.st); err != nil {
			return fmt.Errorf("%s: %w", b.file, err)
		}
	}
	start := time.Now()
	if err := b.waitReady(ctx); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "n8nboot: n8n ready after %s\n", time.Since(start).Round(100*time.Millisecond))
	if err := b.ensureAPIKey(ctx); err != nil {
		return err
	}
	if err := b.ensureCredentials(ctx); err != nil {
		return err
	}
	hooks, err := b.loadWorkflows(ctx, wfDir)
	if err != nil {
		return err
	}
	if err := b.waitWebhooks(ctx, hooks); err != nil {
		return err
	}
	if mcp {
		if err := b.ensureMCPToken(ctx); err != nil {
			return err
		}
	}
	env := fmt.Sprintf("N8N_BASE_URL=%s\nN8N_API_KEY=%s\nN8N_PID=%d\nN8N_INVOKER_HEADER_AUTH_NAME=%s\nN8N_INVOKER_HEADER_AUTH_VALUE=%s\nN8N_INVOKER_BASIC_USER=%s\nN8N_INVOKER_BASIC_PASSWORD=%s\nN8N_INVOKER_JWT_SECRET=%s\nN8N_INVOKER_HMAC_SECRET=%s\n",
		b.base, b.st.APIKey, pid, b.st.HeaderName, b.st.HeaderValue, b.st.BasicUser, b.st.BasicPass, b.st.JWTSecret, b.st.HMACSecret)
	if mcp {
		env += "N8N_MCP_TOKEN=" + b.st.MCPToken + "\n"
	}
	return writeFile(envFile, []byte(env))
}

func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (b *boot) save() error {
	data, _ := json.MarshalIndent(b.st, "", "  ")
	return writeFile(b.file, data)
}

func (b *boot) alive() error {
	if b.pid > 0 && syscall.Kill(b.pid, 0) != nil {
		return fmt.Errorf("n8n (pid %d) exited", b.pid)
	}
	return nil
}

func (b *boot) waitReady(ctx context.Context) error {
	for {
		if err := b.alive(); err != nil {
			return err
		}
		// 1.x turns ready before its routes are mounted (they answer an
		// HTML 404 until then): wait for the REST API too.
		if st, _, err := b.do(ctx, "GET", "/healthz/readiness", nil, nil); err == nil && st == 200 {
			if st, body, err := b.do(ctx, "GET", "/rest/settings", nil, nil); err == nil && st == 200 && json.Valid(body) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("n8n not ready at %s: %w", b.base, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// do sends a request and returns the status and body.
func (b *boot) do(ctx context.Context, method, path string, body any, hdr map[string]string) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.base+path, r)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, data, err
}

// api calls the public API and decodes a 2xx answer into out.
func (b *boot) api(ctx context.Context, method, path string, body, out any) error {
	return b.call(ctx, method, "/api/v1"+path, body, out, map[string]string{"X-N8N-API-KEY": b.st.APIKey})
}

// rest calls the editor's REST API with the session cookie.
func (b *boot) rest(ctx context.Context, method, path string, body, out any) error {
	return b.call(ctx, method, "/rest"+path, body, out, nil)
}

func (b *boot) call(ctx context.Context, method, path string, body, out any, hdr map[string]string) error {
	st, data, err := b.do(ctx, method, path, body, hdr)
	if err != nil {
		return err
	}
	if st < 200 || st > 299 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, st, truncate(data))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func truncate(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (b *boot) ensureAPIKey(ctx context.Context) error {
	if b.st.APIKey != "" {
		// A restarting n8n refuses a valid key for a moment: keep asking
		// before making a new key (which would leave clients of the old
		// one, such as a test's manager, refused).
		for range 40 {
			st, _, err := b.do(ctx, "GET", "/api/v1/workflows?limit=1", nil, map[string]string{"X-N8N-API-KEY": b.st.APIKey})
			if err == nil && st == 200 {
				return nil
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	if b.st.Email == "" {
		b.st.Email = "owner@n8n-invoker.test"
		b.st.Password = "Inv0ker-" + randHex(12)
		err := b.rest(ctx, "POST", "/owner/setup", map[string]string{
			"email": b.st.Email, "firstName": "Invoker", "lastName": "Tests", "password": b.st.Password,
		}, nil)
		if err != nil {
			return fmt.Errorf("creating the owner (if this data dir already has one, remove the state dir): %w", err)
		}
		if err := b.save(); err != nil {
			return err
		}
	} else if err := b.logIn(ctx); err != nil {
		return err
	}
	var scopes struct {
		Data []string `json:"data"`
	}
	if err := b.rest(ctx, "GET", "/api-keys/scopes", nil, &scopes); err != nil {
		return err
	}
	var key struct {
		Data struct {
			RawAPIKey string `json:"rawApiKey"`
		} `json:"data"`
	}
	if err := b.rest(ctx, "POST", "/api-keys", map[string]any{
		"label": "n8n-invoker " + randHex(4), "scopes": scopes.Data, "expiresAt": nil,
	}, &key); err != nil {
		return err
	}
	if key.Data.RawAPIKey == "" {
		return errors.New("n8n returned no API key")
	}
	b.st.APIKey = key.Data.RawAPIKey
	return b.save()
}

// logIn opens the owner's session (n8n allows 5 logins a minute).
func (b *boot) logIn(ctx context.Context) error {
	if b.login {
		return nil
	}
	if err := b.rest(ctx, "POST", "/login", map[string]string{
		"emailOrLdapLoginId": b.st.Email, "password": b.st.Password,
	}, nil); err != nil {
		return fmt.Errorf("logging in as the owner: %w", err)
	}
	b.login = true
	return nil
}

// ensureMCPToken keeps the MCP server's token: a kept one while it works,
// else the one the first GET /rest/mcp/api-key returns in full, else a
// rotated one (the old one is then refused).
func (b *boot) ensureMCPToken(ctx context.Context) error {
	if b.st.MCPToken != "" {
		st, _, err := b.do(ctx, "POST", "/mcp-server/http", map[string]any{"jsonrpc": "2.0", "id": 1, "method": "ping"},
			map[string]string{"Authorization": "Bearer " + b.st.MCPToken, "Accept": "application/json, text/event-stream"})
		if err == nil && st == 200 {
			return nil
		}
	}
	if err := b.logIn(ctx); err != nil {
		return err
	}
	var key struct {
		Data struct {
			APIKey string `json:"apiKey"`
		} `json:"data"`
	}
	if err := b.rest(ctx, "GET", "/mcp/api-key", nil, &key); err != nil {
		return fmt.Errorf("MCP token: %w", err)
	}
	if strings.HasPrefix(key.Data.APIKey, "*") || key.Data.APIKey == "" {
		if err := b.rest(ctx, "POST", "/mcp/api-key/rotate", nil, &key); err != nil {
			return fmt.Errorf("rotating the MCP token: %w", err)
		}
	}
	if key.Data.APIKey == "" || strings.HasPrefix(key.Data.APIKey, "*") {
		return errors.New("n8n returned no MCP token")
	}
	b.st.MCPToken = key.Data.APIKey
	return b.save()
}

func (b *boot) ensureCredentials(ctx context.Context) error {
	if b.st.Credentials == nil {
		b.st.Credentials = map[string]string{}
	}
	if b.st.HeaderValue == "" {
		b.st.HeaderName, b.st.HeaderValue = "X-Invoker-Token", randHex(16)
		b.st.BasicUser, b.st.BasicPass = "invoker", randHex(16)
	}
	if b.st.JWTSecret == "" {
		b.st.JWTSecret, b.st.HMACSecret = randHex(24), randHex(24)
	}
	creds := map[string]map[string]string{
		"httpHeaderAuth": {"name": b.st.HeaderName, "value": b.st.HeaderValue},
		"httpBasicAuth":  {"user": b.st.BasicUser, "password": b.st.BasicPass},
		"jwtAuth":        {"keyType": "passphrase", "secret": b.st.JWTSecret, "algorithm": "HS256"},
	}
	for typ, data := range creds {
		if b.st.Credentials[typ] != "" {
			continue
		}
		var out struct {
			ID string `json:"id"`
		}
		err := b.api(ctx, "POST", "/credentials", map[string]any{"name": "n8n-invoker " + typ, "type": typ, "data": data}, &out)
		if err != nil && typ == "jwtAuth" && strings.Contains(err.Error(), "privateKey") {
			// 1.x's schema wants the PEM fields even for a passphrase key.
			data["privateKey"], data["publicKey"] = "", ""
			err = b.api(ctx, "POST", "/credentials", map[string]any{"name": "n8n-invoker " + typ, "type": typ, "data": data}, &out)
		}
		if err != nil {
			return err
		}
		b.st.Credentials[typ] = out.ID
		if err := b.save(); err != nil {
			return err
		}
	}
	return nil
}

type webhookRef struct {
	name, method, path string
}

func (b *boot) loadWorkflows(ctx context.Context, dir string) ([]webhookRef, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no fixture workflows in %s", dir)
	}
	sort.Strings(files)
	existing := map[string]string{}
	for cursor := ""; ; {
		var page struct {
			Data []struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"data"`
			NextCursor *string `json:"nextCursor"`
		}
		q := "/workflows?limit=250"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		if err := b.api(ctx, "GET", q, nil, &page); err != nil {
			return nil, err
		}
		for _, w := range page.Data {
			existing[w.Name] = w.ID
		}
		if page.NextCursor == nil || *page.NextCursor == "" {
			break
		}
		cursor = *page.NextCursor
	}
	var hooks []webhookRef
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for typ, id := range b.st.Credentials {
			data = bytes.ReplaceAll(data, []byte(`"@cred:`+typ+`"`), []byte(`"`+id+`"`))
		}
		data = bytes.ReplaceAll(data, []byte(`@secret:hmac`), []byte(b.st.HMACSecret))
		var wf struct {
			Name        string            `json:"name"`
			Nodes       []json.RawMessage `json:"nodes"`
			Connections json.RawMessage   `json:"connections"`
			Settings    json.RawMessage   `json:"settings"`
		}
		if err := json.Unmarshal(data, &wf); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, n := range wf.Nodes {
			var node struct {
				Type       string `json:"type"`
				WebhookID  string `json:"webhookId"`
				Parameters struct {
					HTTPMethod string `json:"httpMethod"`
					Path       string `json:"path"`
				} `json:"parameters"`
			}
			_ = json.Unmarshal(n, &node)
			if node.Type == "n8n-nodes-base.webhook" {
				path := node.Parameters.Path
				if strings.Contains(path, ":") { // served under the webhook id, parameters filled
					segs := strings.Split(path, "/")
					for i, s := range segs {
						if strings.HasPrefix(s, ":") {
							segs[i] = "probe"
						}
					}
					path = node.WebhookID + "/" + strings.Join(segs, "/")
				}
				hooks = append(hooks, webhookRef{wf.Name, node.Parameters.HTTPMethod, path})
			}
		}
		settings := wf.Settings
		if b.mcp { // every fixture may be run through the MCP server
			m := map[string]any{}
			_ = json.Unmarshal(wf.Settings, &m)
			m["availableInMCP"] = true
			settings, _ = json.Marshal(m)
		}
		body := map[string]any{"name": wf.Name, "nodes": wf.Nodes, "connections": wf.Connections, "settings": settings}
		var out struct {
			ID string `json:"id"`
		}
		if id, ok := existing[wf.Name]; ok {
			if err := b.api(ctx, "PUT", "/workflows/"+id, body, &out); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
		} else if err := b.api(ctx, "POST", "/workflows", body, &out); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		// Activate after every PUT too: in n8n 2.x the live webhook comes
		// from the active version.
		if err := b.api(ctx, "POST", "/workflows/"+out.ID+"/activate", nil, nil); err != nil {
			return nil, fmt.Errorf("%s: activating: %w", f, err)
		}
	}
	return hooks, nil
}

// waitWebhooks polls each webhook with a method it does not accept: n8n
// answers 404 "The requested webhook ... is not registered" until the
// path is live, then 404 "This webhook is not registered for <method>
// requests. Did you mean ...". No workflow runs.
func (b *boot) waitWebhooks(ctx context.Context, hooks []webhookRef) error {
	for _, h := range hooks {
		probe := "PATCH"
		if h.method == "PATCH" {
			probe = "PUT"
		}
		for {
			if err := b.alive(); err != nil {
				return err
			}
			st, body, err := b.do(ctx, probe, "/webhook/"+h.path, nil, nil)
			if err == nil && !(st == 404 && bytes.Contains(body, []byte("requested webhook"))) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("webhook of %q (%s) never registered: last answer %d %s", h.name, h.path, st, truncate(body))
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}
