// Command serveload measures n8n-invoker serve under a fixed submission
// rate against a stub n8n that answers at once: it starts the stub and
// the given n8n-invoker binary's serve on a fresh SQLite store, submits
// -rate invocations per second for -duration (open loop: a slow answer
// does not slow the offered load), waits until every acknowledged one
// has ended, and prints the figures as a BENCHMARKS.md table row. Used by
// scripts/serve-load.sh.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/outbox"
	"github.com/n8n-invoker/n8n-invoker/secret"
	"github.com/n8n-invoker/n8n-invoker/server"
)

func main() {
	bin := flag.String("bin", "bin/n8n-invoker", "the n8n-invoker binary")
	rate := flag.Int("rate", 200, "submissions per second")
	duration := flag.Duration("duration", 60*time.Second, "how long to submit")
	flag.Parse()
	if err := run(*bin, *rate, *duration); err != nil {
		fmt.Fprintln(os.Stderr, "serveload:", err)
		os.Exit(1)
	}
}

func run(bin string, rate int, duration time.Duration) error {
	dir, err := os.MkdirTemp("", "serveload")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var delivered atomic.Int64
	n8n := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		delivered.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ok":true}`)
	}))
	defer n8n.Close()
	cfg := filepath.Join(dir, "c.yaml")
	y := fmt.Sprintf("n8n: {base_url: %q, timeout: 10}\ndlq: {enabled: true}\nstore: {path: %q}\nworkflows:\n  echo: {path: echo}\n", n8n.URL, filepath.Join(dir, "store.db"))
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		return err
	}
	token, line, err := server.NewToken("load", "read", "submit")
	if err != nil {
		return err
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(line+"\n"), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "-c", cfg, "--tokens", tokens)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	re := regexp.MustCompile(`listening on (http://[0-9.:]+)`)
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	var url string
	select {
	case url = <-found:
	case <-time.After(time.Minute):
		return fmt.Errorf("serve did not start")
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
	client, err := server.NewClient(url, secret.New(token), hc)
	if err != nil {
		return err
	}
	cpu0 := cpuOf(cmd.Process.Pid)
	var (
		mu        sync.Mutex
		latencies []time.Duration
		ids       []string
		failed    atomic.Int64
		wg        sync.WaitGroup
	)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	start := time.Now()
	for n := 0; time.Since(start) < duration; n++ {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			id, err := client.Enqueue(context.Background(), &invocation.Request{Workflow: "echo", Params: map[string]any{"n": n}, IdempotencyKey: "load-" + strconv.Itoa(n)})
			d := time.Since(t0)
			if err != nil {
				failed.Add(1)
				return
			}
			mu.Lock()
			latencies, ids = append(latencies, d), append(ids, id)
			mu.Unlock()
		}()
	}
	wg.Wait()
	offered := time.Since(start)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lost, notOK := 0, 0
	for _, id := range ids {
		inv, err := client.Await(ctx, id)
		switch {
		case err != nil && strings.Contains(err.Error(), "not_found"):
			lost++
		case err != nil || inv.Status != outbox.Succeeded:
			notOK++
		}
	}
	drained := time.Since(start)
	cpu := cpuOf(cmd.Process.Pid) - cpu0
	slices.Sort(latencies)
	q := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))]
	}
	fmt.Printf("| %d/s for %s | %d | %d | %d | %d | %d | %s | %s | %s | %s | %.2f ms |\n",
		rate, duration, len(ids)+int(failed.Load()), len(ids), failed.Load(), lost, notOK,
		q(0.50).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), latencies[len(latencies)-1].Round(10*time.Microsecond),
		(drained - offered).Round(100*time.Millisecond), float64(cpu.Milliseconds())/float64(max(1, len(ids))))
	return nil
}

// cpuOf returns a process's user+system CPU time (Linux /proc).
func cpuOf(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100)
}
