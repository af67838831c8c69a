package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/outbox"
	"github.com/n8n-invoker/n8n-invoker/secret"
	"github.com/n8n-invoker/n8n-invoker/server"
)

// queue opens the outbox of the configured store with this process's
// number of workers, or, with --server, a client of that service; done
// releases it.
func (g *globals) queue(ctx context.Context, stderr io.Writer, workers int) (done func(), q outbox.Queue, err error) {
	if g.server != "" {
		c, err := g.serviceClient()
		if err != nil {
			return nil, nil, err
		}
		return func() {}, c, nil
	}
	m, err := g.dlqManager(stderr)
	if err != nil {
		return nil, nil, err
	}
	o := outbox.OptionsFromConfig(m.Config().Queue)
	o.Workers = workers
	q, err = outbox.Open(ctx, m, &o)
	if err != nil {
		_ = m.Close(context.Background())
		return nil, nil, &exitError{code: exitUsage, err: err}
	}
	return func() { _ = m.Close(context.Background()) }, q, nil
}

// serviceClient is the client of --server, with the token of
// --token-file or $N8N_INVOKER_TOKEN.
func (g *globals) serviceClient() (*server.Client, error) {
	tok := os.Getenv("N8N_INVOKER_TOKEN")
	if g.tokenFile != "" {
		b, err := os.ReadFile(g.tokenFile)
		if err != nil {
			return nil, usageErr("--token-file: %v", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	c, err := server.NewClient(g.server, secret.New(tok), nil)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	return c, nil
}

func newEnqueueCmd(g *globals, stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	var (
		params, pathParams []string
		data, idemKey      string
		wait               bool
		timeout            time.Duration
	)
	cmd := &cobra.Command{
		Use:   "enqueue <workflow> [-p key=value ...] [--data @file.json] [--idempotency-key K] [--wait]",
		Short: "Store an invocation for the workers to deliver and print its id",
		Long: `Store an invocation durably (the configured store: SQLite by default,
PostgreSQL in fleet mode) and print {"id": ...} once it is stored; workers
(n8n-invoker worker, or a service with the outbox's workers) deliver it
through the whole pipeline. The same --idempotency-key with the same
parameters returns the stored invocation; with others it is refused (exit 2).
With --wait it then waits for the invocation's end and prints it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := readParams(params, data, stdin)
			if err != nil {
				return err
			}
			pp, err := readPathParams(pathParams)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			done, q, err := g.queue(ctx, stderr, -1)
			if err != nil {
				return err
			}
			defer done()
			id, err := q.Enqueue(ctx, &invocation.Request{Workflow: args[0], Params: body, PathParams: pp, IdempotencyKey: idemKey})
			if err != nil {
				_ = writeJSON(stdout, errorJSON(err))
				if errors.Is(err, outbox.ErrInvalid) || invocation.CodeOf(err) == invocation.CodeKeyConflict {
					return &exitError{code: exitUsage, err: err}
				}
				return &exitError{code: exitCode(ctx, err), err: err}
			}
			if !wait {
				return writeJSON(stdout, map[string]string{"id": id})
			}
			return awaitAndPrint(ctx, q, id, stdout)
		},
	}
	cmd.Flags().StringArrayVarP(&params, "param", "p", nil, "parameter key=value (repeatable)")
	cmd.Flags().StringArrayVarP(&pathParams, "path-param", "P", nil, "path parameter name=value (repeatable)")
	cmd.Flags().StringVarP(&data, "data", "d", "", "JSON object of parameters: inline, @file.json or @- for stdin")
	cmd.Flags().StringVar(&idemKey, "idempotency-key", "", "idempotency key (default: the invocation's id)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the invocation's end and print it")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "overall deadline (0: none)")
	return cmd
}

func readPathParams(kvs []string) (map[string]string, error) {
	pp := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageErr("-P %q: want name=value", kv)
		}
		pp[k] = v
	}
	return pp, nil
}

// awaitAndPrint waits for invocation id and prints it; the exit code
// says how it ended.
func awaitAndPrint(ctx context.Context, q outbox.Queue, id string, stdout io.Writer) error {
	inv, err := q.Await(ctx, id)
	if err != nil {
		if inv != nil {
			_ = writeJSON(stdout, inv)
		}
		return &exitError{code: exitCode(ctx, err), err: err}
	}
	if err := writeJSON(stdout, inv); err != nil {
		return err
	}
	if inv.Status != outbox.Succeeded {
		return &exitError{code: exitFailed, err: fmt.Errorf("invocation %s %s: %s", id, inv.Status, inv.Error)}
	}
	return nil
}

func newWorkerCmd(g *globals, stdout, stderr io.Writer) *cobra.Command {
	var (
		workers int
		drain   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "worker [--workers N]",
		Short: "Deliver queued invocations until SIGINT or SIGTERM",
		Long: `Deliver the invocations stored by enqueue (or by a service's Enqueue and
EnqueueTx) through the whole pipeline: journal and lease, reconcile before
any re-send, retries, breaker pause, dead-lettering. Several worker processes
may share a store. On SIGINT or SIGTERM it stops claiming, lets deliveries in
flight finish for --drain, and gives back the rest (delivered again, after a
reconcile).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			m, err := g.dlqManager(stderr)
			if err != nil {
				return err
			}
			defer m.Close(context.Background())
			q, err := startWorkers(ctx, m, workers, true)
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "n8n-invoker worker: delivering (store %s)\n", backendName(m))
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), drain)
			defer cancel()
			if err := q.Stop(sctx); err != nil {
				fmt.Fprintln(stderr, "n8n-invoker worker: deliveries cut short at the drain deadline are given back:", err)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&workers, "workers", 0, "invocations delivered at once (default: queue.workers, 10)")
	cmd.Flags().DurationVar(&drain, "drain", 30*time.Second, "how long deliveries in flight may finish after a stop signal")
	_ = stdout
	return cmd
}

// startWorkers opens m's outbox with workers (0: queue.workers) and
// starts them; a worker process must have some (required).
func startWorkers(ctx context.Context, m *invoker.Manager, workers int, required bool) (outbox.Queue, error) {
	o := outbox.OptionsFromConfig(m.Config().Queue)
	if workers != 0 {
		o.Workers = workers
	}
	if required && o.Workers < 0 {
		return nil, usageErr("--workers / queue.workers must be positive for a worker")
	}
	q, err := outbox.Open(ctx, m, &o)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err}
	}
	if err := q.Start(context.WithoutCancel(ctx)); err != nil {
		return nil, &exitError{code: exitFailed, err: err}
	}
	return q, nil
}

func backendName(m *invoker.Manager) string {
	if b := m.Config().Store.Backend; b != "" {
		return b
	}
	return "sqlite"
}

func newInvocationsCmd(g *globals, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "invocations", Short: "Get, wait for and list enqueued invocations"}
	get := &cobra.Command{
		Use:   "get <id>",
		Short: "Print an invocation's status and result as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			done, q, err := g.queue(cmd.Context(), stderr, -1)
			if err != nil {
				return err
			}
			defer done()
			inv, err := q.Get(cmd.Context(), args[0])
			if err != nil {
				code := exitFailed
				if errors.Is(err, outbox.ErrNotFound) {
					code = exitUsage
				}
				return &exitError{code: code, err: err}
			}
			return writeJSON(stdout, inv)
		},
	}
	var timeout time.Duration
	wait := &cobra.Command{
		Use:   "wait <id> [--timeout D]",
		Short: "Wait for an invocation's end and print it (exit 1 unless it succeeded)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			done, q, err := g.queue(ctx, stderr, -1)
			if err != nil {
				return err
			}
			defer done()
			if _, err := q.Get(ctx, args[0]); errors.Is(err, outbox.ErrNotFound) {
				return &exitError{code: exitUsage, err: err}
			}
			return awaitAndPrint(ctx, q, args[0], stdout)
		},
	}
	wait.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: none)")
	var f outbox.Filter
	var output string
	list := &cobra.Command{
		Use:   "list [--status S] [--workflow W] [--limit N]",
		Short: "List invocations, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return usageErr("--output must be table or json, got %q", output)
			}
			if f.Status != "" && !slices.Contains(outbox.Statuses, f.Status) {
				return usageErr("--status must be one of %v, got %q", outbox.Statuses, f.Status)
			}
			done, q, err := g.queue(cmd.Context(), stderr, -1)
			if err != nil {
				return err
			}
			defer done()
			invs, err := q.List(cmd.Context(), f)
			if err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			if output == "json" {
				for _, inv := range invs {
					if err := writeJSONLine(stdout, inv); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tWORKFLOW\tSTATUS\tDELIVERIES\tEXECUTION\tCREATED\tERROR")
			for _, inv := range invs {
				exec := ""
				if inv.Result != nil {
					exec = inv.Result.ExecutionID
				}
				msg := inv.Error
				if len(msg) > 80 {
					msg = msg[:80] + "..."
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", inv.ID, inv.Workflow, inv.Status, inv.Deliveries, exec, inv.CreatedAt.Format(time.RFC3339), msg)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&f.Status, "status", "", "only invocations with this status")
	list.Flags().StringVar(&f.Workflow, "workflow", "", "only invocations of this workflow")
	list.Flags().IntVar(&f.Limit, "limit", 100, "at most this many")
	list.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	cmd.AddCommand(get, wait, list)
	return cmd
}
