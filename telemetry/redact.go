package telemetry

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// RedactHandler wraps h so that any of secrets appearing in a record's
// message or string attributes is replaced by REDACTED: a backstop behind
// secret.Secret, which redacts itself, for secrets that reached a log as
// plain strings (inside an error message, say). Use a Redactor when
// secrets change while the handler is in use.
func RedactHandler(h slog.Handler, secrets ...string) slog.Handler {
	r := NewRedactor(secrets...)
	if r.r.Load() == nil {
		return h
	}
	return r.Handler(h)
}

// Redactor is the set of secrets a redacting handler replaces by
// REDACTED. Secrets can be added while its handlers are in use (a secret
// file reloaded): every handler made from it, before or after, redacts
// them from then on. Values shorter than 4 bytes are ignored (they would
// redact ordinary text). Safe for concurrent use.
type Redactor struct {
	mu      sync.RWMutex
	secrets map[string]bool
	r       atomic.Pointer[strings.Replacer] // nil: nothing to redact
}

// NewRedactor returns a Redactor of secrets.
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{secrets: map[string]bool{}}
	r.Add(secrets...)
	return r
}

// Add registers more secrets; the ones already known cost a map lookup.
func (r *Redactor) Add(secrets ...string) {
	r.mu.RLock()
	known := true
	for _, s := range secrets {
		if len(s) >= 4 && !r.secrets[s] {
			known = false
			break
		}
	}
	r.mu.RUnlock()
	if known {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range secrets {
		if len(s) >= 4 {
			r.secrets[s] = true
		}
	}
	all := make([]string, 0, len(r.secrets))
	for s := range r.secrets {
		all = append(all, s)
	}
	// Longest first: a secret that contains another is replaced whole.
	slices.SortFunc(all, func(a, b string) int { return cmp.Or(len(b)-len(a), strings.Compare(a, b)) })
	pairs := make([]string, 0, 2*len(all))
	for _, s := range all {
		pairs = append(pairs, s, "REDACTED")
	}
	r.r.Store(strings.NewReplacer(pairs...))
}

// Replace returns s with every registered secret replaced by REDACTED.
func (r *Redactor) Replace(s string) string {
	if rep := r.r.Load(); rep != nil {
		return rep.Replace(s)
	}
	return s
}

// Handler wraps h so that any registered secret (now or later) appearing
// in a record's message or string attributes is replaced by REDACTED.
func (r *Redactor) Handler(h slog.Handler) slog.Handler {
	return &redactHandler{next: h, r: r}
}

type redactHandler struct {
	next slog.Handler
	r    *Redactor
}

func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.Replace(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *redactHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.r.Replace(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]any, len(g))
		for i, x := range g {
			out[i] = h.attr(x)
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, h.r.Replace(err.Error()))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func (h *redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = h.attr(a)
	}
	return &redactHandler{next: h.next.WithAttrs(red), r: h.r}
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{next: h.next.WithGroup(name), r: h.r}
}
