// Package bench compares n8n-invoker with raw net/http and with peer
// libraries (go-retryablehttp, resty) against a local webhook stub run in
// its own process, so that CPU and allocations are the client's alone.
// Run it with bench/run.sh (scripts/bench.sh stub).
package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/go-resty/resty/v2"
	"github.com/hashicorp/go-retryablehttp"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"golang.org/x/sync/errgroup"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/telemetry"
)

var stubURL string

func TestMain(m *testing.M) {
	dir, _ := os.MkdirTemp("", "stub")
	bin := filepath.Join(dir, "stub")
	if out, err := exec.Command("go", "build", "-o", bin, "./stub").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the stub: %v\n%s", err, out)
		os.Exit(1)
	}
	cmd := exec.Command(bin)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	stubURL = line[:len(line)-1]
	warmUp()
	code := m.Run()
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	os.RemoveAll(dir)
	os.Exit(code)
}

const concurrency = 64

// warmUp runs calls until the stub and this process are warm, so that the
// first contender measured is not the one that pays for it.
func warmUp() {
	c := &http.Client{Transport: tunedTransport()}
	var g errgroup.Group
	g.SetLimit(concurrency)
	for range 30_000 {
		g.Go(func() error { return rawCall(c) })
	}
	_ = g.Wait()
	c.CloseIdleConnections()
}

var params = map[string]any{"email": "user@example.com", "plan": "premium", "n": 42}

// tunedTransport is the transport every contender gets: the same pool.
func tunedTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
}

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// run measures f in parallel with `concurrency` goroutines and reports
// CPU per invocation.
func run(b *testing.B, f func() error) {
	b.ReportAllocs()
	b.SetParallelism(concurrency / max(1, testingProcs()))
	start := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := f(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

func testingProcs() int {
	n, _ := strconv.Atoi(os.Getenv("GOMAXPROCS"))
	if n > 0 {
		return n
	}
	return 2
}

func rawCall(c *http.Client) error {
	body, err := json.Marshal(params)
	if err != nil {
		return err
	}
	req, _ := http.NewRequest(http.MethodPost, stubURL+"/webhook/onboarding", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 || !json.Valid(b) {
		return fmt.Errorf("bad answer %d", resp.StatusCode)
	}
	return nil
}

func manager(b *testing.B, tracing bool) *invoker.Manager {
	cfg, err := config.Parse([]byte(fmt.Sprintf(`n8n: {base_url: %q}
invokers: {http: {pool_connections: 2, pool_maxsize: 256}}
tracing: {enabled: %v}
workflows: {onboarding: {path: onboarding}}
`, stubURL, tracing)), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	var opts []invoker.Option
	if tracing {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(discard{}))
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		b.Cleanup(func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) })
		opts = append(opts, invoker.WithTelemetry(telemetry.WithTracerProvider(tp), telemetry.WithMeterProvider(mp),
			telemetry.WithPropagator(propagation.TraceContext{})))
	}
	m, err := invoker.New(cfg, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkInvoke is one invocation through each contender, 64 in flight.
func BenchmarkInvoke(b *testing.B) {
	b.Run("contender=raw", func(b *testing.B) {
		c := &http.Client{Transport: tunedTransport()}
		run(b, func() error { return rawCall(c) })
	})
	b.Run("contender=ours", func(b *testing.B) {
		m := manager(b, false)
		run(b, func() error { _, err := m.ExecuteWorkflow(context.Background(), "onboarding", params); return err })
	})
	b.Run("contender=ours-traced", func(b *testing.B) {
		m := manager(b, true)
		run(b, func() error { _, err := m.ExecuteWorkflow(context.Background(), "onboarding", params); return err })
	})
	b.Run("contender=retryablehttp", func(b *testing.B) {
		c := retryablehttp.NewClient()
		c.HTTPClient = &http.Client{Transport: tunedTransport()}
		c.Logger = nil
		c.RetryMax = 3
		run(b, func() error {
			body, _ := json.Marshal(params)
			resp, err := c.Post(stubURL+"/webhook/onboarding", "application/json", body)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			bb, err := io.ReadAll(resp.Body)
			if err != nil || !json.Valid(bb) {
				return fmt.Errorf("bad answer: %v", err)
			}
			return nil
		})
	})
	b.Run("contender=resty", func(b *testing.B) {
		c := resty.NewWithClient(&http.Client{Transport: tunedTransport()}).SetRetryCount(3)
		run(b, func() error {
			resp, err := c.R().SetHeader("Content-Type", "application/json").SetBody(params).Post(stubURL + "/webhook/onboarding")
			if err != nil {
				return err
			}
			if resp.StatusCode() != 200 || !json.Valid(resp.Body()) {
				return fmt.Errorf("bad answer %d", resp.StatusCode())
			}
			return nil
		})
	})
}

// BenchmarkBatch runs 100,000 items at concurrency 256: ExecuteBatch
// against an errgroup of raw net/http calls.
func BenchmarkBatch(b *testing.B) {
	const n = 100_000
	b.Run("contender=raw", func(b *testing.B) {
		c := &http.Client{Transport: tunedTransport()}
		for b.Loop() {
			var g errgroup.Group
			g.SetLimit(256)
			for range n {
				g.Go(func() error { return rawCall(c) })
			}
			if err := g.Wait(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "items/s")
	})
	b.Run("contender=ours", func(b *testing.B) {
		m := manager(b, false)
		items := make([]invoker.BatchItem, n)
		for i := range items {
			items[i] = invoker.BatchItem{Workflow: "onboarding", Params: params}
		}
		for b.Loop() {
			res, err := m.ExecuteBatch(context.Background(), items, 256)
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range res {
				if r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "items/s")
	})
}
