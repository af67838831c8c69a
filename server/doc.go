// Package server is n8n-invoker's service mode (`n8n-invoker serve`): a
// small, versioned JSON HTTP API for callers in any language and a web
// console for the people on call, over one manager and its outbox.
//
// The API (OpenAPI returns its document, also served at
// /v1/openapi.yaml): submit an invocation (202 with its id once the
// outbox has stored it, or its end when asked to wait), get, await (long
// poll or server-sent events) and list invocations; list, replay, run
// again and purge dead letters; breakers; /healthz, /readyz and
// /metrics. Every error is JSON {"error": {"code", "message"}} with its
// status, and a refused request stores nothing.
//
// Security: bearer tokens from a TokenFile (hashes only, compared in
// constant time, reloaded when the file's content changes, none valid
// while it is missing) with the scopes read, submit and replay and an
// optional workflow allow-list, checked against the resolved workflow on
// every endpoint that acts on one (403 workflow_not_allowed; lists are
// filtered). The console logs in with a token and then holds an
// HttpOnly, SameSite=Strict session cookie that refers to the token: every
// request looks it up in the current token set, so a removed token ends
// its sessions and a changed one applies at once; its state-changing forms
// carry a per-session CSRF token and are refused cross-site; every page
// has a Content-Security-Policy without inline script; assets are
// embedded. Sessions and breakers are per replica: behind a load
// balancer a console user logs in again on another replica, and each
// replica's breakers reflect its own calls; invocations, results and
// dead letters are the shared store's, so any replica answers an await.
package server
