package invoker_test

import (
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/n8n-invoker/n8n-invoker"

// rank is the layering of the project: a package may import only
// packages of a lower rank. The README's architecture section shows the
// same table; a new package needs a rank here before it builds green.
var rank = map[string]int{
	"secret":     0,
	"invocation": 1,
	"policy":     2, "telemetry": 2, "n8napi": 2, "dlq": 2,
	"httpinvoker": 3, "pipeline": 3, "mcpinvoker": 3,
	"hooks": 4, "pack": 2, "config": 4,
	"dlq/dlqtest":            3, // the store conformance suite
	"contrib/postgres":       3, // module of its own: the PostgreSQL store
	"contrib/redis":          3, // module of its own: the fleet's rate limit on Redis
	"":                       5, // the root package invoker
	"internal/tools/n8nload": 6, "contrib/redis/internal/fleetrate": 6,
	"internal/docgen": 5, "internal/tools/docgen": 6, // make docs: the generated references
	"outbox":                                6, // durable submission: imports the manager
	"server":                                7, // service mode: the API and console over a manager and its outbox
	"contrib/postgres/outbox":               7, // its River engine on PostgreSQL
	"contrib/postgres/internal/outboxbench": 8,
	"cmd/n8n-invoker":                       9,
	"cmd/n8n-invoker/internal/serveload":    10,
	// test helpers
	"internal/chaos": 0, "internal/testcerts": 0, "internal/n8ntest/n8nboot": 0,
	"internal/sim":     3, // the simulation's journal model and n8n
	"internal/n8ntest": 5,
}

// projectImports returns each package of the module with the module's
// packages it imports (tests excluded), across the workspace's modules
// (go.work: the library, the CLI, the PostgreSQL store).
func projectImports(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`,
		"./...", "./cmd/n8n-invoker/...", "./contrib/postgres/...", "./contrib/redis/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	rel := func(p string) (string, bool) {
		if p == module {
			return "", true
		}
		r, ok := strings.CutPrefix(p, module+"/")
		return r, ok
	}
	m := map[string][]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, _ := rel(f[0])
		m[pkg] = nil
		for _, imp := range f[1:] {
			if r, ok := rel(imp); ok {
				m[pkg] = append(m[pkg], r)
			}
		}
	}
	return m
}

// TestImportRank fails when an import breaks the rank: a lower layer
// importing a higher one (or a peer), or a public package importing
// internal/ (its API could then name an internal type).
func TestImportRank(t *testing.T) {
	t.Parallel()
	for pkg, imports := range projectImports(t) {
		r, ok := rank[pkg]
		if !ok {
			t.Errorf("package %q has no rank in architecture_test.go", pkg)
			continue
		}
		for _, imp := range imports {
			ri, ok := rank[imp]
			switch {
			case !ok:
				t.Errorf("package %q has no rank", imp)
			case ri >= r:
				t.Errorf("%q (rank %d) imports %q (rank %d): a package may import only lower ranks", pkg, r, imp, ri)
			}
			if strings.HasPrefix(imp, "internal/") && !strings.HasPrefix(pkg, "internal/") && !strings.HasPrefix(pkg, "cmd/") {
				t.Errorf("public package %q imports %q", pkg, imp)
			}
		}
	}
}

// TestGoDocShowsEveryPublicType: every exported type of every public
// package is a real, documented type (no alias hiding its fields), every
// exported function and method has a doc comment, and Request, Result and
// every error type show exported fields.
func TestGoDocShowsEveryPublicType(t *testing.T) {
	t.Parallel()
	var dirs []string
	for pkg := range projectImports(t) {
		if strings.HasPrefix(pkg, "internal/") || strings.HasPrefix(pkg, "cmd/") {
			continue
		}
		dirs = append(dirs, pkg)
	}
	sort.Strings(dirs)
	for _, dir := range dirs {
		path := dir
		if path == "" {
			path = "."
		}
		out, err := exec.Command("go", "list", "-f", "{{.Dir}}{{range .GoFiles}} {{.}}{{end}}", "./"+path).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", path, err)
		}
		fields := strings.Fields(string(out))
		fset := token.NewFileSet()
		var files []*ast.File
		for _, name := range fields[1:] {
			f, err := parser.ParseFile(fset, fields[0]+"/"+name, nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
		d, err := doc.NewFromFiles(fset, files, module+"/"+dir)
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(d.Doc) == "" {
			t.Errorf("%s: no package doc", path)
		}
		for _, f := range d.Funcs {
			if f.Doc == "" {
				t.Errorf("%s.%s: no doc comment", d.Name, f.Name)
			}
		}
		for _, ty := range d.Types {
			checkType(t, fset, d.Name, ty)
		}
	}
	for _, want := range []string{"invocation.Request", "invocation.Result", "invocation.HTTPError", "invocation.Error", "n8napi.ExecutionFailedError"} {
		if !seenTypes[want] {
			t.Errorf("%s was not checked", want)
		}
	}
}

var seenTypes = map[string]bool{}

func checkType(t *testing.T, fset *token.FileSet, pkg string, ty *doc.Type) {
	name := pkg + "." + ty.Name
	seenTypes[name] = true
	if ty.Doc == "" {
		t.Errorf("%s: no doc comment", name)
	}
	for _, spec := range ty.Decl.Specs {
		ts, ok := spec.(*ast.TypeSpec)
		if !ok || ts.Name.Name != ty.Name {
			continue
		}
		if ts.Assign.IsValid() {
			t.Errorf("%s (%s) is an alias: go doc shows no fields or methods", name, fset.Position(ts.Pos()))
		}
		st, isStruct := ts.Type.(*ast.StructType)
		if isStruct && (strings.HasSuffix(ty.Name, "Error") || ty.Name == "Request" || ty.Name == "Result") {
			exported := 0
			for _, f := range st.Fields.List {
				for _, n := range f.Names {
					if n.IsExported() {
						exported++
					}
				}
			}
			if exported == 0 {
				t.Errorf("%s shows no exported fields", name)
			}
		}
	}
	for _, f := range append(ty.Funcs, ty.Methods...) {
		if f.Doc == "" {
			t.Errorf("%s.%s: no doc comment", name, f.Name)
		}
	}
}
