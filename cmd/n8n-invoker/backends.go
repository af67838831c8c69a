package main

// The CLI has every store backend: the embedded SQLite store is built
// into the library, the others register themselves when imported.
import _ "github.com/n8n-invoker/n8n-invoker/contrib/postgres"
