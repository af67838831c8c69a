// Command outboxbench measures durable submission against a local stub
// n8n (n8n on 2 cores would cap the rate itself): enqueue/s from one
// process, then delivery/s with 1, 2 and 3 worker processes (this program
// run again as workers) on the PostgreSQL store (River), and with one
// worker process on the SQLite store, with each worker process's CPU
// time per delivery so that the scaling can be projected past this
// machine. It prints a Markdown report (scripts/bench.sh outbox puts it
// in BENCHMARKS.md).
//
//	go run ./internal/outboxbench -dsn postgres://... [-n 2000]
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	_ "github.com/n8n-invoker/n8n-invoker/contrib/postgres/outbox"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/outbox"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

func main() {
	dsn := flag.String("dsn", os.Getenv("N8N_INVOKER_PG_DSN"), "PostgreSQL DSN")
	n := flag.Int("n", 2000, "invocations per run")
	workers := flag.Int("workers", 10, "workers per process")
	worker := flag.String("worker", "", "internal: run as a worker process of this stub URL")
	schema := flag.String("schema", "", "internal: the store's schema (empty: sqlite at -path)")
	path := flag.String("path", "", "internal: the SQLite file")
	flag.Parse()
	if *worker != "" {
		runWorker(*worker, *dsn, *schema, *path, *workers)
		return
	}
	stub, hits := startStub()
	fmt.Printf("%d invocations per run, enqueued by one process, then delivered by worker processes (%d workers each, the defaults otherwise:\n", *n, *workers)
	fmt.Printf("journal, retries, breaker) to a local stub n8n that answers at once; %d cores. CPU is user+system time of the worker processes.\n\n", runtime.NumCPU())
	fmt.Println("| store | worker processes | enqueue/s (1 process) | delivery/s | CPU ms per delivery (all workers) | CPU ms per delivery per process |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, procs := range []int{1, 2, 3} {
		s := fmt.Sprintf("bench_%d_%d", time.Now().UnixNano()%1e9, procs)
		r := measure(stub, hits, *dsn, s, "", *n, procs, *workers)
		dropSchema(*dsn, s)
		fmt.Printf("| PostgreSQL (River) | %d | %.0f | %.0f | %.2f | %s |\n", procs, r.enqueueRate, r.deliveryRate, r.cpuPerDelivery, r.perProcess)
	}
	dir, _ := os.MkdirTemp("", "outboxbench")
	defer os.RemoveAll(dir)
	r := measure(stub, hits, "", "", filepath.Join(dir, "store.db"), *n, 1, *workers)
	fmt.Printf("| SQLite (its table) | 1 | %.0f | %.0f | %.2f | %s |\n\n", r.enqueueRate, r.deliveryRate, r.cpuPerDelivery, r.perProcess)
}

type result struct {
	enqueueRate, deliveryRate, cpuPerDelivery float64
	perProcess                                string
}

func startStub() (string, *atomic.Int64) {
	var hits atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() {
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"ok":true}`))
		}))
	}()
	return "http://" + ln.Addr().String(), &hits
}

func cfgFor(stub, dsn, schema, path string) *config.Config {
	cfg := config.Default()
	cfg.N8N.BaseURL = stub
	cfg.Workflows = map[string]config.Workflow{"hook": {Path: "hook"}}
	cfg.DLQ.Enabled = true
	if schema != "" {
		cfg.Store = config.Store{Backend: "postgres", DSN: secret.New(dsn), Schema: schema}
	} else {
		cfg.Store = config.Store{Path: path}
	}
	cfg.Queue.Poll = config.Duration(20 * time.Millisecond)
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return cfg
}

func open(cfg *config.Config, workers int) (*invoker.Manager, outbox.Queue) {
	m, err := invoker.New(cfg)
	if err != nil {
		panic(err)
	}
	q, err := outbox.Open(context.Background(), m, &outbox.Options{Workers: workers, Poll: 20 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	return m, q
}

func measure(stub string, hits *atomic.Int64, dsn, schema, path string, n, procs, workers int) result {
	ctx := context.Background()
	m, q := open(cfgFor(stub, dsn, schema, path), -1)
	defer m.Close(ctx)
	// Enqueue from one process, 8 at a time (a service's request handlers).
	start := time.Now()
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if _, err := q.Enqueue(ctx, &invocation.Request{Workflow: "hook", Params: map[string]any{"i": i}}); err != nil {
					panic(err)
				}
			}
		}()
	}
	wg.Wait()
	enq := float64(n) / time.Since(start).Seconds()
	before := hits.Load()
	start = time.Now()
	cmds := make([]*exec.Cmd, procs)
	for i := range cmds {
		cmds[i] = exec.Command(os.Args[0], "-worker", stub, "-dsn", dsn, "-schema", schema, "-path", path, "-workers", strconv.Itoa(workers))
		cmds[i].Stderr = os.Stderr
		if err := cmds[i].Start(); err != nil {
			panic(err)
		}
	}
	for {
		if hits.Load()-before >= int64(n) && allSucceeded(ctx, q, n) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	var cpu time.Duration
	per := ""
	for _, c := range cmds {
		_ = c.Process.Signal(os.Interrupt)
		_ = c.Wait()
		t := c.ProcessState.UserTime() + c.ProcessState.SystemTime()
		cpu += t
		per += fmt.Sprintf("%.2f ", float64(t.Microseconds())/1000/(float64(n)/float64(procs)))
	}
	return result{enqueueRate: enq, deliveryRate: float64(n) / elapsed.Seconds(),
		cpuPerDelivery: float64(cpu.Microseconds()) / 1000 / float64(n), perProcess: per}
}

// allSucceeded counts the succeeded invocations (the stub's count says
// they were sent; the store's says they were recorded).
func allSucceeded(ctx context.Context, q outbox.Queue, n int) bool {
	list, err := q.List(ctx, outbox.Filter{Status: outbox.Succeeded, Limit: n})
	return err == nil && len(list) >= n
}

func runWorker(stub, dsn, schema, path string, workers int) {
	m, q := open(cfgFor(stub, dsn, schema, path), workers)
	ctx := context.Background()
	if err := q.Start(ctx); err != nil {
		panic(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	<-sig
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = q.Stop(sctx)
	_ = m.Close(ctx)
}

func dropSchema(dsn, schema string) {
	pool, err := pgxpool.New(context.Background(), dsn)
	if err == nil {
		_, _ = pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
		pool.Close()
	}
}
