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
	"path"
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
// line of a token file that grants it scopes under name, on every
// workflow. Only the line is stored: the file holds the token's SHA-256,
// never the token. NewTokenFor also restricts the workflows.
func NewToken(name string, scopes ...string) (token, line string, err error) {
	return NewTokenFor(name, nil, scopes...)
}

// NewTokenFor is NewToken for a token that may act only on the workflows
// that match one of workflows (see TokenFile: configured aliases, n8n
// workflow ids, or path.Match patterns of them; "*" is every workflow).
// An empty workflows makes a line without a list (every workflow, with a
// warning when it is served).
func NewTokenFor(name string, workflows []string, scopes ...string) (token, line string, err error) {
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
	list := ""
	if len(workflows) > 0 {
		list = " " + workflowsField + strings.Join(workflows, ",")
		if _, err := parseWorkflows(list[1:]); err != nil {
			return "", "", fmt.Errorf("server: %v", err)
		}
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, fmt.Sprintf("%s %s %s%s", name, HashToken(token), strings.Join(scopes, ","), list), nil
}

// workflowsField starts a token line's optional fourth field.
const workflowsField = "workflows="

// parseWorkflows reads a "workflows=a,b*" field: the patterns, each
// checked by path.Match.
func parseWorkflows(field string) ([]string, error) {
	v, ok := strings.CutPrefix(field, workflowsField)
	if !ok {
		return nil, fmt.Errorf("the fourth field must be %s<workflow>[,<workflow>], got %q", workflowsField, field)
	}
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p == "" {
			return nil, fmt.Errorf("an empty workflow in %q (list workflows or patterns, comma-separated; * for every workflow)", field)
		}
		if strings.ContainsAny(p, " \t\n#") {
			return nil, fmt.Errorf("workflow %q: a list holds aliases, n8n ids and patterns of them, without spaces or # (n8n's display names are not matched)", p)
		}
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("workflow pattern %q: %v", p, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// HashToken returns the form a token file stores: "sha256:" and the
// token's SHA-256 in hex.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Principal is who a request's token says it is: what the token file
// says of the token now.
type Principal struct {
	// ID identifies the token without being it: its hash as the token
	// file stores it (HashToken). Tokens.Lookup finds the token by it.
	ID   string
	Name string
	// Scopes are the token's scopes.
	Scopes []string
	// Workflows are the patterns of the workflows the token may act on
	// (see TokenFile); nil: every workflow.
	Workflows []string
}

// Can reports whether p has scope.
func (p *Principal) Can(scope string) bool { return p != nil && slices.Contains(p.Scopes, scope) }

// Tokens authenticates API tokens.
type Tokens interface {
	// Authenticate returns the principal of token, false when no
	// configured token matches.
	Authenticate(token string) (*Principal, bool)
	// Lookup returns the current principal of the token whose
	// Principal.ID is id, false when no configured token has it (the
	// token was removed). A console session holds only the id and looks
	// the token up on every request.
	Lookup(id string) (*Principal, bool)
}

type tokenEntry struct {
	name      string
	sum       []byte
	scopes    []string
	workflows []string // nil: every workflow
}

func (e *tokenEntry) principal() *Principal {
	return &Principal{ID: "sha256:" + hex.EncodeToString(e.sum), Name: e.name, Scopes: slices.Clone(e.scopes), Workflows: slices.Clone(e.workflows)}
}

// TokenFile is a file of tokens, one per line:
//
//	name sha256:<hex> scope[,scope] [workflows=pattern[,pattern]]
//
// a name, the token's hash (HashToken), its scopes (read, submit,
// replay) and, optionally, the workflows it may act on; # starts a
// comment. A workflow pattern is a configured alias, an n8n workflow id,
// or a path.Match pattern of them ("orders-*"); "*" is every workflow. A
// line without a list may act on every workflow, as before lists
// existed; each such token is warned about once.
//
// The file is checked for a change at most once per check interval (a
// second by default) and read again when its content changed (its
// SHA-256, not its size or time), so tokens rotate without a restart.
// A file that cannot be read (removed, say) leaves no valid token until
// it can be read again; a file that became invalid keeps the last valid
// set. Both are logged as errors and reported by Err. Replace the file
// atomically (write a temporary file in the same directory, then rename
// it over the old one) so that no check reads it half-written.
type TokenFile struct {
	path  string
	every time.Duration
	log   *slog.Logger

	mu      sync.Mutex
	entries []tokenEntry
	sum     [sha256.Size]byte // of the content last read; zero when unreadable
	checked time.Time
	err     error
	warned  map[string]bool // tokens without a list, warned about
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
	f := &TokenFile{path: path, every: DefaultTokenCheckInterval, log: slog.New(slog.DiscardHandler), warned: map[string]bool{}}
	for _, o := range opts {
		o(f)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	entries, err := parseTokens(path, data)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("%s: no tokens (make one with `n8n-invoker serve token NAME SCOPES`)", path)
	}
	f.use(entries, sha256.Sum256(data))
	f.checked = time.Now()
	return f, nil
}

// use makes entries the valid set; f.mu is held (or f not shared yet).
func (f *TokenFile) use(entries []tokenEntry, sum [sha256.Size]byte) {
	f.entries, f.sum = entries, sum
	for _, e := range entries {
		id := e.name + " " + hex.EncodeToString(e.sum)
		if e.workflows == nil && !f.warned[id] {
			f.warned[id] = true
			f.log.Warn("server: token without a workflow list: it may act on every workflow; add workflows=<alias,id,pattern> to its line (or workflows=* to keep every workflow)",
				"file", f.path, "token", e.name)
		}
	}
}

// check reads the file again when it is due; f.mu is held.
func (f *TokenFile) check() {
	if !f.checked.IsZero() && time.Since(f.checked) < f.every {
		return
	}
	f.checked = time.Now()
	data, err := os.ReadFile(f.path)
	if err != nil {
		// Fail closed: a file that cannot be read grants nothing.
		if f.entries != nil || f.err == nil || f.err.Error() != err.Error() {
			f.log.Error("server: the token file cannot be read: every token is refused until it can", "file", f.path, "err", err)
		}
		f.entries, f.sum, f.err = nil, [sha256.Size]byte{}, err
		return
	}
	sum := sha256.Sum256(data)
	if sum == f.sum {
		return
	}
	entries, err := parseTokens(f.path, data)
	if err != nil {
		if f.err == nil || f.err.Error() != err.Error() {
			f.log.Error("server: the token file is invalid: the last valid tokens stay in use", "file", f.path, "err", err)
		}
		f.err = err
		if f.entries == nil && f.sum == ([sha256.Size]byte{}) {
			return // unreadable before: still nothing valid
		}
		f.sum = sum // keep the last valid set; read again when it changes
		return
	}
	f.use(entries, sum)
	f.err = nil
	f.log.Info("server: token file read", "file", f.path, "tokens", len(entries))
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
		if len(fields) != 3 && len(fields) != 4 {
			return nil, fmt.Errorf("%s:%d: want `name sha256:<hex> scope[,scope] [workflows=pattern[,pattern]]`, got %d fields", path, n, len(fields))
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
		e := tokenEntry{name: fields[0], sum: sum, scopes: scopes}
		if len(fields) == 4 {
			if e.workflows, err = parseWorkflows(fields[3]); err != nil {
				return nil, fmt.Errorf("%s:%d: %v", path, n, err)
			}
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// Err returns the error of the last check, nil when the file was read
// and valid.
func (f *TokenFile) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// current returns the valid entries, reading the file again when due.
func (f *TokenFile) current() []tokenEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.check()
	return f.entries
}

// Authenticate compares token's hash with every stored one in constant
// time.
func (f *TokenFile) Authenticate(token string) (*Principal, bool) {
	entries := f.current()
	if token == "" {
		return nil, false
	}
	sum := sha256.Sum256([]byte(token))
	return find(entries, sum[:])
}

// Lookup returns the current principal of the token whose hash is id
// (Principal.ID), compared in constant time.
func (f *TokenFile) Lookup(id string) (*Principal, bool) {
	entries := f.current()
	h, ok := strings.CutPrefix(id, "sha256:")
	sum, err := hex.DecodeString(h)
	if !ok || err != nil || len(sum) != sha256.Size {
		return nil, false
	}
	return find(entries, sum)
}

func find(entries []tokenEntry, sum []byte) (*Principal, bool) {
	var found *tokenEntry
	for i := range entries {
		if subtle.ConstantTimeCompare(sum, entries[i].sum) == 1 && found == nil {
			found = &entries[i]
		}
	}
	if found == nil {
		return nil, false
	}
	return found.principal(), true
}
