// Package mcpinvoker is the second transport of the pipeline: it runs a
// workflow by its n8n id through n8n's built-in instance MCP server
// (POST /mcp-server/http, JSON-RPC answered as a one-event server-sent
// stream, a bearer token apart from the public API key), without a
// webhook path.
//
// One attempt is one execute_workflow call. n8n starts the execution and
// answers with its id without waiting: the attempt's outcome is
// Accepted, and the await stage follows the execution to its end (the
// public API when a key is configured, cheaper and outside the MCP rate
// limit; else Transport.Execution, MCP's get_workflow_execution). The
// pipeline's stages (retries, breaker, journal, reconcile by the
// Idempotency-Key, sent lower-case in webhookData.headers) apply as to
// any transport.
//
// What MCP cannot carry is refused before sending (code invocation.CodeBadRequest);
// MCP's own failures, which n8n answers as a successful JSON-RPC result
// with status "error", are *ToolError, never a success. The server's
// default rate limit is 100 requests per 5 minutes per client IP, polls
// included: the transport keeps its own limiter at that rate and holds
// every request after a 429 until its reset.
package mcpinvoker
