package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/n8n-invoker/n8n-invoker/internal/n8ntest"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/outbox"
	"github.com/n8n-invoker/n8n-invoker/secret"
	"github.com/n8n-invoker/n8n-invoker/server"
)

// watch is an io.Writer that remembers everything and reports the
// service's address once it prints it.
type watch struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	addr chan string
	sent bool
}

var listening = regexp.MustCompile(`listening on (https?://[0-9.:]+)`)

func newWatch() *watch { return &watch{addr: make(chan string, 1)} }

func (w *watch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if m := listening.FindStringSubmatch(w.buf.String()); m != nil && !w.sent {
		w.sent = true
		w.addr <- m[1]
	}
	return len(p), nil
}

func (w *watch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// startServe runs `serve` in this process until the returned stop is
// called; it returns the service's URL.
func startServe(t *testing.T, args ...string) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errOut := newWatch()
	done := make(chan int, 1)
	go func() {
		var out bytes.Buffer
		done <- run(ctx, append([]string{"serve", "--listen", "127.0.0.1:0", "--drain", "10s"}, args...), nil, &out, errOut)
	}()
	select {
	case url := <-errOut.addr:
		return url, func() {
			cancel()
			if code := <-done; code != 0 {
				t.Errorf("serve exited %d: %s", code, errOut)
			}
		}
	case code := <-done:
		cancel()
		t.Fatalf("serve exited %d before listening: %s", code, errOut)
	case <-time.After(time.Minute):
		cancel()
		t.Fatalf("serve did not listen within a minute: %s", errOut)
	}
	return "", nil
}

// TestServeConsoleEndToEnd: a workflow whose webhook authentication is
// misconfigured fails with a 403 (n8n never ran it) and lands in the
// dead-letter list; the operator logs in to the console in a real
// (headless) Chromium, sees it, fixes the configuration (a restart),
// clicks replay and confirms; the entry disappears and n8n shows the new
// execution.
func TestServeConsoleEndToEnd(t *testing.T) {
	n8n := n8ntest.Require(t)
	browser, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("N8N_INVOKER_REQUIRE_N8N") == "1" {
			t.Fatal("no chromium: scripts/test.sh installs Debian's chromium package")
		}
		t.Skip("no chromium installed")
	}
	dir := t.TempDir()
	token, line, err := server.NewToken("operator", "read", "submit", "replay")
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "serve.yaml")
	writeCfg := func(value string) {
		y := fmt.Sprintf(`n8n: {base_url: %q, api_key: %q, timeout: 30}
invokers: {http: {max_retries: 1, backoff_factor: 0.05}}
dlq: {enabled: true, on: [transient, unknown, permanent]}
store: {path: %q}
workflows:
  guarded:
    path: invoker-header-auth
    auth: {type: header, name: %q, value: %q}
`, n8n.BaseURL, n8n.APIKey, filepath.Join(dir, "store.db"), n8n.HeaderName, value)
		if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("a-wrong-secret")
	url, stop := startServe(t, "-c", cfg, "--tokens", tokens)
	client, err := server.NewClient(url, secret.New(token), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	key := fmt.Sprintf("console-%d", time.Now().UnixNano())
	id, err := client.Enqueue(ctx, &invocation.Request{Workflow: "guarded", Params: map[string]any{"order": 42}, IdempotencyKey: key})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := client.Await(ctx, id)
	if err != nil || inv.Status != outbox.DeadLettered || !strings.Contains(inv.Error, "403") {
		t.Fatalf("the misconfigured call: %+v %v", inv, err)
	}

	shots := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.NoFirstRun, chromedp.UserDataDir(filepath.Join(dir, "chromium")), chromedp.WindowSize(1280, 900))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	dialogs := chromedp.Events(bctx, page.JavascriptDialogOpening)
	go func() { // the operator confirms the replay dialog
		for _, err := range dialogs {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(bctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	type step = chromedp.Action[chromedp.Void]
	login := func(url string) []step {
		return []step{
			chromedp.Navigate(url + "/console/login"),
			chromedp.WaitVisible(chromedp.ID("token")),
			chromedp.SendKeys(chromedp.ID("token"), token),
			chromedp.Click(chromedp.ID("login")),
			chromedp.WaitVisible(chromedp.ID("chart")),
		}
	}
	// do runs steps with a bound of its own, and on failure says where
	// the browser was and what it showed.
	do := func(what string, steps ...step) {
		t.Helper()
		sctx, scancel := context.WithTimeout(bctx, 30*time.Second)
		defer scancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			loc, _ := chromedp.Run(bctx, chromedp.Location())
			html, _ := chromedp.Run(bctx, chromedp.OuterHTML(chromedp.CSS("html")))
			t.Fatalf("%s: %v (at %s)\n%s", what, err, loc, html[:min(len(html), 3000)])
		}
	}
	text := func(sel chromedp.CSS) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	do("logging in", login(url)...)
	do("the dead letters", chromedp.Navigate(url+"/console/dead-letters"), chromedp.WaitVisible(chromedp.ID("dead-letters")))
	rows := text("#dead-letters")
	do("opening the dead letter", chromedp.Click(chromedp.CSS("#dead-letters tr.entry a")), chromedp.WaitVisible(chromedp.ID("replay")))
	detail := text("main")
	if !strings.Contains(rows, "guarded") || !strings.Contains(rows, "403") || !strings.Contains(detail, key) || !strings.Contains(detail, "n8n did not run it") {
		t.Errorf("dead letter as the console shows it:\n%s\n---\n%s", rows, detail)
	}
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(shots, "console.png")
	if err := os.WriteFile(shot, png, 0o600); err != nil {
		t.Fatal(err)
	}

	// The operator fixes the credential; configuration changes take
	// effect on restart. Sessions are per process: log in again.
	stop()
	writeCfg(n8n.HeaderValue)
	url, stop = startServe(t, "-c", cfg, "--tokens", tokens)
	defer stop()
	do("logging in again", login(url)...)
	do("replaying", chromedp.Navigate(url+"/console/dead-letters"),
		chromedp.Click(chromedp.CSS("#dead-letters tr.entry a")),
		chromedp.WaitVisible(chromedp.ID("replay")),
		chromedp.Click(chromedp.ID("replay")), // confirmed in the dialog
		chromedp.WaitVisible(chromedp.ID("flash")))
	flash, after := text("#flash"), text("main")
	if !strings.Contains(flash, "replayed: it succeeded") || !strings.Contains(after, "No dead letters.") {
		t.Errorf("after replay: flash %q, page %q", flash, after)
	}
	wf := n8n.WorkflowID(t, "n8n-invoker header auth")
	execs := n8n.ExecutionsByHeader(ctx, t, wf, "idempotency-key", func(v string) bool { return v == key })
	if len(execs[key]) != 1 || execs[key][0].Status != "success" {
		t.Errorf("n8n's executions of the replayed key: %v", execs[key])
	}
	if os.Getenv("N8N_INVOKER_SCREENSHOT") == "1" {
		kept := filepath.Join(n8ntest.Root(), "docs", "console.png")
		if err := os.MkdirAll(filepath.Dir(kept), 0o755); err == nil {
			err = os.WriteFile(kept, png, 0o644)
			if err != nil {
				t.Error(err)
			}
			t.Logf("screenshot kept in %s", kept)
		}
	}
	t.Logf("console: dead letter listed with its 403, replayed from the browser after the fix, 1 execution in n8n; screenshot %s", shot)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Error("the test ran out of time")
	}
}
