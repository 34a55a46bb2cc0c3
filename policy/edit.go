package policy

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"
)

// Sentinel errors of the edits, for callers that map them to a refusal of
// the operator's request rather than a failure of their own.
var (
	ErrNoApproval     = errors.New("policy: no such approval")
	ErrApprovalExists = errors.New("policy: approval already in force")
)

// Reissue says how an edited policy document is issued anew.
type Reissue struct {
	Serial uint64    // the new serial: above the document's (and every serial the caller has seen)
	Issued time.Time // the new issued time
	// Validity, when above zero, sets expires to Issued + Validity; zero
	// keeps the document's expiry.
	Validity time.Duration
}

// Edited is a policy document after an edit: the YAML to sign, the policy it
// parses to, and (after Revoke) the YAML of the approval taken out, which
// Approve takes to put it back as it was.
type Edited struct {
	Doc     []byte
	Policy  *Policy
	Removed []byte
}

// Revoke returns doc without the approval id, reissued by r. The edit is
// made on the YAML itself, so the rest of the document keeps its comments
// and order.
func Revoke(doc []byte, id string, r Reissue) (*Edited, error) {
	var removed []byte
	e, err := edit(doc, r, func(approvals *yaml.Node) error {
		for i, n := range approvals.Content {
			if scalar(n, "id") == id {
				b, err := yaml.Marshal(n)
				if err != nil {
					return fmt.Errorf("policy: approval %q: %w", id, err)
				}
				removed = b
				approvals.Content = slices.Delete(approvals.Content, i, i+1)
				return nil
			}
		}
		return fmt.Errorf("%w: %q", ErrNoApproval, id)
	})
	if err != nil {
		return nil, err
	}
	e.Removed = removed
	return e, nil
}

// Approve returns doc with one more approval, reissued by r. approval is a
// YAML mapping as a policy's approvals list holds it (Edited.Removed, or
// NewApprovalYAML's); an approval of the same id already in doc is
// ErrApprovalExists. Whether the approval is valid is decided by Parse, on
// the whole edited document.
func Approve(doc, approval []byte, r Reissue) (*Edited, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(approval, &n); err != nil || len(n.Content) == 0 || n.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%w: the approval is not a YAML mapping", ErrInvalid)
	}
	a := n.Content[0]
	id := scalar(a, "id")
	return edit(doc, r, func(approvals *yaml.Node) error {
		for _, m := range approvals.Content {
			if scalar(m, "id") == id {
				return fmt.Errorf("%w: %q", ErrApprovalExists, id)
			}
		}
		approvals.Content = append(approvals.Content, a)
		return nil
	})
}

// NewApprovalYAML is the YAML of an approval made of its fields (remote
// prefixes and services in the policy's own notation), for Approve.
func NewApprovalYAML(id, holder string, sites, remote, services []string) ([]byte, error) {
	m := map[string]any{"id": id, "holder": holder, "remote": remote}
	if len(sites) > 0 {
		m["sites"] = sites
	}
	if len(services) > 0 {
		m["services"] = services
	}
	b, err := yaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("policy: approval %q: %w", id, err)
	}
	return b, nil
}

// edit applies change to the approvals list of doc, sets serial, issued
// and (with a validity) expires, and parses the result.
func edit(doc []byte, r Reissue, change func(approvals *yaml.Node) error) (*Edited, error) {
	old, err := Parse(doc)
	if err != nil {
		return nil, err
	}
	if r.Serial <= old.Serial {
		return nil, fmt.Errorf("%w: new serial %d is not above %d", ErrInvalid, r.Serial, old.Serial)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	top := root.Content[0] // Parse accepted it: a document holding a mapping
	var approvals *yaml.Node
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == "approvals" {
			approvals = top.Content[i+1]
		}
	}
	if approvals == nil {
		approvals = &yaml.Node{Kind: yaml.SequenceNode}
		top.Content = append(top.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "approvals"}, approvals)
	}
	if approvals.Kind != yaml.SequenceNode { // approvals: null
		approvals.Kind, approvals.Tag, approvals.Value = yaml.SequenceNode, "", ""
	}
	approvals.Style = 0 // block style, whatever the original used
	if err := change(approvals); err != nil {
		return nil, err
	}
	setScalar(top, "serial", fmt.Sprint(r.Serial), "!!int")
	setScalar(top, "issued", r.Issued.UTC().Format(time.RFC3339), "")
	if r.Validity > 0 {
		setScalar(top, "expires", r.Issued.Add(r.Validity).UTC().Format(time.RFC3339), "")
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return nil, fmt.Errorf("policy: encode the edited policy: %w", err)
	}
	out := buf.Bytes()
	p, err := Parse(out)
	if err != nil {
		return nil, fmt.Errorf("policy: the edited document does not parse: %w", err)
	}
	return &Edited{Doc: out, Policy: p}, nil
}

func scalar(m *yaml.Node, key string) string {
	if m.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1].Value
		}
	}
	return ""
}

func setScalar(m *yaml.Node, key, value, tag string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = &yaml.Node{Kind: yaml.ScalarNode, Value: value, Tag: tag}
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key},
		&yaml.Node{Kind: yaml.ScalarNode, Value: value, Tag: tag})
}
