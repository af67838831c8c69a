package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	invoker "github.com/n8n-invoker/n8n-invoker"
	"github.com/n8n-invoker/n8n-invoker/n8napi"
)

// apiClient returns the manager and its API client, or a usage error
// when no API key is configured.
func (g *globals) apiClient(stderr io.Writer) (*invoker.Manager, *n8napi.Client, error) {
	m, err := g.manager(stderr)
	if err != nil {
		return nil, nil, err
	}
	if m.API() == nil {
		_ = m.Close(context.Background())
		return nil, nil, usageErr("this command needs n8n.api_key in the configuration")
	}
	return m, m.API(), nil
}

// apiErr maps an API error to an exit code.
func apiErr(ctx context.Context, err error) error {
	var ae *n8napi.APIError
	switch {
	case errors.As(err, &ae) && ae.StatusCode == 401:
		return &exitError{code: exitUsage, err: err}
	case errors.As(err, &ae):
		return &exitError{code: exitFailed, err: err}
	}
	return &exitError{code: exitCode(ctx, err), err: err}
}

func newWorkflowsCmd(g *globals, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "workflows", Short: "Inspect n8n workflows through the public API"}
	var active bool
	var name string
	list := &cobra.Command{
		Use:   "list [--active] [--name NAME]",
		Short: "List workflows as JSON lines (id, name, active, webhook)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, api, err := g.apiClient(stderr)
			if err != nil {
				return err
			}
			defer m.Close(context.Background())
			opts := &n8napi.WorkflowListOptions{Name: name}
			if cmd.Flags().Changed("active") {
				opts.Active = &active
			}
			type row struct {
				ID      string `json:"id"`
				Name    string `json:"name"`
				Active  bool   `json:"active"`
				Webhook string `json:"webhook,omitempty"`
			}
			for w, err := range api.Workflows.All(cmd.Context(), opts) {
				if err != nil {
					return apiErr(cmd.Context(), err)
				}
				r := row{ID: w.ID.String(), Name: w.Name, Active: w.Active}
				for _, n := range w.LiveNodes() {
					if n.Type == n8napi.WebhookNodeType {
						method, _ := n.Parameters["httpMethod"].(string)
						path, _ := n.Parameters["path"].(string)
						if method == "" {
							method = "GET"
						}
						path = strings.Trim(path, "/")
						if path == "" {
							path = n.WebhookID
						} else if strings.Contains(path, ":") {
							path = n.WebhookID + "/" + path // n8n serves dynamic paths under the node's id
						}
						r.Webhook = method + " " + strings.TrimSuffix(m.Config().N8N.BaseURL, "/") + "/webhook/" + path
						break
					}
				}
				if err := writeJSONLine(stdout, r); err != nil {
					return err
				}
			}
			return nil
		},
	}
	list.Flags().BoolVar(&active, "active", false, "only active (or, with --active=false, inactive) workflows")
	list.Flags().StringVar(&name, "name", "", "only workflows with this name")
	cmd.AddCommand(list)
	return cmd
}

func newExecutionsCmd(g *globals, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "executions", Short: "Inspect, await and retry n8n executions"}
	var (
		workflow, status string
		limit            int
		data             bool
		timeout          time.Duration
	)
	list := &cobra.Command{
		Use:   "list [--workflow ID] [--status S] [--limit N]",
		Short: "List executions as JSON lines, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, api, err := g.apiClient(stderr)
			if err != nil {
				return err
			}
			defer m.Close(context.Background())
			n := 0
			if workflow != "" {
				// An alias, an id or a name: the workflow's n8n id.
				id, err := m.WorkflowID(cmd.Context(), workflow)
				if err != nil {
					return &exitError{code: exitUsage, err: err}
				}
				workflow = id
			}
			for e, err := range api.Executions.All(cmd.Context(), &n8napi.ExecutionListOptions{WorkflowID: workflow, Status: status, IncludeData: data, Limit: min(limit, 250)}) {
				if err != nil {
					return apiErr(cmd.Context(), err)
				}
				if err := writeJSONLine(stdout, e); err != nil {
					return err
				}
				if n++; n >= limit {
					break
				}
			}
			return nil
		},
	}
	list.Flags().StringVar(&workflow, "workflow", "", "workflow: a configured alias, an n8n id or name")
	list.Flags().StringVar(&status, "status", "", "canceled, crashed, error, new, running, success, unknown or waiting")
	list.Flags().IntVar(&limit, "limit", 20, "at most this many")
	list.Flags().BoolVar(&data, "data", false, "include execution data")

	get := &cobra.Command{
		Use:   "get <execution-id>",
		Short: "Print an execution with its data",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, api, err := g.apiClient(stderr)
			if err != nil {
				return err
			}
			defer m.Close(context.Background())
			e, _, err := api.Executions.Get(cmd.Context(), args[0], true)
			if err != nil {
				return apiErr(cmd.Context(), err)
			}
			return writeJSON(stdout, e)
		},
	}
	wait := &cobra.Command{
		Use:   "wait <execution-id>",
		Short: "Wait until an execution ends; exit 0 on success, 1 otherwise",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, api, err := g.apiClient(stderr)
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
			e, _, err := api.Await(ctx, args[0], nil)
			if err != nil {
				return apiErr(ctx, err)
			}
			if err := writeJSON(stdout, e); err != nil {
				return err
			}
			if e.Status != n8napi.StatusSuccess {
				return &exitError{code: exitFailed, err: errors.New("execution " + args[0] + " ended " + e.Status)}
			}
			return nil
		},
	}
	wait.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: never)")
	var loadWorkflow bool
	retry := &cobra.Command{
		Use:   "retry <execution-id>",
		Short: "Run a failed execution again and print the new one's result",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, _, err := g.apiClient(stderr)
			if err != nil {
				return err
			}
			defer m.Close(context.Background())
			res, err := m.RetryExecution(cmd.Context(), args[0], loadWorkflow)
			if err != nil {
				_ = writeJSON(stdout, errorJSON(err))
				return apiErr(cmd.Context(), err)
			}
			return writeJSON(stdout, res)
		},
	}
	retry.Flags().BoolVar(&loadWorkflow, "load-workflow", false, "run the workflow's current version")
	cmd.AddCommand(list, get, wait, retry)
	return cmd
}
