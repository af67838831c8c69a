package main

// The CLI has every backend: the embedded SQLite store is built into the
// library, the PostgreSQL store and the Redis rate limit register
// themselves when imported, and so does the outbox's River engine.
import (
	_ "github.com/n8n-invoker/n8n-invoker/contrib/postgres"
	_ "github.com/n8n-invoker/n8n-invoker/contrib/postgres/outbox"
	_ "github.com/n8n-invoker/n8n-invoker/contrib/redis"
)
