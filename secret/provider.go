package secret

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// Provider gives the current value of a secret, such as the n8n
// API key: from the configuration, a file, or a secrets manager.
type Provider interface {
	Secret(ctx context.Context) (Secret, error)
}

// Reloader is a Provider that can read its source again, e.g. on
// SIGHUP or after n8n refused the key. changed says whether the value
// changed.
type Reloader interface {
	Reload(ctx context.Context) (changed bool, err error)
}

// Static is a Provider of a fixed value.
type Static Secret

// Secret returns the value.
func (s Static) Secret(context.Context) (Secret, error) { return Secret(s), nil }

// File reads a secret from a file (trailing newlines trimmed), as
// container and Kubernetes secrets are mounted, and reads it again when
// the file changes (checked at most once per CheckInterval) or on Reload.
// Rotation needs no restart: a call made after the change uses the new
// value; calls already sent finish with the old one.
type File struct {
	path string
	// CheckInterval bounds how often the file is looked at (default 1 s).
	CheckInterval time.Duration

	mu      sync.Mutex
	value   Secret
	modTime time.Time
	size    int64
	checked time.Time
}

// NewFile reads path once and returns its provider.
func NewFile(path string) (*File, error) {
	f := &File{path: path, CheckInterval: time.Second}
	if _, err := f.load(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *File) load() (bool, error) {
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
	f.value, f.modTime, f.size = New(v), st.ModTime(), st.Size()
	return changed, nil
}

// Secret returns the current value, re-reading the file if it changed.
func (f *File) Secret(context.Context) (Secret, error) {
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
func (f *File) Reload(context.Context) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.load()
}
