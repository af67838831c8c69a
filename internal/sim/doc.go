// Package sim is the simulation that hunts double runs (issue 25, point
// 11): an in-memory model of the journal contract (Store, checked by the
// same conformance suite as SQLite and PostgreSQL), a simulated n8n that
// records executions by idempotency key and answers through a transport
// and an executions API (N8N), and simulated processes (Proc) whose
// effects stop being accepted when they crash, at a drawn point,
// including a commit applied but reported failed.
//
// Everything here runs inside a testing/synctest bubble: no sockets, no
// files, time from the bubble's fake clock. A seed fixes the faults and
// the clock, not the goroutines' interleaving: a seed replays the faults
// and the clock but not the interleaving, so a failure found under a
// seed is replayed N times and reported with its replay rate. Faults of
// n8n are drawn from the seed, the key and the n-th send of that key, so
// that each key's history of faults does not depend on the order in
// which the processes reach n8n.
package sim
