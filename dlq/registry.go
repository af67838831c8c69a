package dlq

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/n8n-invoker/n8n-invoker/secret"
)

// BackendSQLite is the embedded SQLite store, the default.
const BackendSQLite = "sqlite"

// Backend is a store a manager can use: the dead-letter store, the
// write-ahead journal of invocations in flight and the idempotency
// records, and Close.
type Backend interface {
	Store
	Journal
	Close() error
}

// StoreOptions is what the configuration's store section gives a
// backend.
type StoreOptions struct {
	// Path is a file store's path ("" means DefaultPath).
	Path string
	// DSN is a server store's connection string.
	DSN secret.Secret
	// Schema is where a server store keeps its tables ("" means its
	// default).
	Schema string
	// Retention is how long completed keys are remembered.
	Retention time.Duration
	// SyncNormal trades durability on power loss for speed (SQLite).
	SyncNormal bool
}

// Opener opens a backend.
type Opener func(ctx context.Context, o StoreOptions) (Backend, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Opener{BackendSQLite: openSQLite}
)

// Register makes a store backend available by name to the configuration's
// store.backend (a store in another module calls it from an init
// function). It fails for a name already taken.
func Register(name string, open Opener) error {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, ok := registry[name]; ok || name == "" || open == nil {
		return fmt.Errorf("dlq: store backend %q is already registered or invalid", name)
	}
	registry[name] = open
	return nil
}

// Registered reports whether a backend of that name is registered.
func Registered(name string) bool {
	registryMu.RLock()
	defer registryMu.RUnlock()
	_, ok := registry[name]
	return ok
}

// Backends returns the registered backend names, sorted.
func Backends() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	return slices.Sorted(maps.Keys(registry))
}

// OpenBackend opens the backend registered as name.
func OpenBackend(ctx context.Context, name string, o StoreOptions) (Backend, error) {
	registryMu.RLock()
	open, ok := registry[name]
	registryMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("dlq: unknown store backend %q (available: %v)", name, Backends())
	}
	return open(ctx, o)
}

func openSQLite(ctx context.Context, o StoreOptions) (Backend, error) {
	path := o.Path
	if path == "" {
		path = DefaultPath()
	}
	return Open(ctx, path, Options{Retention: o.Retention, SyncNormal: o.SyncNormal})
}
