package docgen

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/n8n-invoker/n8n-invoker/config"
	"github.com/n8n-invoker/n8n-invoker/secret"
)

// fieldDocs returns the doc comment of every field of every struct type
// declared in the Go files of dir (tests excluded), by type and field
// name, and of every type by its name (field "").
func fieldDocs(dir string) (map[string]map[string]string, error) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	docs := map[string]map[string]string{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				m := map[string]string{}
				docs[ts.Name.Name] = m
				doc := ts.Doc
				if doc == nil && len(gd.Specs) == 1 {
					doc = gd.Doc
				}
				m[""] = doc.Text()
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				for _, fld := range st.Fields.List {
					text := fld.Doc.Text()
					if text == "" {
						text = fld.Comment.Text()
					}
					for _, n := range fld.Names {
						m[n.Name] = text
					}
				}
			}
		}
	}
	return docs, nil
}

// row is one key of the reference.
type row struct {
	key, typ, def, doc string
}

var (
	durationType = reflect.TypeFor[config.Duration]()
	secretType   = reflect.TypeFor[secret.Secret]()
	hookRefType  = reflect.TypeFor[config.HookRef]()
)

// statedDefault finds a default a doc comment states as a number.
var statedDefault = regexp.MustCompile(`\bdefault:?\s+(\d[^\s,;)]*)`)

// walker collects the rows of a struct type.
type walker struct {
	docs map[string]map[string]string
	rows []row
	errs []string
}

func (w *walker) walk(prefix string, t reflect.Type, v reflect.Value) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || tag == "" || tag == "-" {
			continue
		}
		key := prefix + tag
		doc := oneLine(w.docs[t.Name()][f.Name])
		if doc == "" {
			w.errs = append(w.errs, fmt.Sprintf("config.%s.%s (%s) has no doc comment", t.Name(), f.Name, key))
		}
		fv := v.Field(i)
		switch {
		case f.Type.Kind() == reflect.Struct && f.Type != durationType && f.Type != secretType:
			w.rows = append(w.rows, row{key: key, typ: "mapping", doc: doc})
			w.walk(key+".", f.Type, fv)
		case f.Type.Kind() == reflect.Map:
			elem := f.Type.Elem()
			w.rows = append(w.rows, row{key: key, typ: "mapping of names to " + elem.Name(), doc: doc})
			ev := reflect.New(elem).Elem()
			if def := fv.MapIndex(reflect.ValueOf(exampleName)); def.IsValid() {
				ev = def
			}
			w.walk(key+"."+exampleName+".", elem, ev)
		default:
			def := format(fv)
			for _, m := range statedDefault.FindAllStringSubmatch(doc, -1) {
				if m[1] != def {
					w.errs = append(w.errs, fmt.Sprintf("the doc comment of config.%s.%s (%s) says default %s, but the default is %s", t.Name(), f.Name, key, m[1], def))
				}
			}
			w.rows = append(w.rows, row{key: key, typ: typeName(f.Type), def: def, doc: doc})
		}
	}
}

// exampleName stands for a name chosen in the file (a workflow's, a
// credential's).
const exampleName = "<name>"

func typeName(t reflect.Type) string {
	switch t {
	case durationType:
		return "duration"
	case secretType:
		return "secret"
	}
	switch t.Kind() {
	case reflect.Slice:
		if t.Elem() == hookRefType {
			return "list of hook names"
		}
		return "list of " + typeName(t.Elem()) + "s"
	case reflect.Int, reflect.Int64:
		return "integer"
	case reflect.Float64:
		return "number"
	case reflect.Bool:
		return "boolean"
	}
	return t.Kind().String()
}

// format prints a default as it is written in the file.
func format(v reflect.Value) string {
	switch v.Type() {
	case durationType:
		return formatDuration(time.Duration(v.Int()))
	case secretType:
		return ""
	}
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Int, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'f', -1, 64)
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Slice:
		if v.Len() == 0 {
			return ""
		}
		items := make([]string, v.Len())
		for i := range v.Len() {
			items[i] = format(v.Index(i))
		}
		return "[" + strings.Join(items, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}

// formatDuration prints d as a Go duration without zero units: 5m, not
// 5m0s.
func formatDuration(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func oneLine(doc string) string {
	return strings.Join(strings.Fields(doc), " ")
}

// defaults returns the configuration a file that leaves every key out
// gets (config.Default, with the values Validate computes from others),
// with one workflow and one credential named exampleName as a workflow
// that names only its path gets them.
func defaults() (*config.Config, error) {
	cfg, err := config.Parse([]byte("n8n: {base_url: 'https://n8n.example.com'}\nworkflows: {'"+exampleName+"': {path: p}}\n"), "")
	if err != nil {
		return nil, err
	}
	cfg.N8N.BaseURL = ""
	w := cfg.Workflows[exampleName]
	w.Path = ""
	cfg.Workflows[exampleName] = w
	return cfg, nil
}

// Configuration returns the configuration reference (docs/configuration.md)
// from the source of package config in dir, its types and config.Default.
// It fails when a key has no doc comment or a doc comment states a
// default number that is not the default.
func Configuration(dir string) ([]byte, error) {
	docs, err := fieldDocs(dir)
	if err != nil {
		return nil, err
	}
	cfg, err := defaults()
	if err != nil {
		return nil, err
	}
	w := &walker{docs: docs}
	w.walk("", reflect.TypeFor[config.Config](), reflect.ValueOf(cfg).Elem())
	if len(w.errs) > 0 {
		return nil, fmt.Errorf("configuration reference:\n%s", strings.Join(w.errs, "\n"))
	}
	var b bytes.Buffer
	b.WriteString(`# Configuration reference

<!-- Generated by make docs (internal/docgen) from package config: its types, their doc comments
and config.Default. Do not edit: change the doc comments or the defaults, then run make docs. -->

Every key of the YAML configuration, with its type, its default and its doc comment (` + "`go doc config.<Type>`" + `).
A key the file leaves out, or sets to zero where zero has no meaning of its own, gets its default.
Durations are seconds (` + "`30`" + `, ` + "`1.5`" + `) or Go durations (` + "`\"30s\"`" + `, ` + "`\"5m\"`" + `). Secrets print,
log and marshal as ` + "`REDACTED`" + `; write them as ` + "`${VAR}`" + `. Any value may use ` + "`${VAR}`" + ` and
` + "`${VAR:-default}`" + `; ` + "`$${`" + ` is a literal ` + "`${`" + `. An unknown key, a wrong type, an invalid value or an unset
variable is an error that names the file, line and field, such as
` + "`config.yaml:9:5: invokers.http.max_retries: want an integer, got \"three\"`" + `.

` + "`<name>`" + ` stands for a name the file chooses (a workflow's, a credential's).
`)
	section := ""
	for _, r := range w.rows {
		top, _, nested := strings.Cut(r.key, ".")
		if !nested {
			section = top
			fmt.Fprintf(&b, "\n## %s\n\n%s\n\n| key | type | default | description |\n|---|---|---|---|\n", top, r.doc)
			continue
		}
		_ = section
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", r.key, r.typ, code(r.def), escape(r.doc))
	}
	return b.Bytes(), nil
}

func code(s string) string {
	if s == "" {
		return ""
	}
	return "`" + s + "`"
}

func escape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
