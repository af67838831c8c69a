package config

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/n8n-invoker/n8n-invoker/secret"
	"go.yaml.in/yaml/v3"
)

// Option changes how a configuration is loaded.
type Option func(*loader)

// WithLookupEnv sets the function that ${VAR} references read; the
// default is os.LookupEnv.
func WithLookupEnv(lookup func(string) (string, bool)) Option {
	return func(l *loader) { l.lookup = lookup }
}

type loader struct {
	file   string
	lookup func(string) (string, bool)
	pos    map[string]Position
}

// Load reads, expands and validates the configuration file at path.
func Load(path string, opts ...Option) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path, opts...)
}

// Parse decodes, expands and validates a configuration; file names it in
// errors. Keys the data leaves out keep their defaults.
func Parse(data []byte, file string, opts ...Option) (*Config, error) {
	l := &loader{file: file, lookup: os.LookupEnv, pos: map[string]Position{}}
	for _, o := range opts {
		o(l)
	}
	cfg := Default()
	cfg.file = file
	cfg.pos = l.pos

	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, l.syntaxError(err)
	}
	if len(doc.Content) == 0 {
		return nil, &Error{Pos: Position{File: file, Line: 1, Column: 1}, Msg: "empty configuration"}
	}
	if err := l.decode(doc.Content[0], reflect.ValueOf(cfg).Elem(), ""); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (l *loader) syntaxError(err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Error{Pos: Position{File: l.file, Line: n}, Msg: "YAML syntax: " + m[2]}
	}
	return &Error{Pos: Position{File: l.file}, Msg: "YAML syntax: " + strings.TrimPrefix(msg, "yaml: ")}
}

func (l *loader) at(n *yaml.Node) Position {
	return Position{File: l.file, Line: n.Line, Column: n.Column}
}

func (l *loader) errorf(n *yaml.Node, field, format string, args ...any) error {
	return &Error{Pos: l.at(n), Field: field, Msg: fmt.Sprintf(format, args...)}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	return fmt.Sprintf("%q", n.Value)
}

var (
	durationType = reflect.TypeFor[Duration]()
	secretType   = reflect.TypeFor[secret.Secret]()
	hookRefType  = reflect.TypeFor[HookRef]()
)

// decode walks n into v, expanding ${VAR} in scalars and rejecting unknown
// keys and wrong types with their position.
func (l *loader) decode(n *yaml.Node, v reflect.Value, field string) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil // keep the default
	}
	switch v.Type() {
	case durationType, secretType, hookRefType:
		s, err := l.scalar(n, field)
		if err != nil {
			return err
		}
		switch v.Type() {
		case durationType:
			d, err := parseDuration(s)
			if err != nil {
				return l.errorf(n, field, "%v", err)
			}
			v.Set(reflect.ValueOf(d))
		case secretType:
			v.Set(reflect.ValueOf(secret.New(s)))
		default:
			v.Set(reflect.ValueOf(HookRef{Name: s, Pos: l.at(n)}))
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return l.errorf(n, field, "want a mapping, got %s", kindName(n))
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if seen[k.Value] {
				return l.errorf(k, join(field, k.Value), "duplicate key")
			}
			seen[k.Value] = true
			l.pos[join(field, k.Value)] = l.at(k)
			f, ok := fieldByTag(v, k.Value)
			if !ok {
				return l.errorf(k, join(field, k.Value), "unknown field (known: %s)", strings.Join(tags(v.Type()), ", "))
			}
			if err := l.decode(val, f, join(field, k.Value)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return l.errorf(n, field, "want a mapping, got %s", kindName(n))
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key := k.Value
			if v.MapIndex(reflect.ValueOf(key)).IsValid() {
				return l.errorf(k, join(field, key), "duplicate key")
			}
			l.pos[join(field, key)] = l.at(k)
			elem := reflect.New(v.Type().Elem()).Elem()
			if err := l.decode(val, elem, join(field, key)); err != nil {
				return err
			}
			v.SetMapIndex(reflect.ValueOf(key), elem)
		}
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return l.errorf(n, field, "want a list, got %s", kindName(n))
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			l.pos[fmt.Sprintf("%s[%d]", field, i)] = l.at(item)
			if err := l.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", field, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	}

	s, err := l.scalar(n, field)
	if err != nil {
		return err
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Int, reflect.Int64:
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return l.errorf(n, field, "want an integer, got %q", s)
		}
		v.SetInt(i)
	case reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return l.errorf(n, field, "want a number, got %q", s)
		}
		v.SetFloat(f)
	case reflect.Bool:
		switch strings.ToLower(s) {
		case "true", "yes", "on":
			v.SetBool(true)
		case "false", "no", "off":
			v.SetBool(false)
		default:
			return l.errorf(n, field, "want true or false, got %q", s)
		}
	default:
		return l.errorf(n, field, "unsupported field type %s", v.Type())
	}
	return nil
}

// scalar returns the expanded value of a scalar node.
func (l *loader) scalar(n *yaml.Node, field string) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", l.errorf(n, field, "want a single value, got %s", kindName(n))
	}
	s, err := Expand(n.Value, l.lookup)
	if err != nil {
		return "", l.errorf(n, field, "%v", err)
	}
	return s, nil
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

func fieldByTag(v reflect.Value, key string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); f.IsExported() && tag != "" && tag != "-" && tag == key {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func tags(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	return out
}
