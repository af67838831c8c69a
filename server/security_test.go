package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/n8n-invoker/n8n-invoker/outbox"
	"github.com/n8n-invoker/n8n-invoker/server"
)

// writeTokens replaces the server's token file with lines.
func (e *env) writeTokens(lines ...string) {
	e.t.Helper()
	if err := os.WriteFile(e.tokFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// console is a browser logged in to the console.
type console struct {
	e    *env
	c    *http.Client
	csrf string
}

// login logs in to the console with token.
func (e *env) login(token string) *console {
	e.t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm(e.srv.URL+"/console/login", url.Values{"token": {token}})
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("login: %d", resp.StatusCode)
	}
	b := &console{e: e, c: c}
	status, page, _ := b.get("/console/dead-letters")
	if status != 200 {
		e.t.Fatalf("the console after login: %d", status)
	}
	b.csrf = between(page, `name="csrf" value="`, `"`)
	return b
}

// get fetches a console page: its status, body and redirect target.
func (b *console) get(path string) (int, string, string) {
	b.e.t.Helper()
	resp, err := b.c.Get(b.e.srv.URL + path)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header.Get("Location")
}

// post posts a console form with the session's CSRF token.
func (b *console) post(path string) (int, string) {
	b.e.t.Helper()
	resp, err := b.c.PostForm(b.e.srv.URL+path, url.Values{"csrf": {b.csrf}})
	if err != nil {
		b.e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

// TestConsoleSessionFollowsTheTokenFile: a session is re-checked
// against the current token file on every request: a removed token ends
// its sessions at once (and bringing it back does not revive them), and
// changed scopes apply at once.
func TestConsoleSessionFollowsTheTokenFile(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// admin is the admin token's line after the change ("" removes it).
		admin func(hash string) string
		// page and purge are the answers to a page and a purge after it.
		page, purge int
	}{
		{"token removed", func(string) string { return "" }, 303, 401},
		{"replay scope removed", func(h string) string { return "admin " + h + " read" }, 200, 403},
		{"read scope removed", func(h string) string { return "admin " + h + " submit,replay" }, 403, 403},
		{"renamed, same scopes", func(h string) string { return "operator " + h + " read,submit,replay" }, 200, 303},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			b := e.login(e.admin)
			e.writeTokens(e.lines["reader"], tc.admin(server.HashToken(e.admin)))
			status, _, loc := b.get("/console/")
			if status != tc.page || (status == 303 && loc != "/console/login") {
				t.Errorf("a page after the change: %d %q, want %d", status, loc, tc.page)
			}
			if status, _ := b.post("/console/dead-letters/1/purge"); status != tc.purge {
				t.Errorf("a purge after the change: %d, want %d", status, tc.purge)
			}
			if tc.purge != 401 {
				return
			}
			// The token comes back: its ended sessions stay ended.
			e.writeTokens(e.lines["reader"], e.lines["admin"])
			if status, _, _ := b.get("/console/"); status != 303 {
				t.Errorf("a session ended by the token's removal came back: %d", status)
			}
		})
	}
}

// TestConsoleShowsTheCurrentName: the page shows the token's current
// name (the session refers to the token, it keeps no copy of it).
func TestConsoleShowsTheCurrentName(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.login(e.reader)
	e.writeTokens("night-shift " + server.HashToken(e.reader) + " read")
	if status, page, _ := b.get("/console/"); status != 200 || !strings.Contains(page, "night-shift") {
		t.Errorf("page: %d, the new name shown: %v", status, strings.Contains(page, "night-shift"))
	}
}

// tokenFileCase writes a token file, lets the test change it and checks
// which tokens authenticate afterwards, with the default check interval
// on a fake clock.
func TestTokenFileReload(t *testing.T) {
	t.Parallel()
	tokA, lineA, _ := server.NewToken("ops", "read")
	tokB, lineB, _ := server.NewToken("ops", "read")
	if len(lineA) != len(lineB) {
		t.Fatal("two lines of the same name and scopes differ in size")
	}
	cases := []struct {
		name string
		// change changes the file at p after the first authentication.
		change func(t *testing.T, p string)
		// a and b say whether each token authenticates after the change.
		a, b bool
		// logged is in the log after the change.
		logged string
	}{
		{"removed: no token is valid", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}, false, false, "level=ERROR"},
		{"same size, same time: noticed", func(t *testing.T, p string) {
			st, _ := os.Stat(p)
			if err := os.WriteFile(p, []byte(lineB+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, st.ModTime(), st.ModTime()); err != nil {
				t.Fatal(err)
			}
		}, false, true, ""},
		{"replaced by rename", func(t *testing.T, p string) {
			tmp := p + ".new"
			if err := os.WriteFile(tmp, []byte(lineA+"\n"+lineB+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, p); err != nil {
				t.Fatal(err)
			}
		}, true, true, ""},
		{"invalid: the last valid set stays", func(t *testing.T, p string) {
			if err := os.WriteFile(p, []byte(lineB+" extra fields\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, true, false, "level=ERROR"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(t.TempDir(), "tokens")
			synctest.Test(t, func(t *testing.T) {
				if err := os.WriteFile(p, []byte(lineA+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				var log bytes.Buffer
				f, err := server.NewTokenFile(p, server.WithTokenLogger(slog.New(slog.NewTextHandler(&log, nil))))
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := f.Authenticate(tokA); !ok {
					t.Fatal("the token is refused")
				}
				tc.change(t, p)
				time.Sleep(2 * server.DefaultTokenCheckInterval) // the fake clock
				_, a := f.Authenticate(tokA)
				_, b := f.Authenticate(tokB)
				if a != tc.a || b != tc.b {
					t.Errorf("after the change: old token %v, new token %v; want %v, %v", a, b, tc.a, tc.b)
				}
				if !strings.Contains(log.String(), tc.logged) {
					t.Errorf("log %q, want %q", log.String(), tc.logged)
				}
				if (tc.logged != "") != (f.Err() != nil) {
					t.Errorf("Err() = %v", f.Err())
				}
			})
		})
	}
}

// TestTokenFileMissingThenBack: a file that disappears refuses every
// token, and its tokens work again once it is back.
func TestTokenFileMissingThenBack(t *testing.T) {
	t.Parallel()
	tok, line, _ := server.NewToken("ops", "read")
	p := filepath.Join(t.TempDir(), "tokens")
	synctest.Test(t, func(t *testing.T) {
		_ = os.WriteFile(p, []byte(line+"\n"), 0o600)
		f, err := server.NewTokenFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for i, step := range []struct {
			change func()
			ok     bool
		}{
			{func() {}, true},
			{func() { _ = os.Remove(p) }, false},
			{func() {}, false},
			{func() { _ = os.WriteFile(p, []byte(line+"\n"), 0o600) }, true},
		} {
			step.change()
			time.Sleep(2 * server.DefaultTokenCheckInterval)
			if _, ok := f.Authenticate(tok); ok != step.ok {
				t.Errorf("step %d: authenticated %v, want %v", i, ok, step.ok)
			}
		}
	})
}

// allowEnv is a server whose n8n has an API (W1 "Echo flow" behind the
// aliases echo and echo-by-id, W2 "Denied flow" behind denied) and
// tokens with allow-lists.
func allowEnv(t *testing.T) (*env, map[string]string) {
	t.Helper()
	e := newEnvWith(t, envOptions{api: true})
	tokens := map[string]string{}
	lines := []string{e.lines["admin"], e.lines["reader"]}
	for name, list := range map[string]string{
		"by-alias":   "workflows=echo",
		"by-id":      "workflows=W1",
		"by-pattern": "workflows=ech*,other",
		"other":      "workflows=orders,billing-*",
		"all":        "workflows=*",
		"legacy":     "",
	} {
		tok, line, err := server.NewToken(name, "read", "submit", "replay")
		if err != nil {
			t.Fatal(err)
		}
		tokens[name] = tok
		lines = append(lines, strings.TrimSpace(line+" "+list))
	}
	e.writeTokens(lines...)
	return e, tokens
}

// TestAllowListSubmit: a token's allow-list is checked against the
// resolved workflow, so an alias, the n8n id and the n8n name of one
// workflow get the same answer; a refusal is a 403
// workflow_not_allowed that stores and sends nothing.
func TestAllowListSubmit(t *testing.T) {
	t.Parallel()
	e, tokens := allowEnv(t)
	echo := []string{"echo", "echo-by-id", "W1", "Echo flow"}
	denied := []string{"denied", "W2", "Denied flow"}
	cases := []struct {
		token         string
		echo, denied  bool
		unknownStatus int
	}{
		{"by-alias", true, false, 403},
		{"by-id", true, false, 403},
		{"by-pattern", true, false, 403},
		{"other", false, false, 403},
		{"all", true, true, 404},
		{"legacy", true, true, 404},
	}
	for _, tc := range cases {
		for _, names := range []struct {
			names []string
			ok    bool
		}{{echo, tc.echo}, {denied, tc.denied}} {
			for _, wf := range names.names {
				before := e.stored()
				status, body, _ := e.call("POST", "/v1/invocations", tokens[tc.token], map[string]any{"workflow": wf, "params": map[string]any{"by": tc.token}})
				stored := e.stored() - before
				switch {
				case names.ok && (status != 202 || stored != 1):
					t.Errorf("%s submits %q: %d %s", tc.token, wf, status, body)
				case !names.ok && (status != 403 || errCode(body) != "workflow_not_allowed" || stored != 0):
					t.Errorf("%s submits %q: %d %s (stored %d), want 403 workflow_not_allowed", tc.token, wf, status, body, stored)
				}
			}
		}
		status, body, _ := e.call("POST", "/v1/invocations", tokens[tc.token], map[string]any{"workflow": "nope"})
		if status != tc.unknownStatus {
			t.Errorf("%s submits an unknown workflow: %d %s, want %d", tc.token, status, body, tc.unknownStatus)
		}
	}
}

// TestAllowListReads: a token reads, awaits, replays and purges only
// the invocations and dead letters of its workflows; lists are
// filtered, in the API and in the console.
func TestAllowListReads(t *testing.T) {
	t.Parallel()
	e, tokens := allowEnv(t)
	ids := map[string]string{}
	for _, wf := range []string{"echo", "W1", "denied", "Denied flow"} {
		status, body, _ := e.call("POST", "/v1/invocations", e.admin, map[string]any{"workflow": wf, "wait": true, "timeout": "10s"})
		var inv outbox.Invocation
		if err := json.Unmarshal(body, &inv); status != 200 || err != nil {
			t.Fatalf("submit %s: %d %s", wf, status, body)
		}
		ids[wf] = inv.ID
	}
	status, body, _ := e.call("GET", "/v1/dead-letters", e.admin, nil)
	var dl struct {
		DeadLetters []struct {
			ID       int64  `json:"id"`
			Workflow string `json:"workflow"`
		} `json:"dead_letters"`
	}
	if _ = json.Unmarshal(body, &dl); status != 200 || len(dl.DeadLetters) != 2 {
		t.Fatalf("dead letters: %d %s", status, body)
	}
	for _, name := range []string{"by-alias", "by-id", "by-pattern", "other", "legacy"} {
		tok := tokens[name]
		mayEcho, mayDenied := name != "other", name == "legacy"
		for wf, id := range ids {
			want := 403
			if (wf == "echo" || wf == "W1") && mayEcho || (wf == "denied" || wf == "Denied flow") && mayDenied {
				want = 200
			}
			for _, path := range []string{"/v1/invocations/" + id, "/v1/invocations/" + id + "/await?timeout=1s"} {
				if status, body, _ := e.call("GET", path, tok, nil); status != want || (want == 403 && errCode(body) != "workflow_not_allowed") {
					t.Errorf("%s reads %s (%s): %d %s, want %d", name, path, wf, status, body, want)
				}
			}
		}
		status, body, _ := e.call("GET", "/v1/invocations?limit=10", tok, nil)
		var list struct{ Invocations []outbox.Invocation }
		_ = json.Unmarshal(body, &list)
		got := map[string]bool{}
		for _, inv := range list.Invocations {
			got[inv.Workflow] = true
		}
		wantN := map[bool]int{true: 2}[mayEcho] + map[bool]int{true: 2}[mayDenied]
		if status != 200 || len(list.Invocations) != wantN || (!mayDenied && (got["denied"] || got["Denied flow"])) {
			t.Errorf("%s lists invocations: %d %s, want %d", name, status, body, wantN)
		}
		status, body, _ = e.call("GET", "/v1/dead-letters", tok, nil)
		if n := bytes.Count(body, []byte(`"reason"`)); status != 200 || n != map[bool]int{true: 2}[mayDenied] {
			t.Errorf("%s lists dead letters: %d, %d entries", name, status, n)
		}
		for _, d := range dl.DeadLetters {
			want := map[bool]int{true: 200, false: 403}[mayDenied]
			if status, body, _ := e.call("GET", fmt.Sprintf("/v1/dead-letters/%d", d.ID), tok, nil); status != want {
				t.Errorf("%s gets dead letter %d: %d %s, want %d", name, d.ID, status, body, want)
			}
			if mayDenied {
				continue
			}
			for _, req := range []struct{ method, path string }{
				{"POST", fmt.Sprintf("/v1/dead-letters/%d/replay", d.ID)},
				{"DELETE", fmt.Sprintf("/v1/dead-letters/%d", d.ID)},
			} {
				if status, body, _ := e.call(req.method, req.path, tok, map[string]any{"run_again": true}); status != 403 || errCode(body) != "workflow_not_allowed" {
					t.Errorf("%s %s %s: %d %s, want 403 workflow_not_allowed", name, req.method, req.path, status, body)
				}
			}
		}
	}
	// The console: the dead letters of other workflows are neither listed
	// nor shown, replayed or purged.
	b := e.login(tokens["by-alias"])
	if _, page, _ := b.get("/console/dead-letters"); strings.Contains(page, "/console/dead-letters/") {
		t.Error("the console lists a dead letter of a workflow outside the token's list")
	}
	if _, page, _ := b.get("/console/invocations"); strings.Contains(page, ids["denied"]) {
		t.Error("the console lists an invocation of a workflow outside the token's list")
	}
	for _, d := range dl.DeadLetters {
		if status, _, _ := b.get(fmt.Sprintf("/console/dead-letters/%d", d.ID)); status != 403 {
			t.Errorf("the console shows dead letter %d: %d", d.ID, status)
		}
		for _, action := range []string{"replay", "purge"} {
			if status, _ := b.post(fmt.Sprintf("/console/dead-letters/%d/%s", d.ID, action)); status != 403 {
				t.Errorf("the console's %s of dead letter %d: %d", action, d.ID, status)
			}
		}
	}
	if status, body, _ := e.call("GET", "/v1/dead-letters", e.admin, nil); status != 200 || bytes.Count(body, []byte(`"reason"`)) != 2 {
		t.Errorf("a refused replay or purge changed the dead letters: %s", body)
	}
}

// TestAllowListWarnsOnce: a line without a list grants every workflow
// (as before) and is warned about once, however often the file is read.
func TestAllowListWarnsOnce(t *testing.T) {
	t.Parallel()
	tok, line, _ := server.NewToken("legacy", "read")
	_, listed, _ := server.NewToken("listed", "read")
	p := filepath.Join(t.TempDir(), "tokens")
	_ = os.WriteFile(p, []byte(line+"\n"+listed+" workflows=echo\n"), 0o600)
	var log bytes.Buffer
	f, err := server.NewTokenFile(p, server.WithCheckInterval(0), server.WithTokenLogger(slog.New(slog.NewTextHandler(&log, nil))))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		_ = os.WriteFile(p, []byte(fmt.Sprintf("%s\n%s workflows=echo\n# edit %d\n", line, listed, i)), 0o600)
		if pr, ok := f.Authenticate(tok); !ok {
			t.Fatalf("the legacy token: %+v %v", pr, ok)
		}
	}
	if n := strings.Count(log.String(), "level=WARN"); n != 1 || !strings.Contains(log.String(), "legacy") {
		t.Errorf("%d warnings: %s", n, log.String())
	}
}

// TestAllowListWithoutTheAPI: without n8n's API (no api_key, or the API
// not answering) an alias is the workflow of its webhook; a name that
// cannot be resolved now is 503 workflow_unresolved, and nothing is
// stored.
func TestAllowListWithoutTheAPI(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		api      bool
		list     string
		workflow string
		status   int
		code     string
	}{
		{"no api key, the alias", false, "workflows=echo", "echo", 202, ""},
		{"no api key, another alias", false, "workflows=echo", "denied", 403, "workflow_not_allowed"},
		{"no api key, an id", false, "workflows=echo", "W1", 403, "workflow_not_allowed"},
		{"no api key, a pattern", false, "workflows=e*", "echo", 202, ""},
		{"api down, the alias", true, "workflows=echo", "echo", 202, ""},
		{"api down, an alias with the same webhook", true, "workflows=echo-by-id", "echo", 202, ""},
		{"api down, an alias with its id", true, "workflows=W1", "echo-by-id", 202, ""},
		{"api down, another alias", true, "workflows=echo", "denied", 503, "workflow_unresolved"},
		{"api down, an id", true, "workflows=echo", "W1", 503, "workflow_unresolved"},
		{"api down, a name", true, "workflows=echo", "Echo flow", 503, "workflow_unresolved"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnvWith(t, envOptions{api: tc.api})
			tok, line, _ := server.NewToken("ci", "submit")
			e.writeTokens(line + " " + tc.list)
			e.apiDown.Store(true)
			status, body, _ := e.call("POST", "/v1/invocations", tok, map[string]any{"workflow": tc.workflow})
			if status != tc.status || errCode(body) != tc.code {
				t.Errorf("%d %s, want %d %s", status, body, tc.status, tc.code)
			}
			if n := e.stored(); (n == 1) != (tc.status == 202) {
				t.Errorf("%d invocations stored", n)
			}
		})
	}
}
