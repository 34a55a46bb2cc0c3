package config

import (
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"linkguard.dev/linkguard/policy/yamlpos"
)

// The YAML library's own errors name Go types ("field telemetry_evry not
// found in type config.MQTT", "cannot unmarshal !!str `two` into int") and
// stop at the first bad enum. shapeErrors walks the document against the
// Config type first and says each problem in the file's words: the line,
// the key path as written (mqtt.queue.max_mb) and what the value should
// be, with a suggestion for a near-miss key. Only a document it finds
// nothing wrong with is decoded.

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	durationType    = reflect.TypeFor[time.Duration]()
)

// shapeErrors reports every key that the type has no field for and every
// value that does not decode into its field.
func shapeErrors(root *yaml.Node) []error {
	w := walker{aliases: maxAliases}
	w.walk(root, reflect.TypeFor[Config](), nil)
	return w.errs
}

// maxAliases bounds the aliases a walk follows, so that a document built to
// expand (a "billion laughs") costs nothing; no configuration needs so many.
const maxAliases = 1000

type walker struct {
	errs    []error
	aliases int
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path []any) {
	errs := &w.errs
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		if w.aliases--; w.aliases < 0 {
			if w.aliases == -1 {
				*errs = append(*errs, &yamlpos.KeyError{Line: n.Line, Path: yamlpos.PathString(path...), Msg: fmt.Sprintf("more than %d aliases", maxAliases)})
			}
			return
		}
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // absent: the default applies
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	bad := func(format string, args ...any) {
		*errs = append(*errs, &yamlpos.KeyError{Line: n.Line, Path: yamlpos.PathString(path...), Msg: fmt.Sprintf(format, args...)})
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) || t.Kind() != reflect.Struct && t.Kind() != reflect.Slice && t.Kind() != reflect.Map {
		if n.Kind != yaml.ScalarNode {
			bad("must be a single value, not %s", shapeName(n))
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			bad("%s", leafMessage(n, t, err))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			bad("must be keys and values (key: value), not %s", shapeName(n))
			return
		}
		fields := yamlFields(t)
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			at := append(slices.Clone(path), k.Value)
			keyErr := func(format string, args ...any) {
				*errs = append(*errs, &yamlpos.KeyError{Line: k.Line, Path: yamlpos.PathString(at...), Msg: fmt.Sprintf(format, args...)})
			}
			if first, dup := seen[k.Value]; dup {
				keyErr("given twice (first at line %d)", first)
				continue
			}
			seen[k.Value] = k.Line
			f, ok := fields[k.Value]
			if !ok {
				keyErr("%s", unknownKey(k.Value, fields))
				continue
			}
			w.walk(v, f, at)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			bad("must be a list ([a, b] or lines starting with -), not %s", shapeName(n))
			return
		}
		for i, e := range n.Content {
			w.walk(e, t.Elem(), append(slices.Clone(path), i))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			bad("must be keys and values (key: value), not %s", shapeName(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			w.walk(n.Content[i+1], t.Elem(), append(slices.Clone(path), n.Content[i].Value))
		}
	}
}

// yamlFields maps a struct's YAML keys to their field types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	return m
}

// leafMessage says what a scalar should have been.
func leafMessage(n *yaml.Node, t reflect.Type, err error) string {
	switch {
	case reflect.PointerTo(t).Implements(textUnmarshaler):
		return err.Error() // the config's own types say it in words already
	case t == durationType:
		return fmt.Sprintf("%q is not a duration (like 500ms, 10s or 5m)", n.Value)
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("%q is not a whole number", n.Value)
	case reflect.Float32, reflect.Float64:
		return fmt.Sprintf("%q is not a number", n.Value)
	case reflect.Bool:
		return fmt.Sprintf("%q is not true or false", n.Value)
	}
	return yamlpos.Clean(err).Error()
}

func shapeName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "keys and values"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

// unknownKey suggests the nearest known key when the given one is a
// near miss (a typo or two), and lists the known keys otherwise.
func unknownKey(key string, fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	best, bestD := "", len(key)
	for _, name := range names {
		if d := editDistance(key, name); d < bestD {
			best, bestD = name, d
		}
	}
	if best != "" && bestD <= max(1, min(3, len(key)/3)) {
		return fmt.Sprintf("unknown key; did you mean %s?", best)
	}
	return fmt.Sprintf("unknown key (known here: %s)", strings.Join(names, ", "))
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
