package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/dlq"
)

type dlqFlags struct {
	workflow, class, reason, output string
	since                           time.Duration
	limit                           int
}

func (f *dlqFlags) add(cmd *cobra.Command, withOutput bool) {
	cmd.Flags().StringVar(&f.workflow, "workflow", "", "only entries of this workflow")
	cmd.Flags().StringVar(&f.class, "class", "", "only entries whose last error has this class (transient, unknown, permanent)")
	cmd.Flags().StringVar(&f.reason, "reason", "", "only entries with this reason (exhausted, circuit-open, interrupted, ...)")
	cmd.Flags().DurationVar(&f.since, "since", 0, "only entries created within this long")
	cmd.Flags().IntVar(&f.limit, "limit", 0, "at most this many (0: all)")
	if withOutput {
		cmd.Flags().StringVarP(&f.output, "output", "o", "table", "table or json")
	}
}

func (f *dlqFlags) filter(ids []string) (dlq.Filter, error) {
	flt := dlq.Filter{Workflow: f.workflow, Class: f.class, Reason: f.reason, Limit: f.limit}
	if f.since > 0 {
		flt.Since = time.Now().Add(-f.since)
	}
	for _, s := range ids {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return flt, usageErr("entry id %q is not a number", s)
		}
		flt.IDs = append(flt.IDs, id)
	}
	if f.output != "" && f.output != "table" && f.output != "json" {
		return flt, usageErr("--output must be table or json, got %q", f.output)
	}
	return flt, nil
}

// dlqManager returns a manager with a dead-letter queue, or a usage error.
func (g *globals) dlqManager(stderr io.Writer) (*invoker.Manager, error) {
	m, err := g.manager(stderr)
	if err != nil {
		return nil, err
	}
	if m.DLQ() == nil {
		_ = m.Close(context.Background())
		return nil, usageErr("no dead-letter queue: set dlq.enabled in the configuration")
	}
	return m, nil
}

func newDLQCmd(g *globals, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "dlq", Short: "List, show, replay and purge the dead-letter queue"}
	var lf, rf, pf dlqFlags
	list := &cobra.Command{
		Use:   "list [filters]",
		Short: "List dead letters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flt, err := lf.filter(nil)
			if err != nil {
				return err
			}
			m, err := g.dlqManager(stderr)
			if err != nil {
				return err
			}
			defer m.Close(context.Background())
			entries, err := m.DLQ().List(cmd.Context(), flt)
			if err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			if lf.output == "json" {
				for _, e := range entries {
					if err := writeJSONLine(stdout, e); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tWORKFLOW\tREASON\tCLASS\tATTEMPTS\tREPLAYS\tCREATED\tLAST ERROR")
			for _, e := range entries {
				msg := e.LastError.Message
				if len(msg) > 80 {
					msg = msg[:80] + "..."
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", e.ID, e.Workflow, e.Reason, e.LastError.Class,
					e.Attempts, e.Replays, e.CreatedAt.Format(time.RFC3339), msg)
			}
			return tw.Flush()
		},
	}
	lf.add(list, true)
	show := &cobra.Command{
		Use:   "show <id>",
		Short: "Show one dead letter as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return usageErr("entry id %q is not a number", args[0])
			}
			m, err := g.dlqManager(stderr)
			if err != nil {
				return err
			}
			defer m.Close(context.Background())
			e, err := m.DLQ().Get(cmd.Context(), id)
			if err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			return writeJSON(stdout, e)
		},
	}
	var includeFailed, includeAmbiguous bool
	var replayConc int
	replay := &cobra.Command{
		Use:   "replay [id ...] [filters]",
		Short: "Replay dead letters with their idempotency keys; exit 1 if any fails again",
		RunE: func(cmd *cobra.Command, args []string) error {
			flt, err := rf.filter(args)
			if err != nil {
				return err
			}
			m, err := g.manager(stderr)
			if err != nil {
				return err
			}
			defer m.Close(context.Background())
			var opts []invoker.ReplayOption
			if includeFailed {
				opts = append(opts, invoker.ReplayFailed())
				fmt.Fprintln(stderr, "n8n-invoker: --include-failed: entries whose workflow ran and failed are run again")
			} else {
				fmt.Fprintln(stderr, "n8n-invoker: entries whose workflow ran and failed are skipped (--include-failed runs them again); each entry is reconciled with n8n before it is sent")
			}
			if includeAmbiguous {
				opts = append(opts, invoker.ReplayAmbiguous())
			}
			if replayConc > 0 {
				opts = append(opts, invoker.ReplayConcurrency(replayConc))
			}
			rep, err := m.ReplayDeadLetters(cmd.Context(), flt, opts...)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if err := writeJSON(stdout, rep); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "n8n-invoker: replayed %d: %d succeeded, %d had already succeeded or run, %d failed again, %d skipped\n",
				rep.Selected, rep.Succeeded, rep.AlreadyDone, rep.Failed, rep.Skipped)
			if rep.Failed > 0 {
				return &exitError{code: exitFailed, err: fmt.Errorf("%d entries failed again", rep.Failed)}
			}
			return nil
		},
	}
	rf.add(replay, false)
	replay.Flags().BoolVar(&includeFailed, "include-failed", false, "also replay entries whose workflow ran in n8n and failed (runs them again)")
	replay.Flags().BoolVar(&includeAmbiguous, "include-ambiguous", false, "without n8n.api_key, also replay entries that may have run (ambiguous, unresolved): they may run twice")
	replay.Flags().IntVar(&replayConc, "concurrency", 0, "entries replayed at once (default 5)")
	var all bool
	purge := &cobra.Command{
		Use:   "purge [id ...] [filters] [--all]",
		Short: "Delete dead letters without replaying them",
		RunE: func(cmd *cobra.Command, args []string) error {
			flt, err := pf.filter(args)
			if err != nil {
				return err
			}
			if !all && len(args) == 0 && pf.workflow == "" && pf.class == "" && pf.reason == "" && pf.since == 0 {
				return usageErr("purge needs entry ids, a filter, or --all")
			}
			m, err := g.dlqManager(stderr)
			if err != nil {
				return err
			}
			defer m.Close(context.Background())
			s, ok := m.DLQ().(dlq.Purger)
			if !ok {
				return usageErr("purge needs a store that can purge (dlq.Purger: sqlite, postgres)")
			}
			n, err := s.Purge(cmd.Context(), flt)
			if err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			fmt.Fprintf(stdout, "purged %d\n", n)
			return nil
		},
	}
	pf.add(purge, false)
	purge.Flags().BoolVar(&all, "all", false, "purge every entry")
	cmd.AddCommand(list, show, replay, purge)
	return cmd
}
