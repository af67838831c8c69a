// Package dlq is n8n-invoker's durable dead-letter queue and idempotency
// journal.
//
// Items that exhaust their retries, fail with a configured class, or are
// refused by an open circuit breaker are stored as Entries, to be listed,
// replayed with their original idempotency key, or purged. With the
// journal, every invocation is written ahead before it is sent and
// recorded when it ends, so a crash loses nothing: on the next Open, the
// items that were in flight become entries to replay, and keys that
// already succeeded return their recorded result instead of firing n8n
// again.
//
// The default Store is embedded SQLite (modernc.org/sqlite, pure Go) in
// WAL mode, so the CLI can read while a service writes.
package dlq
