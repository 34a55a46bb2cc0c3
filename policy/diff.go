package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// ChangeKind says what part of a policy a Change is about.
type ChangeKind uint8

const (
	SerialChanged   ChangeKind = iota // the serial; not a change of what is enforced
	ExpiresChanged                    // the policy's expiry
	DefaultChanged                    // the default for traffic no approval covers
	DomesticChanged                   // the domestic prefixes
	ApprovalAdded                     // an approval the old policy lacks
	ApprovalChanged                   // an approval in both, with different terms
	ApprovalRevoked                   // an approval the new policy lacks
)

var changeKinds = [...]string{"serial", "expires", "default", "domestic", "added", "changed", "revoked"}

func (k ChangeKind) String() string {
	if int(k) < len(changeKinds) {
		return changeKinds[k]
	}
	return fmt.Sprintf("ChangeKind(%d)", k)
}

// Change is one difference between two policies, as Diff finds it.
type Change struct {
	Kind ChangeKind
	// ID and Holder name the approval, for the approval kinds.
	ID, Holder string
	// Old and New are the policy-wide value before and after (serial,
	// expires, default, domestic), in the words String prints.
	Old, New string
	// Details are the terms of a changed approval that differ, one phrase
	// each ("remote added 192.0.2.0/24"); for an added approval, its size.
	Details []string
}

// String is the change as one line, as lgctl policy diff prints it:
// "+ id (holder): ...", "~ id (holder): ...", "- id (holder): revoked" for
// approvals, "field: old -> new" for the rest.
func (c Change) String() string {
	switch c.Kind {
	case ApprovalAdded:
		return fmt.Sprintf("+ %s (%s): %s", c.ID, c.Holder, strings.Join(c.Details, "; "))
	case ApprovalChanged:
		return fmt.Sprintf("~ %s (%s): %s", c.ID, c.Holder, strings.Join(c.Details, "; "))
	case ApprovalRevoked:
		return fmt.Sprintf("- %s (%s): revoked", c.ID, c.Holder)
	}
	return fmt.Sprintf("%s: %s -> %s", c.Kind, c.Old, c.New)
}

// Diff lists what changed from old to cur: the serial first, then expiry,
// default and domestic prefixes, then approvals added or changed (in cur's
// order) and revoked (in old's order). Approvals are matched by ID; prefix
// lists are compared as sets. Equal policies give no changes.
func Diff(old, cur *Policy) []Change {
	var out []Change
	if old.Serial != cur.Serial {
		out = append(out, Change{Kind: SerialChanged, Old: fmt.Sprint(old.Serial), New: fmt.Sprint(cur.Serial)})
	}
	if !old.Expires.Equal(cur.Expires) {
		out = append(out, Change{Kind: ExpiresChanged, Old: old.Expires.Format(time.RFC3339), New: cur.Expires.Format(time.RFC3339)})
	}
	if old.Default != cur.Default {
		out = append(out, Change{Kind: DefaultChanged, Old: old.Default.String(), New: cur.Default.String()})
	}
	if a, b := sortedStrings(old.Domestic), sortedStrings(cur.Domestic); !slices.Equal(a, b) {
		out = append(out, Change{Kind: DomesticChanged, Old: strings.Join(a, ", "), New: strings.Join(b, ", ")})
	}
	oldByID := map[string]*Approval{}
	for i := range old.Approvals {
		oldByID[old.Approvals[i].ID] = &old.Approvals[i]
	}
	seen := map[string]bool{}
	for i := range cur.Approvals {
		b := &cur.Approvals[i]
		seen[b.ID] = true
		a, ok := oldByID[b.ID]
		if !ok {
			out = append(out, Change{Kind: ApprovalAdded, ID: b.ID, Holder: b.Holder,
				Details: []string{fmt.Sprintf("%d remote prefixes", len(b.Remote))}})
			continue
		}
		if d := approvalChanges(a, b); len(d) > 0 {
			out = append(out, Change{Kind: ApprovalChanged, ID: b.ID, Holder: b.Holder, Details: d})
		}
	}
	for i := range old.Approvals {
		if a := &old.Approvals[i]; !seen[a.ID] {
			out = append(out, Change{Kind: ApprovalRevoked, ID: a.ID, Holder: a.Holder})
		}
	}
	return out
}

func approvalChanges(a, b *Approval) []string {
	var out []string
	if a.Holder != b.Holder {
		out = append(out, fmt.Sprintf("holder %q -> %q", a.Holder, b.Holder))
	}
	if !slices.Equal(a.Sites, b.Sites) {
		out = append(out, fmt.Sprintf("sites [%s] -> [%s]", strings.Join(a.Sites, ", "), strings.Join(b.Sites, ", ")))
	}
	added, removed := setDiff(sortedStrings(a.Remote), sortedStrings(b.Remote))
	if len(added) > 0 {
		out = append(out, "remote added "+strings.Join(added, ", "))
	}
	if len(removed) > 0 {
		out = append(out, "remote removed "+strings.Join(removed, ", "))
	}
	if x, y := sortedStrings(a.Services), sortedStrings(b.Services); !slices.Equal(x, y) {
		out = append(out, fmt.Sprintf("services [%s] -> [%s]", strings.Join(x, ", "), strings.Join(y, ", ")))
	}
	if !a.ValidFrom.Equal(b.ValidFrom) || !a.ValidUntil.Equal(b.ValidUntil) {
		out = append(out, fmt.Sprintf("window %s..%s -> %s..%s", when(a.ValidFrom), when(a.ValidUntil), when(b.ValidFrom), when(b.ValidUntil)))
	}
	return out
}

func when(t time.Time) string {
	if t.IsZero() {
		return "open"
	}
	return t.Format(time.RFC3339)
}

func sortedStrings[T fmt.Stringer](ps []T) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	slices.Sort(out)
	return out
}

// setDiff returns what b has that a lacks, and what a has that b lacks;
// both inputs are sorted.
func setDiff(a, b []string) (added, removed []string) {
	for _, x := range b {
		if _, ok := slices.BinarySearch(a, x); !ok {
			added = append(added, x)
		}
	}
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); !ok {
			removed = append(removed, x)
		}
	}
	return added, removed
}
