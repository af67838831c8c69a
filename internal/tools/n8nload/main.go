// Command n8nload measures ExecuteBatch against the real n8n started by
// scripts/n8n (its env file): throughput, p50 and p99 latency at fixed
// concurrency 1, 8 and 32 and with adaptive concurrency, in one run.
// Run it with scripts/n8n-load.sh; it is not part of the test suite.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"

	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/pack"
)

func main() {
	envFile := flag.String("env", ".n8n/env", "env file written by scripts/n8n")
	items := flag.Int("items", 150, "items per level")
	levels := flag.String("levels", "1,8,32,auto", "concurrency levels")
	packMode := flag.Bool("pack", false, "compare one item per call with packed calls of 200 and 1,000 items")
	packItems := flag.Int("pack-items", 20000, "items per packed run")
	flag.Parse()
	vars := map[string]string{}
	data, err := os.ReadFile(*envFile)
	if err != nil {
		fail(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			vars[k] = v
		}
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
n8n: {base_url: %q, timeout: 120}
invokers: {http: {max_retries: 3, backoff_factor: 0.2, pool_maxsize: 64}}
workflows: {echo: {path: invoker-echo}, packed: {path: invoker-packed}}
`, vars["N8N_BASE_URL"])), "n8nload.yaml")
	if err != nil {
		fail(err)
	}
	m, err := invoker.New(cfg)
	if err != nil {
		fail(err)
	}
	defer m.Close(context.Background())
	if *packMode {
		runPack(m, *items, *packItems)
		return
	}
	fmt.Println("| concurrency | items | items/s | p50 | p99 | failed | final limit |")
	fmt.Println("|---|---|---|---|---|---|---|")
	rawBaseline(vars["N8N_BASE_URL"], *items, 8)
	for _, lv := range strings.Split(*levels, ",") {
		c, adaptive := 32, lv == "auto"
		if !adaptive {
			if c, err = strconv.Atoi(lv); err != nil {
				fail(err)
			}
		}
		batch := make([]invoker.BatchItem, *items)
		for i := range batch {
			batch[i] = invoker.BatchItem{Workflow: "echo", Params: map[string]any{"i": i, "level": lv}}
		}
		var opts []invoker.BatchOption
		limit := c
		opts = append(opts, invoker.WithProgress(func(p invoker.Progress) { limit = p.Limit }))
		if adaptive {
			opts = append(opts, invoker.WithAdaptiveConcurrency())
		}
		start := time.Now()
		res, err := m.ExecuteBatch(context.Background(), batch, c, opts...)
		if err != nil {
			fail(err)
		}
		el := time.Since(start)
		var lat []time.Duration
		failed := 0
		for _, r := range res {
			if r.Err != nil {
				failed++
				continue
			}
			lat = append(lat, r.Result.Duration)
		}
		slices.Sort(lat)
		name := lv
		if adaptive {
			name = "adaptive (max 32)"
		}
		fmt.Printf("| %s | %d | %.1f | %s | %s | %d | %d |\n", name, *items, float64(*items)/el.Seconds(),
			pct(lat, 50), pct(lat, 99), failed, limit)
	}
}

func pct(d []time.Duration, p int) string {
	if len(d) == 0 {
		return "-"
	}
	return d[min(len(d)-1, len(d)*p/100)].Round(time.Millisecond).String()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "n8nload:", err)
	os.Exit(1)
}

// runPack compares one item per call (adaptive concurrency, its best
// here) with packs of 200 and 1,000 items, in one run.
func runPack(m *invoker.Manager, single, packed int) {
	fmt.Println("| mode | items | calls | items/s | ratio | p50 per call | p99 per call | failed |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	var base float64
	for _, mode := range []int{1, 200, 1000} {
		n := packed
		if mode == 1 {
			n = single
		}
		batch := make([]invoker.BatchItem, n)
		for i := range batch {
			batch[i] = invoker.BatchItem{Workflow: "packed", Params: map[string]any{"n": i}}
		}
		var opts []invoker.BatchOption
		if mode > 1 {
			opts = append(opts, invoker.WithPacking(pack.Options{MaxItems: mode}))
		} else {
			opts = append(opts, invoker.WithAdaptiveConcurrency())
		}
		start := time.Now()
		res, err := m.ExecuteBatch(context.Background(), batch, 32, opts...)
		if err != nil {
			fail(err)
		}
		el := time.Since(start)
		calls := map[string]time.Duration{}
		failed := 0
		for _, r := range res {
			if r.Err != nil {
				failed++
				continue
			}
			calls[r.Result.RequestID] = r.Result.Duration
		}
		var lat []time.Duration
		for _, d := range calls {
			lat = append(lat, d)
		}
		slices.Sort(lat)
		rate := float64(n) / el.Seconds()
		if mode == 1 {
			base = rate
		}
		name := "one item per call (adaptive, max 32)"
		if mode > 1 {
			name = fmt.Sprintf("packed, %d per call", mode)
		}
		fmt.Printf("| %s | %d | %d | %.0f | %.0fx | %s | %s | %d |\n", name, n, len(calls), rate, rate/base, pct(lat, 50), pct(lat, 99), failed)
	}
}

// rawBaseline is the same load through plain net/http at concurrency c:
// the baseline next to ExecuteBatch.
func rawBaseline(base string, n, c int) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	lat := make([]time.Duration, n)
	var failed atomic.Int64
	var g errgroup.Group
	g.SetLimit(c)
	start := time.Now()
	for i := range n {
		g.Go(func() error {
			t0 := time.Now()
			resp, err := client.Post(base+"/webhook/invoker-echo", "application/json", strings.NewReader(fmt.Sprintf(`{"i":%d,"level":"raw"}`, i)))
			if err != nil {
				failed.Add(1)
				return nil
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				failed.Add(1)
			}
			lat[i] = time.Since(t0)
			return nil
		})
	}
	_ = g.Wait()
	el := time.Since(start)
	slices.Sort(lat)
	fmt.Printf("| raw net/http baseline, %d | %d | %.1f | %s | %s | %d | - |\n", c, n, float64(n)/el.Seconds(), pct(lat, 50), pct(lat, 99), failed.Load())
}
