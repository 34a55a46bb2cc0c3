package roster

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/yamlpos"
)

// Bounds on one roster. A national grid operator, a committee and the field
// technicians are a few hundred people; the bounds leave ten times that.
const (
	MaxSize      = 1 << 20 // bytes of YAML
	MaxEnvelope  = 2 << 20 // bytes of signed envelope (base64 and signatures)
	MaxOperators = 4096
	MaxKeys      = 8 // per operator: a current key and a few being rotated in or out
)

// ErrInvalid marks every validation failure; the joined errors name lines.
var ErrInvalid = errors.New("roster: invalid")

var (
	topKeys      = []string{"serial", "issued", "expires", "thresholds", "operators"}
	operatorKeys = []string{"id", "name", "roles", "keys"}
	idPattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
)

// Parse decodes and validates a roster payload. Every problem found is
// reported, each as "line N: field: message"; the returned error wraps
// ErrInvalid.
//
// Beyond the shape it checks that ids are unique, that a key belongs to one
// operator only (a key's rights must not depend on which entry is read), and
// that no threshold asks for more operators than hold its role.
func Parse(data []byte) (*Roster, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes is over the %d byte limit", ErrInvalid, len(data), MaxSize)
	}
	doc, err := yamlpos.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	d := &decoder{doc: doc}
	r := d.roster()
	if len(d.errs) > 0 {
		return nil, fmt.Errorf("%w:\n%w", ErrInvalid, errors.Join(d.errs...))
	}
	return r, nil
}

type decoder struct {
	doc  *yamlpos.Doc
	errs []error
}

// at reports a problem at path (at n's line when n is known).
func (d *decoder) at(n *yaml.Node, path []any, format string, args ...any) {
	e := d.doc.Errorf(path, format, args...)
	if n != nil {
		e.Line = n.Line
	}
	d.errs = append(d.errs, e)
}

// node returns the value at path, nil when absent or null; a required one
// that is absent is reported.
func (d *decoder) node(path []any, required bool) *yaml.Node {
	n := d.doc.Root()
	for _, k := range path {
		n = yamlpos.Child(n, k)
	}
	if n != nil && n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		n = nil
	}
	if n == nil && required {
		d.at(nil, path, "is required")
	}
	return n
}

// text returns the scalar at path ("" when absent or not a scalar).
func (d *decoder) text(path []any, required bool) string {
	n := d.node(path, required)
	switch {
	case n == nil:
		return ""
	case n.Kind != yaml.ScalarNode:
		d.at(n, path, "want a single value")
		return ""
	case required && strings.TrimSpace(n.Value) == "":
		d.at(n, path, "is empty")
	}
	return n.Value
}

// list returns the elements of the sequence at path.
func (d *decoder) list(path []any, required bool) []*yaml.Node {
	n := d.node(path, required)
	if n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.at(n, path, "want a list")
		return nil
	}
	if required && len(n.Content) == 0 {
		d.at(n, path, "is empty")
	}
	return n.Content
}

func (d *decoder) when(path []any) time.Time {
	s := d.text(path, true)
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		d.at(nil, path, "%q is not an RFC 3339 time (2026-12-01T00:00:00Z)", s)
	}
	return t
}

func (d *decoder) count(path []any, what string) uint64 {
	s := d.text(path, true)
	if s == "" {
		return 0
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		d.at(nil, path, "%q is not %s", s, what)
		return 0
	}
	return n
}

func (d *decoder) roster() *Roster {
	root := d.doc.Root()
	if root == nil {
		d.errs = append(d.errs, errors.New("the document is empty"))
		return nil
	}
	if root.Kind != yaml.MappingNode {
		d.at(root, nil, "a roster is a mapping with serial, issued, expires, thresholds and operators")
		return nil
	}
	d.errs = append(d.errs, d.doc.CheckKeys(nil, topKeys...)...)
	r := &Roster{
		Serial:  d.count([]any{"serial"}, "a positive whole number"),
		Issued:  d.when([]any{"issued"}),
		Expires: d.when([]any{"expires"}),
	}
	if !r.Issued.IsZero() && !r.Expires.IsZero() && !r.Expires.After(r.Issued) {
		d.at(nil, []any{"expires"}, "expires %s is not after issued %s", r.Expires.Format(time.RFC3339), r.Issued.Format(time.RFC3339))
	}
	ops := d.list([]any{"operators"}, true)
	if len(ops) > MaxOperators {
		d.at(nil, []any{"operators"}, "%d operators, at most %d", len(ops), MaxOperators)
		return r
	}
	ids := map[string]int{}
	keys := map[string]string{} // key id -> operator id
	for i, n := range ops {
		o := d.operator(n, i)
		if o.ID != "" {
			if first, dup := ids[o.ID]; dup {
				d.at(nil, []any{"operators", i, "id"}, "id %q is already used by operators[%d]", o.ID, first)
			}
			ids[o.ID] = i
		}
		for j, k := range o.Keys {
			if other, dup := keys[k.ID]; dup {
				d.at(nil, []any{"operators", i, "keys", j}, "key %.12s is already %s's", k.ID, other)
			}
			keys[k.ID] = o.ID
		}
		r.Operators = append(r.Operators, o)
	}
	r.Thresholds = d.thresholds(r)
	return r
}

func (d *decoder) operator(n *yaml.Node, i int) Operator {
	path := func(k ...any) []any { return append([]any{"operators", i}, k...) }
	if n.Kind != yaml.MappingNode {
		d.at(n, path(), "an operator is a mapping with id, name, roles and keys")
		return Operator{}
	}
	d.errs = append(d.errs, d.doc.CheckKeys(path(), operatorKeys...)...)
	o := Operator{ID: d.text(path("id"), true), Name: d.text(path("name"), false)}
	if o.ID != "" && !idPattern.MatchString(o.ID) {
		d.at(nil, path("id"), "%q is not an id (lower-case letters, digits, '.', '_' and '-', at most 64)", o.ID)
	}
	for j, rn := range d.list(path("roles"), true) {
		role := Role(rn.Value)
		switch {
		case rn.Kind != yaml.ScalarNode || !slices.Contains(Roles, role):
			d.at(rn, path("roles", j), "%q is not a role (%s)", rn.Value, roleList())
		case slices.Contains(o.Roles, role):
			d.at(rn, path("roles", j), "role %s given twice", role)
		default:
			o.Roles = append(o.Roles, role)
		}
	}
	kn := d.list(path("keys"), true)
	if len(kn) > MaxKeys {
		d.at(nil, path("keys"), "%d keys, at most %d", len(kn), MaxKeys)
		return o
	}
	for j, k := range kn {
		if k.Kind != yaml.ScalarNode {
			d.at(k, path("keys", j), "want a public key")
			continue
		}
		pub, err := ParseKey(k.Value)
		if err != nil {
			d.at(k, path("keys", j), "%v", err)
			continue
		}
		id := dsse.KeyID(pub)
		if slices.ContainsFunc(o.Keys, func(x Key) bool { return x.ID == id }) {
			d.at(k, path("keys", j), "key %.12s given twice", id)
			continue
		}
		o.Keys = append(o.Keys, Key{ID: id, Public: pub})
	}
	return o
}

func (d *decoder) thresholds(r *Roster) Thresholds {
	t := Defaults
	n := d.node([]any{"thresholds"}, false)
	if n == nil {
		return t
	}
	if n.Kind != yaml.MappingNode {
		d.at(n, []any{"thresholds"}, "want a mapping of class: number")
		return t
	}
	names := make([]string, len(Classes))
	for i, c := range Classes {
		names[i] = string(c)
	}
	d.errs = append(d.errs, d.doc.CheckKeys([]any{"thresholds"}, names...)...)
	for _, c := range Classes {
		path := []any{"thresholds", string(c)}
		if d.node(path, false) == nil {
			continue
		}
		v := d.count(path, "a number of signatures (1 or more)")
		if v == 0 {
			continue
		}
		if c == ClassProtected && v < MinProtected {
			d.at(nil, path, "%d: a protected circuit needs at least %d grid signatures (never one remote key)", v, MinProtected)
			continue
		}
		holders := uint64(len(r.Holders(c.Role())))
		if v > holders {
			d.at(nil, path, "%d signatures, but %d operators hold the role %s", v, holders, c.Role())
			continue
		}
		*t.field(c) = int(v)
	}
	return t
}

func roleList() string {
	s := make([]string, len(Roles))
	for i, r := range Roles {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

// ParseKey reads an ed25519 public key as a roster writes it: the PEM of a
// .pub file (`lgctl key gen` writes them), or its base64 body on one line.
func ParseKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "-----BEGIN") {
		pub, err := dsse.ParsePublicKey([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("not an ed25519 public key: %w", err)
		}
		return pub, nil
	}
	der, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("not a public key: want the PEM of a .pub file or its base64 body")
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("not a public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T key, want ed25519", k)
	}
	return pub, nil
}

// FormatKey writes pub as ParseKey reads it on one line.
func FormatKey(pub ed25519.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(fmt.Sprintf("roster: marshal public key: %v", err)) // a key of the wrong length
	}
	return base64.StdEncoding.EncodeToString(der)
}
