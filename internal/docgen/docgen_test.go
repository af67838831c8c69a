package docgen

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestGeneratedDocsAreCurrent fails when a generated reference in docs/
// differs from what the generators print: the configuration's types,
// doc comments or defaults, or the packages' imports, changed without
// make docs.
func TestGeneratedDocsAreCurrent(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	files, err := Generate(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		have, err := os.ReadFile(filepath.Join(root, f.Path))
		if err != nil {
			t.Errorf("%s: %v: run make docs", f.Path, err)
			continue
		}
		if string(have) != string(f.Text) {
			t.Errorf("%s is stale: run make docs (first difference at line %d)", f.Path, firstDiff(string(have), string(f.Text)))
		}
	}
}

func firstDiff(a, b string) int {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return i + 1
		}
	}
	return min(len(la), len(lb)) + 1
}

// TestStatedDefaultsAreChecked checks that a doc comment stating a
// default number that is not the default fails the reference.
func TestStatedDefaultsAreChecked(t *testing.T) {
	t.Parallel()
	type S struct {
		N int `yaml:"n"`
	}
	for _, c := range []struct {
		doc  string
		fail bool
	}{
		{"N is a count (default 3).", false},
		{"N is a count (default 5).", true},
		{"N is a count; default: 4, say.", true},
		{"N is a count, the default of the layer.", false},
	} {
		w := &walker{docs: map[string]map[string]string{"S": {"N": c.doc}}}
		w.walk("", reflect.TypeFor[S](), reflect.ValueOf(S{N: 3}))
		if got := len(w.errs) > 0; got != c.fail {
			t.Errorf("doc %q: errors %v, want failure %v", c.doc, w.errs, c.fail)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0: "0", 30 * time.Second: "30s", 5 * time.Minute: "5m", 5*time.Minute + 5*time.Second: "5m5s",
		168 * time.Hour: "168h", 200 * time.Millisecond: "200ms",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
