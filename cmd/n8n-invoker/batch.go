package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/invocation"
	"github.com/n8n-invoker/n8n-invoker/pack"
)

const maxLine = 16 << 20

// batchLine is one output line.
type batchLine struct {
	Index    int                `json:"index"`
	Workflow string             `json:"workflow"`
	OK       bool               `json:"ok"`
	Result   *invocation.Result `json:"result,omitempty"`
	Error    string             `json:"error,omitempty"`
	Class    string             `json:"class,omitempty"`
	Attempts int                `json:"attempts,omitempty"`
}

func newBatchCmd(g *globals, stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	var (
		file, output, concurrency string
		failFast                  bool
		packItems                 int
	)
	cmd := &cobra.Command{
		Use:   "batch --file items.jsonl [--concurrency N|auto]",
		Short: "Run a batch of workflow items from a JSONL file",
		Long: `Run the items of a JSONL file, one {"id": "<workflow>", "params": {...},
"idempotency_key": "..."} object per line, and write one JSON result per line
(index, id, ok, result or error, class, attempts), in the order items end.

The file is checked before anything runs: a malformed line is a usage error
(exit 2) that names the line, and nothing is sent. With --file - items are
read from stdin as they come; a malformed line there stops reading.

A progress bar is drawn on stderr when it is a terminal; otherwise a plain
progress line is printed every 5 s. A summary ends the run.

Exit codes: 0 every item succeeded; 1 some item failed or was canceled;
2 usage or configuration error; 130 interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageErr("--file is required (a JSONL file, or - for stdin)")
			}
			maxC, adaptive, err := parseConcurrency(concurrency)
			if err != nil {
				return err
			}
			total := -1
			if file != "-" {
				if total, err = checkJSONL(file); err != nil {
					return err
				}
			}
			out := stdout
			if output != "" {
				f, err := os.Create(output)
				if err != nil {
					return usageErr("--output: %v", err)
				}
				defer f.Close()
				out = f
			}
			m, err := g.manager(stderr)
			if err != nil {
				return err
			}
			defer m.Close(context.Background())

			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			var readErr error
			items := readJSONL(file, stdin, &readErr, cancel)
			prog := newProgress(stderr, total)
			opts := []invoker.BatchOption{invoker.WithProgress(prog.update)}
			if adaptive {
				opts = append(opts, invoker.WithAdaptiveConcurrency())
			}
			if failFast {
				opts = append(opts, invoker.WithFailFast())
			}
			var seq iter.Seq[invoker.BatchResult]
			if packItems > 0 {
				// Packing cuts the whole batch: read it first.
				var all []invoker.BatchItem
				for it := range items {
					all = append(all, it)
				}
				opts = append(opts, invoker.WithPacking(pack.Options{MaxItems: packItems}))
				res, err := m.ExecuteBatch(ctx, all, maxC, opts...)
				if err != nil {
					return usageErr("%v", err)
				}
				seq = slices.Values(res)
			} else if seq, err = m.ExecuteStream(ctx, items, maxC, opts...); err != nil {
				return usageErr("%v", err)
			}
			enc := json.NewEncoder(out)
			start := time.Now()
			var succeeded, failed, canceled int
			for r := range seq {
				line := batchLine{Index: r.Index, Workflow: r.Item.Workflow, OK: r.Err == nil, Result: r.Result}
				switch {
				case r.Err == nil:
					succeeded++
				case invocation.IsCanceled(r.Err):
					canceled++
				default:
					failed++
				}
				if r.Err != nil {
					line.Error, line.Class, line.Attempts = r.Err.Error(), invocation.ClassOf(r.Err).String(), invocation.AttemptsOf(r.Err)
					if invocation.IsCanceled(r.Err) {
						line.Class = "canceled"
					}
				}
				if err := enc.Encode(line); err != nil {
					return &exitError{code: exitFailed, err: fmt.Errorf("writing results: %w", err)}
				}
			}
			prog.finish()
			elapsed := time.Since(start)
			n := succeeded + failed + canceled
			fmt.Fprintf(stderr, "n8n-invoker: %d items in %s (%.1f/s): %d succeeded, %d failed, %d canceled\n",
				n, elapsed.Round(time.Millisecond), float64(n)/max(elapsed.Seconds(), 1e-9), succeeded, failed, canceled)
			switch {
			case readErr != nil:
				return usageErr("%v (items after it were not read)", readErr)
			case cmd.Context().Err() != nil:
				return &exitError{code: exitInterrupted, err: cmd.Context().Err()}
			case failed+canceled > 0:
				return &exitError{code: exitFailed, err: fmt.Errorf("%d of %d items did not succeed", failed+canceled, n)}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "JSONL file of items, or - for stdin")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write results here instead of stdout")
	cmd.Flags().StringVar(&concurrency, "concurrency", "5", "items in flight: a number, or auto to adapt (up to 32)")
	cmd.Flags().BoolVar(&failFast, "fail-fast", false, "stop at the first failed item")
	cmd.Flags().IntVar(&packItems, "pack", 0, "send N items per call to a packed workflow (see templates/packed-items.json)")
	return cmd
}

// parseConcurrency reads N or "auto" (adaptive, up to 32).
func parseConcurrency(s string) (int, bool, error) {
	if s == "auto" {
		return 32, true, nil
	}
	if n, ok := strings.CutPrefix(s, "auto:"); ok {
		v, err := strconv.Atoi(n)
		if err != nil || v < 1 {
			return 0, false, usageErr("--concurrency auto:N needs N >= 1, got %q", s)
		}
		return v, true, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, false, usageErr("--concurrency must be a number >= 1 or auto, got %q", s)
	}
	return n, false, nil
}

func parseItem(b []byte) (invoker.BatchItem, error) {
	var it invoker.BatchItem
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var known struct {
		Workflow       string          `json:"workflow"`
		ID             string          `json:"id"`
		Params         json.RawMessage `json:"params"`
		IdempotencyKey string          `json:"idempotency_key"`
		PathParams     json.RawMessage `json:"path_params"`
	}
	if err := dec.Decode(&known); err != nil { // unknown fields are an error
		return it, err
	}
	if err := json.Unmarshal(b, &it); err != nil {
		return it, err
	}
	if it.Workflow == "" {
		return it, fmt.Errorf(`missing "workflow" (or the design's "id")`)
	}
	return it, nil
}

// checkJSONL validates every line of path and counts the items.
func checkJSONL(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, usageErr("--file: %v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), maxLine)
	n, line := 0, 0
	for s.Scan() {
		line++
		if strings.TrimSpace(s.Text()) == "" {
			continue
		}
		if _, err := parseItem(s.Bytes()); err != nil {
			return 0, usageErr("%s:%d: %v", path, line, err)
		}
		n++
	}
	if err := s.Err(); err != nil {
		return 0, usageErr("%s:%d: %v", path, line+1, err)
	}
	return n, nil
}

// readJSONL yields the items of path (or stdin for "-") lazily. A
// malformed line (possible only on stdin) sets *errp and stops.
func readJSONL(path string, stdin io.Reader, errp *error, stop func()) iter.Seq[invoker.BatchItem] {
	return func(yield func(invoker.BatchItem) bool) {
		r := stdin
		name := "stdin"
		if path != "-" {
			f, err := os.Open(path)
			if err != nil {
				*errp = err
				return
			}
			defer f.Close()
			r, name = f, path
		}
		s := bufio.NewScanner(r)
		s.Buffer(make([]byte, 64<<10), maxLine)
		line := 0
		for s.Scan() {
			line++
			if strings.TrimSpace(s.Text()) == "" {
				continue
			}
			it, err := parseItem(s.Bytes())
			if err != nil {
				*errp = fmt.Errorf("%s:%d: %v", name, line, err)
				return
			}
			if !yield(it) {
				return
			}
		}
		if err := s.Err(); err != nil {
			*errp = fmt.Errorf("%s:%d: %v", name, line+1, err)
		}
	}
}

// progress draws a bar on a terminal, or prints a line every 5 s.
type progress struct {
	mu    sync.Mutex
	bar   *progressbar.ProgressBar
	w     io.Writer
	last  time.Time
	state invoker.Progress
}

func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, last: time.Now()}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w), progressbar.OptionSetDescription("items"),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("items"),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
	}
	return p
}

func (p *progress) update(s invoker.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = s
	if p.bar != nil {
		p.bar.Describe(fmt.Sprintf("ok %d failed %d in flight %d (limit %d)", s.Succeeded, s.Failed, s.InFlight, s.Limit))
		_ = p.bar.Set(s.Done())
		return
	}
	if time.Since(p.last) >= 5*time.Second {
		p.last = time.Now()
		fmt.Fprintf(p.w, "n8n-invoker: %d done (%d ok, %d failed, %d canceled), %d in flight, limit %d\n",
			s.Done(), s.Succeeded, s.Failed, s.Canceled, s.InFlight, s.Limit)
	}
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
