package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/n8n-invoker/n8n-invoker/server"
)

func newServeCmd(g *globals, stdout, stderr io.Writer) *cobra.Command {
	var (
		listen, tokens, editorURL string
		certFile, keyFile, caFile string
		workers                   int
		drain                     time.Duration
		maxBody                   int64
	)
	cmd := &cobra.Command{
		Use:   "serve [--listen 127.0.0.1:8089] --tokens FILE",
		Short: "Run the service: a JSON API and a web console over the store and its workers",
		Long: `Run n8n-invoker as a service for callers in any language: a versioned JSON
API (/v1/..., its OpenAPI document at /v1/openapi.yaml) to submit invocations
(202 once stored), get, await and list them, list, replay and purge dead
letters; /healthz, /readyz, /metrics; and a web console at /console/.

Submissions are stored in the configured store (SQLite on one machine,
PostgreSQL for several replicas behind a load balancer) and delivered by this
process's workers through the whole pipeline. Tokens come from --tokens, a file
of "name sha256:<hash> scopes [workflows=...]" lines (make them with "serve
token"), re-read when its content changes (replace it by renaming a new file
over it; while it is missing every token is refused). It listens on 127.0.0.1 unless told otherwise. SIGINT or
SIGTERM drain: no new requests, requests and deliveries in flight may finish
for --drain, the rest is given back and delivered again after a reconcile.
Configuration changes take effect on restart (SIGHUP re-reads the n8n API key
file; the token file is re-read on change).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tokens == "" {
				tokens = os.Getenv("N8N_INVOKER_TOKENS")
			}
			if tokens == "" {
				return usageErr("--tokens FILE is required (make a token with: n8n-invoker serve token NAME read,submit,replay)")
			}
			tlsConf, err := serveTLS(certFile, keyFile, caFile)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			g.wantMetrics = true
			m, err := g.dlqManager(stderr)
			if err != nil {
				return err
			}
			defer m.Close(context.Background())
			tf, err := server.NewTokenFile(tokens, server.WithTokenLogger(m.Logger()))
			if err != nil {
				return usageErr("--tokens: %v", err)
			}
			q, err := startWorkers(ctx, m, workers, false)
			if err != nil {
				return err
			}
			srv, err := server.New(server.Options{Manager: m, Queue: q, Tokens: tf, EditorURL: editorURL,
				Metrics: g.otel.metrics, MaxBodyBytes: maxBody, SecureCookies: tlsConf != nil})
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return usageErr("--listen: %v", err)
			}
			hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
				IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10, TLSConfig: tlsConf}
			scheme := "http"
			if tlsConf != nil {
				scheme = "https"
			}
			fmt.Fprintf(stderr, "n8n-invoker serve: listening on %s://%s (store %s, console at /console/)\n", scheme, ln.Addr(), backendName(m))
			errc := make(chan error, 1)
			go func() {
				if tlsConf != nil {
					errc <- hs.ServeTLS(ln, "", "")
				} else {
					errc <- hs.Serve(ln)
				}
			}()
			select {
			case err := <-errc:
				return &exitError{code: exitFailed, err: err}
			case <-ctx.Done():
			}
			fmt.Fprintln(stderr, "n8n-invoker serve: draining")
			sctx, cancel := context.WithTimeout(context.Background(), drain)
			defer cancel()
			if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				fmt.Fprintln(stderr, "n8n-invoker serve: shutdown:", err)
			}
			if err := q.Stop(sctx); err != nil {
				fmt.Fprintln(stderr, "n8n-invoker serve: deliveries cut short at the drain deadline are given back:", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8089", "address to listen on (127.0.0.1 unless told otherwise)")
	cmd.Flags().StringVar(&tokens, "tokens", "", "token file (env N8N_INVOKER_TOKENS)")
	cmd.Flags().StringVar(&editorURL, "editor-url", "", "n8n's editor URL for links to executions (default: n8n.base_url)")
	cmd.Flags().StringVar(&certFile, "tls-cert", "", "serve TLS with this certificate (PEM)")
	cmd.Flags().StringVar(&keyFile, "tls-key", "", "the certificate's key (PEM)")
	cmd.Flags().StringVar(&caFile, "client-ca", "", "require client certificates signed by these CAs (mTLS)")
	cmd.Flags().IntVar(&workers, "workers", 0, "invocations this process delivers at once (default: queue.workers; -1: none)")
	cmd.Flags().DurationVar(&drain, "drain", 30*time.Second, "how long requests and deliveries in flight may finish after a stop signal")
	cmd.Flags().Int64Var(&maxBody, "max-body", server.DefaultMaxBodyBytes, "request body limit in bytes")
	_ = stdout
	cmd.AddCommand(newServeTokenCmd(stdout, stderr))
	return cmd
}

func serveTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		if caFile != "" {
			return nil, usageErr("--client-ca needs --tls-cert and --tls-key")
		}
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, usageErr("--tls-cert/--tls-key: %v", err)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, usageErr("--client-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usageErr("--client-ca %s: no PEM certificate", caFile)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
}

func newServeTokenCmd(stdout, stderr io.Writer) *cobra.Command {
	var workflows []string
	cmd := &cobra.Command{
		Use:   "token NAME SCOPES [--workflows ALIAS,ID,PATTERN]",
		Short: "Make an API token: prints the token, and the line to add to the token file",
		Long: `Make a random API token for the service. SCOPES is a comma-separated list of
read, submit and replay. --workflows restricts the token to those workflows:
configured aliases, n8n workflow ids, or patterns of them such as "orders-*"
("*" is every workflow); it may then submit, read, replay and purge only
theirs. Without --workflows the token may act on every workflow and the
service warns about it once. The token is printed once on stdout; the token
file stores only its hash: add the line printed on stderr to it (the service
picks it up without a restart).`,
		Args: cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			tok, line, err := server.NewTokenFor(args[0], workflows, strings.Split(args[1], ",")...)
			if err != nil {
				return usageErr("%v", err)
			}
			fmt.Fprintln(stdout, tok)
			fmt.Fprintf(stderr, "add to the token file:\n%s\n", line)
			if len(workflows) == 0 {
				fmt.Fprintln(stderr, "this token may act on every workflow: restrict it with --workflows (or give --workflows '*' to say so)")
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&workflows, "workflows", nil, "the workflows the token may act on: aliases, n8n ids or patterns (orders-*), comma-separated")
	return cmd
}
