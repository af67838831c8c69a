package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/n8n-invoker/n8n-invoker/contrib/postgres"
	"github.com/n8n-invoker/n8n-invoker/dlq"
	"github.com/n8n-invoker/n8n-invoker/dlq/dlqtest"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// dsn is the test database scripts/cluster starts (make test exports
// it); without it the tests skip, unless the run requires them.
func dsn(t testing.TB) secret.Secret {
	t.Helper()
	d := os.Getenv("N8N_INVOKER_PG_DSN")
	if d == "" {
		if os.Getenv("N8N_INVOKER_REQUIRE_N8N") != "" {
			t.Fatal("N8N_INVOKER_PG_DSN is not set: run scripts/cluster db and source .cluster/env (make test does)")
		}
		t.Skip("N8N_INVOKER_PG_DSN is not set: run scripts/cluster db and source .cluster/env")
	}
	return secret.New(d)
}

// schema returns a fresh schema name, dropped when the test ends.
func schema(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "t_" + hex.EncodeToString(b)
	d := dsn(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		pool, err := pgxpool.New(ctx, d.Reveal())
		if err != nil {
			t.Error(err)
			return
		}
		defer pool.Close()
		if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+name+" CASCADE"); err != nil {
			t.Error(err)
		}
	})
	return name
}

func open(t testing.TB, schema string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), dsn(t), postgres.Options{Schema: schema, MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var last string
	dlqtest.Run(t, func(t *testing.T) dlq.Backend {
		s := schema(t)
		mu.Lock()
		last = s
		mu.Unlock()
		return open(t, s)
	}, dlqtest.Options{Reopen: func(t *testing.T) dlq.Backend {
		mu.Lock()
		defer mu.Unlock()
		return open(t, last)
	}})
}

// Replicas that start at once migrate the schema once: the others wait
// on the advisory lock and find it done.
func TestConcurrentMigrations(t *testing.T) {
	t.Parallel()
	name := schema(t)
	const replicas = 8
	var wg sync.WaitGroup
	errs := make(chan error, replicas)
	for range replicas {
		wg.Go(func() {
			s, err := postgres.Open(t.Context(), dsn(t), postgres.Options{Schema: name, MaxConns: 2})
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			_, err = s.Put(t.Context(), &dlq.Entry{Workflow: "w", IdempotencyKey: "k"})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, name)
	defer s.Close()
	var versions, version int
	if err := s.Pool().QueryRow(t.Context(), "SELECT count(*), max(version) FROM "+name+".schema_version").Scan(&versions, &version); err != nil {
		t.Fatal(err)
	}
	if versions != 1 || version < 1 {
		t.Fatalf("schema_version has %d rows, version %d; want 1 row", versions, version)
	}
	if n, err := s.Count(t.Context()); err != nil || n != replicas {
		t.Fatalf("Count = %d, %v; want %d", n, err, replicas)
	}
}

// The registered backend opens from the configuration's store options.
func TestRegisteredBackend(t *testing.T) {
	t.Parallel()
	if !dlq.Registered(postgres.Backend) {
		t.Fatal("importing the package does not register the backend")
	}
	b, err := dlq.OpenBackend(t.Context(), postgres.Backend, dlq.StoreOptions{DSN: dsn(t), Schema: schema(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, ok := b.(dlq.Claimer); !ok {
		t.Error("the store does not claim entries for replay")
	}
}

// Bad input gets a clear error that never shows the DSN's password.
func TestErrorsHideThePassword(t *testing.T) {
	t.Parallel()
	good, err := url.Parse(dsn(t).Reveal())
	if err != nil {
		t.Fatal(err)
	}
	const password = "s3cr3t-Hunter2-pw"
	wrongPassword := *good
	wrongPassword.User = url.UserPassword(good.User.Username(), password)
	down := wrongPassword
	down.Host = "127.0.0.1:1"
	tests := []struct {
		name, dsn, want string
	}{
		{"empty", "", "store.dsn is empty"},
		{"malformed", "postgres://u:" + password + "@[::1:5432/x", "not a valid connection string"},
		{"wrong password", wrongPassword.String(), "password authentication failed"},
		{"server down", down.String(), "postgres store"},
		{"bad schema", good.String(), "schema"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			o := postgres.Options{}
			if tt.name == "bad schema" {
				o.Schema = "x; DROP TABLE y"
			}
			s, err := postgres.Open(ctx, secret.New(tt.dsn), o)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			real, _ := good.User.Password()
			if strings.Contains(err.Error(), password) || strings.Contains(err.Error(), real) {
				t.Errorf("error shows the password: %q", err)
			}
		})
	}
}

// BenchmarkJournal is dlq's BenchmarkJournal on PostgreSQL: the same
// Begin and Complete, each a transaction on the server.
func BenchmarkJournal(b *testing.B) {
	dlqtest.Bench(b, func(b *testing.B) dlq.Backend {
		return open(b, schema(b))
	})
}
