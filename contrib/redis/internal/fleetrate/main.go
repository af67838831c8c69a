// Command fleetrate measures the fleet-wide rate limit: three invoker
// processes (this program run again as clients) send as fast as the
// shared limit lets them to a local stub, which counts what arrives. Run A
// measures the rate over 30 s; run B answers one request with 429 and
// Retry-After: 2 and counts what every process sends in the pause. It
// prints a Markdown report (scripts/fleet-rate.sh puts it in
// BENCHMARKS.md).
//
//	go run ./internal/fleetrate -redis redis://127.0.0.1:6379/0 [-rps 20] [-seconds 30]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	_ "github.com/n8n-invoker/n8n-invoker/contrib/redis"
	"github.com/n8n-invoker/n8n-invoker/invocation"
)

func main() {
	redisURL := flag.String("redis", os.Getenv("N8N_INVOKER_REDIS_URL"), "Redis URL")
	rps := flag.Float64("rps", 20, "the fleet's limit")
	seconds := flag.Int("seconds", 30, "run A's measuring window")
	procs := flag.Int("procs", 3, "invoker processes")
	client := flag.String("client", "", "internal: run as client N against this stub URL")
	id := flag.Int("id", 0, "internal: client id")
	key := flag.String("key", "", "internal: the limit's key")
	until := flag.Int64("until", 0, "internal: unix ms to stop at")
	flag.Parse()
	if *client != "" {
		runClient(*client, *redisURL, *key, *rps, *id, time.UnixMilli(*until))
		return
	}
	fmt.Printf("Three invoker processes (concurrency 16 each, default retries) on one `rate_limit: {backend: redis, requests_per_second: %g}`\n", *rps)
	fmt.Printf("against a local stub that answers at once; measured at the stub. %d processes, Redis on 127.0.0.1.\n\n", *procs)
	a := measure(*redisURL, *rps, *procs, time.Duration(*seconds)*time.Second, -1)
	rate := float64(a.window) / a.windowLen.Seconds()
	fmt.Printf("| run | requests at the stub | window | rate | vs limit | per process |\n|---|---|---|---|---|---|\n")
	fmt.Printf("| A: steady | %d | %s | %.2f/s | %+.1f %% | %v |\n", a.window, a.windowLen, rate, 100*(rate / *rps - 1), a.perClient)
	b := measure(*redisURL, *rps, *procs, 12*time.Second, 5*time.Second)
	fmt.Printf("| B: one 429 (Retry-After: 2) at 5 s | %d in the 2 s pause (%d before it, same length) | | | | 429 went to process %d; in the pause by process: %v |\n\n",
		b.inPause, b.beforePause, b.throttledClient, b.pauseByClient)
}

type result struct {
	window          int
	windowLen       time.Duration
	perClient       []int
	inPause         int
	beforePause     int
	throttledClient int
	pauseByClient   []int
}

// measure runs procs clients for d (plus a second of warm-up, not
// counted); throttleAt >= 0 answers the first request after it with 429.
func measure(redisURL string, rps float64, procs int, d, throttleAt time.Duration) result {
	type hit struct {
		at     time.Duration
		client int
	}
	var mu sync.Mutex
	var hits []hit
	var start time.Time
	var throttled atomic.Bool
	throttledClient := -1
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Client int `json:"client"`
		}
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		_ = json.Unmarshal(b, &body)
		at := time.Since(start)
		if throttleAt >= 0 && at >= throttleAt+time.Second && throttled.CompareAndSwap(false, true) {
			mu.Lock()
			throttledClient = body.Client
			mu.Unlock()
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		mu.Lock()
		hits = append(hits, hit{at, body.Client})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ok":true}`)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	key := fmt.Sprintf("fleetrate:%d", time.Now().UnixNano())
	start = time.Now()
	end := start.Add(d + time.Second)
	var wg sync.WaitGroup
	for i := range procs {
		cmd := exec.Command(os.Args[0], "-client", "http://"+ln.Addr().String(), "-redis", redisURL, "-key", key,
			"-rps", fmt.Sprint(rps), "-id", fmt.Sprint(i), "-until", fmt.Sprint(end.UnixMilli()))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			panic(err)
		}
		wg.Go(func() { _ = cmd.Wait() })
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	sort.Slice(hits, func(i, j int) bool { return hits[i].at < hits[j].at })
	r := result{windowLen: d, perClient: make([]int, procs), pauseByClient: make([]int, procs), throttledClient: throttledClient}
	for _, h := range hits {
		// The window starts a second in: every process has started.
		if h.at >= time.Second && h.at < d+time.Second {
			r.window++
			r.perClient[h.client]++
		}
		if throttleAt >= 0 {
			t0 := throttleAt + time.Second
			switch {
			case h.at >= t0+50*time.Millisecond && h.at < t0+2*time.Second:
				r.inPause++
				r.pauseByClient[h.client]++
			case h.at >= t0-2*time.Second && h.at < t0:
				r.beforePause++
			}
		}
	}
	return r
}

func runClient(url, redisURL, key string, rps float64, id int, until time.Time) {
	cfg, err := config.Parse([]byte(fmt.Sprintf(`n8n: {base_url: %q}
workflows: {w: {path: w}}
rate_limit: {backend: redis, url: %q, key: %q, requests_per_second: %g, fallback_per_process: %g}
`, url, redisURL, key, rps, rps/3)), "fleetrate.yaml")
	if err != nil {
		panic(err)
	}
	m, err := invoker.New(cfg)
	if err != nil {
		panic(err)
	}
	defer m.Close(context.Background())
	ctx, cancel := context.WithDeadline(context.Background(), until)
	defer cancel()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, _ = m.Execute(ctx, &invocation.Request{Workflow: "w", Params: map[string]any{"client": id}})
			}
		})
	}
	wg.Wait()
}
