// Package n8napi is a typed client for n8n's public REST API (v1):
// workflows, executions, credentials and tags.
//
// Every method is Verb(ctx, ...) (T, *Response, error). Errors from the
// API are *APIError values carrying the status and n8n's message. Models
// accept unknown fields and ids given as strings or numbers, since n8n's
// shapes differ across versions (1.x and 2.x are both known to work).
//
//	client, err := n8napi.NewClient("https://n8n.example.com", secret.New(key))
//	wf, _, err := client.Workflows.Get(ctx, "wT3sTaKYwzyZ6XQv")
//	for exec, err := range client.Executions.All(ctx, &n8napi.ExecutionListOptions{WorkflowID: wf.ID}) { ... }
package n8napi
