package server

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Scopes a token grants.
const (
	// ScopeRead reads invocations, dead letters, breakers and metrics.
	ScopeRead = "read"
	// ScopeSubmit submits invocations.
	ScopeSubmit = "submit"
	// ScopeReplay replays, runs again and purges dead letters.
	ScopeReplay = "replay"
)

var allScopes = []string{ScopeRead, ScopeSubmit, ScopeReplay}

// TokenPrefix starts every token NewToken makes.
const TokenPrefix = "n8i_"

// NewToken returns a new random API token (32 bytes of entropy) and the
// line of a token file that grants it scopes under name. Only the line
// is stored: the file holds the token's SHA-256, never the token.
func NewToken(name string, scopes ...string) (token, line string, err error) {
	if name == "" || strings.ContainsAny(name, " \t\n#") {
		return "", "", fmt.Errorf("server: a token name is one word, got %q", name)
	}
	for _, s := range scopes {
		if !slices.Contains(allScopes, s) {
			return "", "", fmt.Errorf("server: unknown scope %q (read, submit, replay)", s)
		}
	}
	if len(scopes) == 0 {
		return "", "", fmt.Errorf("server: a token needs at least one scope (read, submit, replay)")
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, fmt.Sprintf("%s %s %s", name, HashToken(token), strings.Join(scopes, ",")), nil
}

// HashToken returns the form a token file stores: "sha256:" and the
// token's SHA-256 in hex.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Principal is who a request's token says it is.
type Principal struct {
	Name   string
	Scopes []string
}

// Can reports whether p has scope.
func (p *Principal) Can(scope string) bool { return p != nil && slices.Contains(p.Scopes, scope) }

// Tokens authenticates API tokens.
type Tokens interface {
	// Authenticate returns the principal of token, false when no
	// configured token matches.
	Authenticate(token string) (*Principal, bool)
}

type tokenEntry struct {
	name   string
	sum    []byte
	scopes []string
}

// TokenFile is a file of tokens, one per line: a name, the token's hash
// (HashToken) and its scopes, comma-separated; # starts a comment. It
// is read again when it changes (checked at most once a second), so
// tokens rotate without a restart; a file that became invalid keeps the
// last valid set and the error is reported by Err.
type TokenFile struct {
	path  string
	every time.Duration
	log   *slog.Logger

	mu      sync.Mutex
	entries []tokenEntry
	mod     time.Time
	size    int64
	checked time.Time
	err     error
}

// DefaultTokenCheckInterval is how often a TokenFile checks its file
// for a change by default.
const DefaultTokenCheckInterval = time.Second

// TokenFileOption configures a TokenFile.
type TokenFileOption func(*TokenFile)

// WithCheckInterval sets how often the file is checked for a change
// (default DefaultTokenCheckInterval); 0 or less checks it on every
// authentication.
func WithCheckInterval(d time.Duration) TokenFileOption {
	return func(f *TokenFile) { f.every = max(d, 0) }
}

// WithTokenLogger logs the file's reloads, its errors and its warnings
// (default: discarded).
func WithTokenLogger(l *slog.Logger) TokenFileOption {
	return func(f *TokenFile) {
		if l != nil {
			f.log = l
		}
	}
}

// NewTokenFile reads path; its errors name the file and line.
func NewTokenFile(path string, opts ...TokenFileOption) (*TokenFile, error) {
	f := &TokenFile{path: path, every: DefaultTokenCheckInterval, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(f)
	}
	if err := f.load(); err != nil {
		return nil, err
	}
	if len(f.entries) == 0 {
		return nil, fmt.Errorf("%s: no tokens (make one with `n8n-invoker serve token NAME SCOPES`)", path)
	}
	return f, nil
}

func (f *TokenFile) load() error {
	st, err := os.Stat(f.path)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return err
	}
	entries, err := parseTokens(f.path, data)
	if err != nil {
		return err
	}
	f.entries, f.mod, f.size = entries, st.ModTime(), st.Size()
	return nil
}

func parseTokens(path string, data []byte) ([]tokenEntry, error) {
	var out []tokenEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 {
			return nil, fmt.Errorf("%s:%d: want `name sha256:<hex> scope[,scope]`, got %d fields", path, n, len(fields))
		}
		h, ok := strings.CutPrefix(fields[1], "sha256:")
		sum, err := hex.DecodeString(h)
		if !ok || err != nil || len(sum) != sha256.Size {
			return nil, fmt.Errorf("%s:%d: the token must be stored as sha256:<64 hex digits> (never the token itself)", path, n)
		}
		scopes := strings.Split(fields[2], ",")
		for _, s := range scopes {
			if !slices.Contains(allScopes, s) {
				return nil, fmt.Errorf("%s:%d: unknown scope %q (read, submit, replay)", path, n, s)
			}
		}
		out = append(out, tokenEntry{name: fields[0], sum: sum, scopes: scopes})
	}
	return out, sc.Err()
}

// Err returns the error of the last reload, nil when it was read.
func (f *TokenFile) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Authenticate compares token's hash with every stored one in constant
// time.
func (f *TokenFile) Authenticate(token string) (*Principal, bool) {
	f.mu.Lock()
	if f.checked.IsZero() || time.Since(f.checked) >= f.every {
		f.checked = time.Now()
		if st, err := os.Stat(f.path); err == nil && (!st.ModTime().Equal(f.mod) || st.Size() != f.size) {
			f.err = f.load()
		}
	}
	entries := f.entries
	f.mu.Unlock()
	if token == "" {
		return nil, false
	}
	sum := sha256.Sum256([]byte(token))
	var found *tokenEntry
	for i := range entries {
		if subtle.ConstantTimeCompare(sum[:], entries[i].sum) == 1 && found == nil {
			found = &entries[i]
		}
	}
	if found == nil {
		return nil, false
	}
	return &Principal{Name: found.name, Scopes: found.scopes}, true
}
