package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/invocation"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitUnreachable = 3
	exitInterrupted = 130
)

// version is set at build time with -ldflags "-X main.version=..." (make
// build stamps scripts/version.sh's answer); else moduleVersion reads the
// module's build info.
var version = ""

// release is the version of the CHANGELOG's latest heading (a test keeps
// them equal): what a build that is neither stamped nor installed from a
// tagged module reports, followed by "-dev".
const release = "0.4.0"

// moduleVersion returns the stamped version; else the module's version
// (the tag of `go install ...@v0.4.0`); else release with the VCS
// revision when the go command recorded one (release-dev+abc123def456),
// or release-dev.
func moduleVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return release + "-dev"
	}
	return versionOf(bi)
}

func versionOf(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return release + "-dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return release + "-dev+" + rev
}

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root, g := newRoot(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if g.otel != nil {
		g.otel.close() // flush traces, stop the metrics server
	}
	for _, f := range g.cleanup {
		f()
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "n8n-invoker:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitUsage // cobra's own errors: unknown flag or command
}

type globals struct {
	configPath  string
	logLevel    string
	metricsAddr string
	server      string // --server: a running service instead of the local store
	tokenFile   string
	wantMetrics bool // serve: /metrics from the Prometheus registry
	otel        *otelSetup
	cleanup     []func()
}

func newRoot(stdin io.Reader, stdout, stderr io.Writer) (*cobra.Command, *globals) {
	g := &globals{}
	root := &cobra.Command{
		Use:           "n8n-invoker",
		Short:         "Run n8n workflows reliably and see what happened to them",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       moduleVersion(),
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetIn(stdin)
	def := os.Getenv("N8N_INVOKER_CONFIG")
	if def == "" {
		def = "n8n-invoker.yaml"
	}
	root.PersistentFlags().StringVarP(&g.configPath, "config", "c", def, "configuration file (env N8N_INVOKER_CONFIG)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "warn", "log level on stderr: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this address (e.g. 127.0.0.1:9464) while running")
	root.PersistentFlags().StringVar(&g.server, "server", os.Getenv("N8N_INVOKER_SERVER"), "talk to a running n8n-invoker serve at this URL (enqueue, invocations; env N8N_INVOKER_SERVER)")
	root.PersistentFlags().StringVar(&g.tokenFile, "token-file", "", "file holding the service token for --server (default: env N8N_INVOKER_TOKEN)")
	root.AddCommand(newServeCmd(g, stdout, stderr),
		newRunCmd(g, stdin, stdout, stderr), newBatchCmd(g, stdin, stdout, stderr),
		newWorkflowsCmd(g, stdout, stderr), newExecutionsCmd(g, stdout, stderr), newDLQCmd(g, stdout, stderr),
		newHealthCmd(g, stdout, stderr), newEnqueueCmd(g, stdin, stdout, stderr), newWorkerCmd(g, stdout, stderr),
		newInvocationsCmd(g, stdout, stderr))
	return root, g
}

func (g *globals) manager(stderr io.Writer) (*invoker.Manager, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, usageErr("--log-level: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg, err := config.Load(g.configPath)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err}
	}
	if g.otel == nil {
		if g.otel, err = newOtelSetup(context.Background(), cfg, g.metricsAddr, g.wantMetrics, stderr); err != nil {
			return nil, &exitError{code: exitUsage, err: err}
		}
	}
	m, err := invoker.New(cfg, append([]invoker.Option{invoker.WithLogger(logger)}, g.otel.opts...)...)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err}
	}
	// SIGHUP re-reads the API key file: rotation without restart.
	hup, done := make(chan os.Signal, 1), make(chan struct{})
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for {
			select {
			case <-hup:
				changed, err := m.ReloadSecrets(context.Background())
				logger.Info("SIGHUP: secrets reloaded", "changed", changed, "error", err)
			case <-done:
				return
			}
		}
	}()
	g.cleanup = append(g.cleanup, func() { signal.Stop(hup); close(done) })
	return m, nil
}

func newRunCmd(g *globals, stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	var (
		params, pathParams []string
		data               string
		timeout            time.Duration
		idemKey            string
		wait               bool
	)
	cmd := &cobra.Command{
		Use:   "run <workflow|workflow-id> [-p key=value ...] [--data @file.json] [--wait]",
		Short: "Run a workflow and print its result as JSON",
		Long: `Run a workflow named in the configuration's workflows section, or, with
n8n.api_key set, an n8n workflow id or exact name, and print the result as
JSON on stdout. With --wait the execution is followed to its end through
n8n's API: the output stays the webhook's answer, last_node_output holds
every item of the last node (also for a webhook that answers at once), and a
failure reports n8n's message and failing node. -P name=value fills a path
parameter of a webhook path such as orders/:orderId.

Parameters come from -p key=value (string values; repeatable) or from --data,
a JSON object given inline, as @file.json, or as @- for stdin. -p values are
merged over --data.

Exit codes: 0 success; 1 the workflow failed or n8n answered with an error;
2 usage or configuration error, unknown workflow; 3 n8n unreachable or
unavailable; 130 interrupted.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := readParams(params, data, stdin)
			if err != nil {
				return err
			}
			m, err := g.manager(stderr)
			if err != nil {
				return err
			}
			defer m.Close(context.Background())
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			var opts []invoker.CallOption
			if wait {
				opts = append(opts, invoker.Wait())
			}
			pp := map[string]string{}
			for _, kv := range pathParams {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usageErr("-P %q: want name=value", kv)
				}
				pp[k] = v
			}
			res, err := m.Execute(ctx, &invocation.Request{Workflow: args[0], Params: body, PathParams: pp, IdempotencyKey: idemKey}, opts...)
			if err != nil {
				_ = writeJSON(stdout, errorJSON(err))
				return &exitError{code: exitCode(ctx, err), err: err}
			}
			return writeJSON(stdout, res)
		},
	}
	cmd.Flags().StringArrayVarP(&params, "param", "p", nil, "parameter key=value (repeatable)")
	cmd.Flags().StringArrayVarP(&pathParams, "path-param", "P", nil, "path parameter name=value, for a webhook path such as orders/:orderId (repeatable)")
	cmd.Flags().StringVarP(&data, "data", "d", "", "JSON object of parameters: inline, @file.json or @- for stdin")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "overall deadline, retries included (0: none)")
	cmd.Flags().StringVar(&idemKey, "idempotency-key", "", "idempotency key to send (default: the request id)")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the execution to its end through n8n's API (needs n8n.api_key)")
	return cmd
}

func readParams(params []string, data string, stdin io.Reader) (map[string]any, error) {
	body := map[string]any{}
	if data != "" {
		var raw []byte
		var err error
		switch {
		case data == "@-":
			raw, err = io.ReadAll(io.LimitReader(stdin, 64<<20))
		case strings.HasPrefix(data, "@"):
			raw, err = os.ReadFile(data[1:])
		default:
			raw = []byte(data)
		}
		if err != nil {
			return nil, usageErr("--data: %v", err)
		}
		if err := json.Unmarshal(raw, &body); err != nil || body == nil {
			return nil, usageErr("--data: want a JSON object: %v", err)
		}
	}
	for _, p := range params {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, usageErr("-p %q: want key=value", p)
		}
		body[k] = v
	}
	return body, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeJSONLine(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }

func newHealthCmd(g *globals, stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "health",
		Short: "Probe n8n and report breakers and the dead-letter queue; exit 0 when healthy, 1 otherwise",
		Long: `Probe n8n's /healthz and /healthz/readiness and report the circuit
breakers and the dead-letter queue's depth as JSON. Exit 0 when n8n is live
and ready and no breaker is open, 1 otherwise, 2 on a configuration error: fit
for a container probe.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := g.manager(stderr)
			if err != nil {
				return err
			}
			defer m.Close(context.Background())
			h := m.Health(cmd.Context())
			if err := writeJSON(stdout, h); err != nil {
				return err
			}
			if !h.Healthy {
				return &exitError{code: exitFailed, err: errors.New("unhealthy")}
			}
			return nil
		},
	}
}
