// Package yamlpos finds where a key path stands in a YAML document and checks
// mapping keys against the allowed set, so that validation errors in the
// policy and the agent's configuration can name the line and the field.
//
// It imports only the YAML library.
package yamlpos

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Doc is a parsed YAML document.
type Doc struct {
	root *yaml.Node
}

// Parse parses one YAML document. An empty document has no root.
func Parse(data []byte) (*Doc, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		return nil, Clean(err)
	}
	d := &Doc{}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		d.root = n.Content[0]
	}
	return d, nil
}

// Root is the top node, or nil for an empty document.
func (d *Doc) Root() *yaml.Node { return d.root }

// Line returns the line of the deepest node along path that exists, so a
// missing field is reported at its parent. Path elements are mapping keys
// (string) or sequence indexes (int); a mapping entry is located at its key.
func (d *Doc) Line(path ...any) int {
	n := d.root
	if n == nil {
		return 0
	}
	line := n.Line
	for _, p := range path {
		key, next := child(n, p)
		if next == nil {
			break
		}
		n, line = next, key.Line
	}
	return line
}

// Child returns the value node under key (for a mapping, p is a string) or at
// index (for a sequence, p is an int), or nil.
func Child(n *yaml.Node, p any) *yaml.Node {
	_, v := child(n, p)
	return v
}

// child returns the key node (the element itself for a sequence) and the
// value node at p.
func child(n *yaml.Node, p any) (key, val *yaml.Node) {
	if n == nil {
		return nil, nil
	}
	switch k := p.(type) {
	case string:
		if n.Kind != yaml.MappingNode {
			return nil, nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				return n.Content[i], n.Content[i+1]
			}
		}
	case int:
		if n.Kind == yaml.SequenceNode && k >= 0 && k < len(n.Content) {
			return n.Content[k], n.Content[k]
		}
	}
	return nil, nil
}

// KeyError is a problem at a place in a YAML document.
type KeyError struct {
	Line int
	Path string
	Msg  string
}

func (e *KeyError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return fmt.Sprintf("line %d: %s: %s", e.Line, e.Path, e.Msg)
}

// PathString renders a path as "approvals[3].remote[0]".
func PathString(path ...any) string {
	var b strings.Builder
	for _, p := range path {
		switch k := p.(type) {
		case int:
			b.WriteString("[" + strconv.Itoa(k) + "]")
		default:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			fmt.Fprint(&b, k)
		}
	}
	return b.String()
}

// Errorf builds a KeyError located at path.
func (d *Doc) Errorf(path []any, format string, args ...any) *KeyError {
	return &KeyError{Line: d.Line(path...), Path: PathString(path...), Msg: fmt.Sprintf(format, args...)}
}

// CheckKeys reports every key of the mapping at path that is not allowed, and
// every key given twice.
func (d *Doc) CheckKeys(path []any, allowed ...string) []error {
	n := d.root
	for _, p := range path {
		if n = Child(n, p); n == nil {
			return nil
		}
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	var errs []error
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		switch {
		case !slices.Contains(allowed, k.Value):
			errs = append(errs, &KeyError{Line: k.Line, Path: PathString(append(slices.Clone(path), k.Value)...),
				Msg: fmt.Sprintf("unknown key (allowed: %s)", strings.Join(allowed, ", "))})
		case seen[k.Value]:
			errs = append(errs, &KeyError{Line: k.Line, Path: PathString(append(slices.Clone(path), k.Value)...), Msg: "key given twice"})
		}
		seen[k.Value] = true
	}
	return errs
}

// Clean turns the YAML library's errors into one line each, without its
// "yaml: unmarshal errors:" preamble.
func Clean(err error) error {
	if err == nil {
		return nil
	}
	if te, ok := err.(*yaml.TypeError); ok {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = strings.TrimSpace(m)
		}
		return fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
}
