package config

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// SecretProvider gives the current value of a secret, such as the n8n
// API key: from the configuration, a file, or a secrets manager.
type SecretProvider interface {
	Secret(ctx context.Context) (Secret, error)
}

// Reloader is a SecretProvider that can read its source again, e.g. on
// SIGHUP or after n8n refused the key. changed says whether the value
// changed.
type Reloader interface {
	Reload(ctx context.Context) (changed bool, err error)
}

// StaticSecret is a SecretProvider of a fixed value.
type StaticSecret Secret

// Secret returns the value.
func (s StaticSecret) Secret(context.Context) (Secret, error) { return Secret(s), nil }

// FileSecret reads a secret from a file (trailing newlines trimmed), as
// container and Kubernetes secrets are mounted, and reads it again when
// the file changes (checked at most once per CheckInterval) or on Reload.
// Rotation needs no restart: a call made after the change uses the new
// value; calls already sent finish with the old one.
type FileSecret struct {
	path string
	// CheckInterval bounds how often the file is looked at (default 1 s).
	CheckInterval time.Duration

	mu      sync.Mutex
	value   Secret
	modTime time.Time
	size    int64
	checked time.Time
}

// NewFileSecret reads path once and returns its provider.
func NewFileSecret(path string) (*FileSecret, error) {
	f := &FileSecret{path: path, CheckInterval: time.Second}
	if _, err := f.load(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *FileSecret) load() (bool, error) {
	st, err := os.Stat(f.path)
	if err != nil {
		return false, fmt.Errorf("secret file: %w", err)
	}
	f.checked = time.Now()
	if st.ModTime().Equal(f.modTime) && st.Size() == f.size && !f.value.IsZero() {
		return false, nil
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return false, fmt.Errorf("secret file: %w", err)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return false, fmt.Errorf("secret file %s is empty", f.path)
	}
	changed := v != f.value.Reveal()
	f.value, f.modTime, f.size = NewSecret(v), st.ModTime(), st.Size()
	return changed, nil
}

// Secret returns the current value, re-reading the file if it changed.
func (f *FileSecret) Secret(context.Context) (Secret, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.checked) >= f.CheckInterval {
		if _, err := f.load(); err != nil && f.value.IsZero() {
			return Secret{}, err
		} // a file briefly missing during a rotation keeps the last value
	}
	return f.value, nil
}

// Reload reads the file now.
func (f *FileSecret) Reload(context.Context) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.load()
}
