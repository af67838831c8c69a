// Package chaos is a fault-injecting HTTP proxy for resilience tests: it
// sits between the invoker and a real n8n and, per request, resets the
// connection before or after forwarding, adds latency, answers 502, 503
// or 429 with Retry-After itself, or holds the request forever (a
// blackhole). It records what it did to every request, keyed by the
// Idempotency-Key header, so a test can account for every execution n8n
// ran.
package chaos

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is what the proxy does to one request.
type Fault int

// Faults.
const (
	None Fault = iota
	// ResetBefore closes the connection without forwarding: n8n never
	// sees the request.
	ResetBefore
	// ResetAfter forwards the request, waits for n8n's answer, then closes
	// the connection without answering: n8n ran it, the client cannot
	// know.
	ResetAfter
	// Latency forwards after a delay.
	Latency
	// BadGateway and Unavailable answer 502 and 503 without forwarding.
	BadGateway
	Unavailable
	// Throttle answers 429 with Retry-After: 1 without forwarding.
	Throttle
	// Blackhole holds the request until the client gives up.
	Blackhole
	// BadGatewayAfter forwards the request, lets n8n run it, and answers
	// 502: a proxy's 502 after forwarding looks like one before.
	BadGatewayAfter
	// CutWhileRunning forwards the request and cuts the client's
	// connection while n8n is still running the execution (after
	// CutDelay); n8n finishes it.
	CutWhileRunning
	numFaults
)

// CutDelay is how long CutWhileRunning waits before it cuts.
const CutDelay = 50 * time.Millisecond

var faultNames = [...]string{"none", "reset-before", "reset-after", "latency", "502", "503", "429", "blackhole", "502-after", "cut-while-running"}

// String names the fault.
func (f Fault) String() string { return faultNames[f] }

// Record is what happened to one request.
type Record struct {
	Key string
	// RequestID is the request's X-Request-Id.
	RequestID string
	Fault     Fault
	Forwarded bool // n8n received it
	// MaybeForwarded is a request the proxy wrote to n8n whose answer
	// failed (the proxy answered 502): n8n may have run it.
	MaybeForwarded bool
	Status         int // n8n's status when forwarded and answered
	// ClientGone is a request whose client gave up (its timeout) while
	// n8n had it: its answer was lost.
	ClientGone bool
	// At is when the request came in, End when the proxy was done with
	// it (answered the client or cut it off).
	At, End time.Time
}

// Proxy is a fault-injecting reverse proxy.
type Proxy struct {
	URL string

	srv    *http.Server
	ln     net.Listener
	rp     *httputil.ReverseProxy
	target *url.URL

	mu      sync.Mutex
	weights [numFaults]float64
	rng     *rand.Rand
	records []Record
	latency time.Duration
	holds   sync.WaitGroup
	stop    chan struct{}
}

// New starts a proxy on 127.0.0.1 in front of target.
func New(target string, seed uint64) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		URL: "http://" + ln.Addr().String(), ln: ln, target: u,
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), latency: 300 * time.Millisecond,
		stop: make(chan struct{}),
	}
	p.rp = &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(u)
		pr.Out.Host = pr.In.Host
		if wrote, ok := pr.In.Context().Value(wroteKey{}).(*atomic.Bool); ok {
			pr.Out = pr.Out.WithContext(httptrace.WithClientTrace(pr.Out.Context(), &httptrace.ClientTrace{
				WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) }}))
		}
	}}
	p.rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64, ResponseHeaderTimeout: 2 * time.Minute}
	p.rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		w.WriteHeader(http.StatusBadGateway) // n8n itself unreachable
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// SetFaults sets the probability of each fault per request; the rest
// pass untouched. SetFaults(nil) turns faults off.
func (p *Proxy) SetFaults(probs map[Fault]float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.weights = [numFaults]float64{}
	for f, w := range probs {
		p.weights[f] = w
	}
}

// Records returns a copy of what happened so far.
func (p *Proxy) Records() []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Record(nil), p.records...)
}

// Close stops the proxy and releases held requests.
func (p *Proxy) Close() error {
	close(p.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = p.srv.Close()
	}
	p.holds.Wait()
	p.rp.Transport.(*http.Transport).CloseIdleConnections()
	return err
}

func (p *Proxy) pick() Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	x := p.rng.Float64()
	for f := Fault(1); f < numFaults; f++ {
		if x < p.weights[f] {
			return f
		}
		x -= p.weights[f]
	}
	return None
}

func (p *Proxy) record(r Record) {
	p.mu.Lock()
	p.records = append(p.records, r)
	p.mu.Unlock()
}

// wroteKey carries the flag a forwarded request sets once the proxy has
// written it to n8n.
type wroteKey struct{}

// statusRecorder remembers the status n8n answered.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }

// discardWriter collects an answer that will never be sent.
type discardWriter struct {
	h      http.Header
	status int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(code int)        { d.status = code }

// ServeHTTP applies the next fault to the request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f := p.pick()
	rec := Record{Key: r.Header.Get("Idempotency-Key"), RequestID: r.Header.Get("X-Request-Id"), Fault: f, At: time.Now()}
	wrote := new(atomic.Bool)
	r = r.WithContext(context.WithValue(r.Context(), wroteKey{}, wrote))
	defer func() {
		rec.End = time.Now()
		rec.MaybeForwarded = !rec.Forwarded && wrote.Load()
		p.record(rec)
	}()
	switch f {
	case ResetBefore:
		_, _ = io.Copy(io.Discard, r.Body)
		hijackClose(w)
	case ResetAfter:
		d := &discardWriter{h: http.Header{}, status: 200}
		p.rp.ServeHTTP(d, r)
		rec.Forwarded, rec.Status = d.status != http.StatusBadGateway, d.status
		hijackClose(w)
	case BadGateway:
		w.WriteHeader(http.StatusBadGateway)
	case BadGatewayAfter:
		d := &discardWriter{h: http.Header{}, status: 200}
		p.rp.ServeHTTP(d, r)
		rec.Forwarded, rec.Status = d.status != http.StatusBadGateway, d.status
		w.WriteHeader(http.StatusBadGateway)
	case CutWhileRunning:
		// n8n gets the request and runs it to its end; the client is cut
		// off while it runs.
		rec.Forwarded = true
		fwd := r.Clone(context.WithoutCancel(r.Context()))
		body, _ := io.ReadAll(r.Body)
		fwd.Body = io.NopCloser(bytes.NewReader(body))
		p.holds.Add(1)
		go func() {
			defer p.holds.Done()
			p.rp.ServeHTTP(&discardWriter{h: http.Header{}, status: 200}, fwd)
		}()
		select {
		case <-time.After(CutDelay):
		case <-p.stop:
		}
		hijackClose(w)
	case Unavailable:
		w.WriteHeader(http.StatusServiceUnavailable)
	case Throttle:
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
	case Blackhole:
		p.holds.Add(1)
		defer p.holds.Done()
		// Read the body: only then does the server watch the connection
		// and cancel the request's context when the client gives up.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-p.stop:
		}
		hijackClose(w)
	default:
		if f == Latency {
			select {
			case <-time.After(p.latency):
			case <-r.Context().Done():
				return
			}
		}
		sr := &statusRecorder{ResponseWriter: w, status: 200}
		p.rp.ServeHTTP(sr, r)
		rec.Forwarded, rec.Status = sr.status != http.StatusBadGateway, sr.status
		if r.Context().Err() != nil {
			// The client gave up (its timeout) while n8n had the request:
			// forwarded, the answer lost.
			rec.Forwarded, rec.Status, rec.ClientGone = true, 0, true
		}
	}
}

func hijackClose(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // RST, not FIN
			}
			_ = c.Close()
		}
	}
}
