package n8napi

import (
	"context"
	"errors"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// WorkflowsService handles /workflows.
type WorkflowsService service

// WorkflowListOptions filters a workflow list.
type WorkflowListOptions struct {
	Active *bool
	Tags   string // comma-separated tag names
	Name   string
	Limit  int // up to 250
	Cursor string
}

func (o *WorkflowListOptions) values() url.Values {
	q := url.Values{}
	if o == nil {
		return q
	}
	if o.Active != nil {
		q.Set("active", strconv.FormatBool(*o.Active))
	}
	setNonZero(q, "tags", o.Tags)
	setNonZero(q, "name", o.Name)
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	setNonZero(q, "cursor", o.Cursor)
	return q
}

func setNonZero(q url.Values, k, v string) {
	if v != "" {
		q.Set(k, v)
	}
}

// List returns one page of workflows.
func (s *WorkflowsService) List(ctx context.Context, opts *WorkflowListOptions) ([]*Workflow, *Response, error) {
	return list[*Workflow](ctx, s.c, "workflows", opts.values())
}

// All iterates over every workflow, page after page.
func (s *WorkflowsService) All(ctx context.Context, opts *WorkflowListOptions) iter.Seq2[*Workflow, error] {
	return all[*Workflow](ctx, s.c, "workflows", opts.values())
}

// Get returns a workflow with its nodes (and, on n8n 2.x, its active
// version).
func (s *WorkflowsService) Get(ctx context.Context, id string) (*Workflow, *Response, error) {
	w := new(Workflow)
	resp, err := s.c.call(ctx, http.MethodGet, "workflows/"+url.PathEscape(id), nil, nil, w)
	if err != nil {
		return nil, resp, err
	}
	return w, resp, nil
}

// Create creates a workflow (name, nodes, connections and settings).
func (s *WorkflowsService) Create(ctx context.Context, w *Workflow) (*Workflow, *Response, error) {
	out := new(Workflow)
	body := map[string]any{"name": w.Name, "nodes": w.Nodes, "connections": w.Connections, "settings": w.Settings}
	resp, err := s.c.call(ctx, http.MethodPost, "workflows", nil, body, out)
	if err != nil {
		return nil, resp, err
	}
	return out, resp, nil
}

// Delete deletes a workflow.
func (s *WorkflowsService) Delete(ctx context.Context, id string) (*Response, error) {
	return s.c.call(ctx, http.MethodDelete, "workflows/"+url.PathEscape(id), nil, nil, nil)
}

// Activate activates (publishes) a workflow.
func (s *WorkflowsService) Activate(ctx context.Context, id string) (*Workflow, *Response, error) {
	w := new(Workflow)
	resp, err := s.c.call(ctx, http.MethodPost, "workflows/"+url.PathEscape(id)+"/activate", nil, nil, w)
	if err != nil {
		return nil, resp, err
	}
	return w, resp, nil
}

// Deactivate deactivates a workflow.
func (s *WorkflowsService) Deactivate(ctx context.Context, id string) (*Workflow, *Response, error) {
	w := new(Workflow)
	resp, err := s.c.call(ctx, http.MethodPost, "workflows/"+url.PathEscape(id)+"/deactivate", nil, nil, w)
	if err != nil {
		return nil, resp, err
	}
	return w, resp, nil
}

// ExecutionsService handles /executions.
type ExecutionsService service

// ExecutionListOptions filters an execution list. n8n leaves running
// executions out of an unfiltered list; ask for Status "running".
type ExecutionListOptions struct {
	WorkflowID  string
	Status      string
	ProjectID   string
	IncludeData bool
	Limit       int // up to 250
	Cursor      string
	// StartedAfter and StartedBefore, when not zero, filter by start time
	// on n8n's clock. n8n 2.x accepts them; 1.x answers 400.
	StartedAfter  time.Time
	StartedBefore time.Time
}

func (o *ExecutionListOptions) values() url.Values {
	q := url.Values{}
	if o == nil {
		return q
	}
	setNonZero(q, "workflowId", o.WorkflowID)
	setNonZero(q, "status", o.Status)
	setNonZero(q, "projectId", o.ProjectID)
	if o.IncludeData {
		q.Set("includeData", "true")
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	setNonZero(q, "cursor", o.Cursor)
	if !o.StartedAfter.IsZero() {
		q.Set("startedAfter", o.StartedAfter.UTC().Format(time.RFC3339Nano))
	}
	if !o.StartedBefore.IsZero() {
		q.Set("startedBefore", o.StartedBefore.UTC().Format(time.RFC3339Nano))
	}
	return q
}

// List returns one page of executions, newest first.
func (s *ExecutionsService) List(ctx context.Context, opts *ExecutionListOptions) ([]*Execution, *Response, error) {
	return list[*Execution](ctx, s.c, "executions", opts.values())
}

// All iterates over every execution matching opts, newest first.
func (s *ExecutionsService) All(ctx context.Context, opts *ExecutionListOptions) iter.Seq2[*Execution, error] {
	return all[*Execution](ctx, s.c, "executions", opts.values())
}

// Get returns an execution, with its data when includeData.
func (s *ExecutionsService) Get(ctx context.Context, id string, includeData bool) (*Execution, *Response, error) {
	var q url.Values
	if includeData {
		q = url.Values{"includeData": {"true"}}
	}
	e := new(Execution)
	resp, err := s.c.call(ctx, http.MethodGet, "executions/"+url.PathEscape(id), q, nil, e)
	if err != nil {
		return nil, resp, err
	}
	return e, resp, nil
}

// Find returns execution id of workflowID like Get, and when n8n answers
// Get with a 500 (a known bug of recent n8n versions for executions that
// were not started by hand) it finds the execution in the workflow's
// list instead: newest first, page after page until the id is passed
// (the list has no id filter), then among the running and waiting ones,
// which the unfiltered list leaves out. Without a workflowID it is Get.
func (s *ExecutionsService) Find(ctx context.Context, workflowID, id string, includeData bool) (*Execution, *Response, error) {
	e, resp, err := s.Get(ctx, id, includeData)
	var ae *APIError
	if err == nil || workflowID == "" || !errors.As(err, &ae) || ae.StatusCode != http.StatusInternalServerError {
		return e, resp, err
	}
	want, numeric := strconv.ParseInt(id, 10, 64)
	opts := &ExecutionListOptions{WorkflowID: workflowID, IncludeData: includeData, Limit: 250}
	if includeData {
		opts.Limit = 50
	}
	for {
		page, lresp, lerr := s.List(ctx, opts)
		if lerr != nil {
			return nil, lresp, err
		}
		passed := false
		for _, x := range page {
			if x.ID.String() == id {
				return x, lresp, nil
			}
			if n, perr := strconv.ParseInt(x.ID.String(), 10, 64); perr == nil && numeric == nil && n < want {
				passed = true
			}
		}
		if passed || lresp.NextCursor == "" {
			break
		}
		opts.Cursor = lresp.NextCursor
	}
	for _, status := range []string{StatusRunning, StatusWaiting} {
		page, lresp, lerr := s.List(ctx, &ExecutionListOptions{WorkflowID: workflowID, Status: status, IncludeData: includeData, Limit: 250})
		if lerr != nil {
			continue
		}
		for _, x := range page {
			if x.ID.String() == id {
				return x, lresp, nil
			}
		}
	}
	return nil, resp, err
}

// Delete deletes an execution.
func (s *ExecutionsService) Delete(ctx context.Context, id string) (*Response, error) {
	return s.c.call(ctx, http.MethodDelete, "executions/"+url.PathEscape(id), nil, nil, nil)
}

// Retry re-runs a failed execution and returns the new one (n8n answers
// 409 for an execution that succeeded). loadWorkflow runs the current
// version of the workflow instead of the one the execution ran.
func (s *ExecutionsService) Retry(ctx context.Context, id string, loadWorkflow bool) (*Execution, *Response, error) {
	body := map[string]any{}
	if loadWorkflow {
		body["loadWorkflow"] = true
	}
	e := new(Execution)
	resp, err := s.c.call(ctx, http.MethodPost, "executions/"+url.PathEscape(id)+"/retry", nil, body, e)
	if err != nil {
		return nil, resp, err
	}
	return e, resp, nil
}

// Stop stops a running execution.
func (s *ExecutionsService) Stop(ctx context.Context, id string) (*Execution, *Response, error) {
	e := new(Execution)
	resp, err := s.c.call(ctx, http.MethodPost, "executions/"+url.PathEscape(id)+"/stop", nil, nil, e)
	if err != nil {
		return nil, resp, err
	}
	return e, resp, nil
}

// CredentialsService handles /credentials.
type CredentialsService service

// Create creates a credential and returns it (without its data).
func (s *CredentialsService) Create(ctx context.Context, cr *Credential) (*Credential, *Response, error) {
	out := new(Credential)
	resp, err := s.c.call(ctx, http.MethodPost, "credentials", nil, cr, out)
	if err != nil {
		return nil, resp, err
	}
	return out, resp, nil
}

// TagsService handles /tags.
type TagsService service

// List returns one page of tags.
func (s *TagsService) List(ctx context.Context, limit int, cursor string) ([]*Tag, *Response, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	setNonZero(q, "cursor", cursor)
	return list[*Tag](ctx, s.c, "tags", q)
}

// Create creates a tag.
func (s *TagsService) Create(ctx context.Context, name string) (*Tag, *Response, error) {
	t := new(Tag)
	resp, err := s.c.call(ctx, http.MethodPost, "tags", nil, map[string]string{"name": name}, t)
	if err != nil {
		return nil, resp, err
	}
	return t, resp, nil
}
