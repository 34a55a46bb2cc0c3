package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"

	"linkguard.dev/linkguard/policy/yamlpos"
)

// MaxSize bounds a policy payload: a national policy of 100,000 prefixes is
// about 3 MB of YAML.
const MaxSize = 24 << 20

// ErrInvalid marks every validation failure; the joined errors name lines.
var ErrInvalid = errors.New("policy: invalid")

var (
	topKeys      = []string{"serial", "issued", "expires", "default", "domestic", "approvals"}
	approvalKeys = []string{"id", "holder", "sites", "remote", "services", "valid_from", "valid_until", "note"}
)

// Parse decodes and validates a policy payload. Every problem found is
// reported, each as "line N: field: message"; the returned error wraps
// ErrInvalid.
func Parse(data []byte) (*Policy, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes is over the %d byte limit", ErrInvalid, len(data), MaxSize)
	}
	doc, err := yamlpos.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	p := &parser{doc: doc}
	pol := p.policy(doc.Root())
	if len(p.errs) > 0 {
		return nil, fmt.Errorf("%w:\n%w", ErrInvalid, errors.Join(p.errs...))
	}
	return pol, nil
}

type parser struct {
	doc  *yamlpos.Doc
	errs []error
}

func (p *parser) fail(n *yaml.Node, path []any, format string, args ...any) {
	line := p.doc.Line(path...)
	if n != nil {
		line = n.Line
	}
	p.errs = append(p.errs, &yamlpos.KeyError{Line: line, Path: yamlpos.PathString(path...), Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) policy(root *yaml.Node) *Policy {
	if root == nil || root.Kind != yaml.MappingNode {
		p.fail(root, nil, "a policy is a mapping with serial, issued, expires, default, domestic and approvals")
		return nil
	}
	p.errs = append(p.errs, p.doc.CheckKeys(nil, topKeys...)...)
	pol := &Policy{}
	pol.Serial = p.serial(root)
	pol.Issued = p.time(root, []any{"issued"}, true)
	pol.Expires = p.time(root, []any{"expires"}, true)
	if !pol.Issued.IsZero() && !pol.Expires.IsZero() && !pol.Expires.After(pol.Issued) {
		p.fail(nil, []any{"expires"}, "expires %s is not after issued %s", pol.Expires.Format(time.RFC3339), pol.Issued.Format(time.RFC3339))
	}
	switch d := p.scalar(root, []any{"default"}, false); d { // absent: deny
	case "deny", "":
		pol.Default = DefaultDeny
	case "monitor":
		pol.Default = DefaultMonitor
	default:
		p.fail(nil, []any{"default"}, "%q is not deny or monitor", d)
	}
	for i, s := range p.strings(root, []any{"domestic"}, false) {
		if pfx, err := ParsePrefix(s); err != nil {
			p.fail(nil, []any{"domestic", i}, "%v", err)
		} else {
			pol.Domestic = append(pol.Domestic, pfx)
		}
	}
	apps := yamlpos.Child(root, "approvals")
	if apps != nil && apps.Kind != yaml.SequenceNode && !isNull(apps) {
		p.fail(apps, []any{"approvals"}, "want a list of approvals")
		return pol
	}
	ids := map[string]int{}
	if apps != nil {
		pol.Approvals = make([]Approval, 0, len(apps.Content))
		for i := range apps.Content {
			a := p.approval(apps.Content[i], i)
			if a.ID != "" {
				if first, dup := ids[a.ID]; dup {
					p.fail(nil, []any{"approvals", i, "id"}, "id %q is already used by approvals[%d]", a.ID, first)
				}
				ids[a.ID] = i
			}
			pol.Approvals = append(pol.Approvals, a)
		}
	}
	return pol
}

func (p *parser) approval(n *yaml.Node, i int) Approval {
	path := []any{"approvals", i}
	at := func(k ...any) []any { return append([]any{"approvals", i}, k...) }
	if n.Kind != yaml.MappingNode {
		p.fail(n, path, "an approval is a mapping with id, holder, remote, ...")
		return Approval{}
	}
	p.errs = append(p.errs, p.doc.CheckKeys(path, approvalKeys...)...)
	a := Approval{
		ID:     p.scalar(p.doc.Root(), at("id"), true),
		Holder: p.scalar(p.doc.Root(), at("holder"), false),
		Note:   p.scalar(p.doc.Root(), at("note"), false),
		Sites:  p.strings(p.doc.Root(), at("sites"), false),
	}
	for j, s := range a.Sites {
		if s == "" {
			p.fail(nil, at("sites", j), "empty site name")
		}
	}
	remote := p.strings(p.doc.Root(), at("remote"), true)
	a.Remote = make([]netip.Prefix, 0, len(remote))
	for j, s := range remote {
		if pfx, err := ParsePrefix(s); err != nil {
			p.fail(nil, at("remote", j), "%v", err)
		} else {
			a.Remote = append(a.Remote, pfx)
		}
	}
	if len(remote) == 0 && yamlpos.Child(n, "remote") != nil {
		p.fail(nil, at("remote"), "an approval needs at least one remote prefix")
	}
	for j, s := range p.strings(p.doc.Root(), at("services"), false) {
		if svc, err := ParseService(s); err != nil {
			p.fail(nil, at("services", j), "%v", err)
		} else {
			a.Services = append(a.Services, svc)
		}
	}
	a.ValidFrom = p.time(p.doc.Root(), at("valid_from"), false)
	a.ValidUntil = p.time(p.doc.Root(), at("valid_until"), false)
	if !a.ValidFrom.IsZero() && !a.ValidUntil.IsZero() && !a.ValidUntil.After(a.ValidFrom) {
		p.fail(nil, at("valid_until"), "valid_until %s is not after valid_from %s",
			a.ValidUntil.Format(time.RFC3339), a.ValidFrom.Format(time.RFC3339))
	}
	return a
}

// lookup walks path from n; required fields that are absent are reported.
func (p *parser) lookup(n *yaml.Node, path []any, required bool) *yaml.Node {
	for _, k := range path {
		n = yamlpos.Child(n, k)
	}
	if (n == nil || isNull(n)) && required {
		p.fail(nil, path, "is required")
		return nil
	}
	if n != nil && isNull(n) {
		return nil
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func (p *parser) scalar(root *yaml.Node, path []any, required bool) string {
	n := p.lookup(root, path, required)
	if n == nil {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		p.fail(n, path, "want a single value")
		return ""
	}
	if required && n.Value == "" {
		p.fail(n, path, "is empty")
	}
	return n.Value
}

func (p *parser) strings(root *yaml.Node, path []any, required bool) []string {
	n := p.lookup(root, path, required)
	if n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.fail(n, path, "want a list")
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for j, c := range n.Content {
		if c.Kind != yaml.ScalarNode {
			p.fail(c, append(path, j), "want a single value")
			out = append(out, "")
			continue
		}
		out = append(out, c.Value)
	}
	return out
}

func (p *parser) time(root *yaml.Node, path []any, required bool) time.Time {
	s := p.scalar(root, path, required)
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		p.fail(nil, path, "%q is not an RFC 3339 time (2026-12-01T00:00:00Z)", s)
	}
	return t
}

func (p *parser) serial(root *yaml.Node) uint64 {
	s := p.scalar(root, []any{"serial"}, true)
	if s == "" {
		return 0
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		p.fail(nil, []any{"serial"}, "%q is not a positive whole number", s)
	}
	return n
}
