package policy

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestEditRevokeApprove(t *testing.T) {
	doc, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	issued := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	r := Reissue{Serial: 43, Issued: issued, Validity: 30 * 24 * time.Hour}

	rev, err := Revoke(doc, "LA-2026-0017", r)
	if err != nil {
		t.Fatal(err)
	}
	p := rev.Policy
	if p.Serial != 43 || !p.Issued.Equal(issued) || !p.Expires.Equal(issued.Add(r.Validity)) {
		t.Errorf("reissued as serial %d, issued %s, expires %s", p.Serial, p.Issued, p.Expires)
	}
	if len(p.Approvals) != 1 || p.Approvals[0].ID != "LA-2026-0018" {
		t.Errorf("approvals after revoke: %+v", p.Approvals)
	}
	if !strings.Contains(string(rev.Doc), "# A small policy") {
		t.Errorf("the document's comment is lost:\n%s", rev.Doc)
	}
	if d := Diff(mustParse(t, string(doc)), p); len(d) != 3 || d[2].Kind != ApprovalRevoked || d[2].ID != "LA-2026-0017" {
		t.Errorf("Diff after revoke: %v", d)
	}

	// Approving the removed YAML again restores the approval as it was.
	r.Serial = 44
	back, err := Approve(rev.Doc, rev.Removed, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range Diff(mustParse(t, string(doc)), back.Policy) {
		if c.Kind >= ApprovalAdded {
			t.Errorf("restored approval differs: %v", c)
		}
	}

	// A new approval from its fields.
	y, err := NewApprovalYAML("LA-2026-0099", "New Carrier", nil, []string{"192.0.2.0/24"}, []string{"tcp/443"})
	if err != nil {
		t.Fatal(err)
	}
	r.Serial, r.Validity = 45, 0
	add, err := Approve(back.Doc, y, r)
	if err != nil {
		t.Fatal(err)
	}
	if a := add.Policy.Approvals[len(add.Policy.Approvals)-1]; a.ID != "LA-2026-0099" || a.Holder != "New Carrier" || len(a.Remote) != 1 || len(a.Services) != 1 {
		t.Errorf("new approval: %+v", a)
	}
	if !add.Policy.Expires.Equal(back.Policy.Expires) {
		t.Errorf("zero validity changed the expiry: %s -> %s", back.Policy.Expires, add.Policy.Expires)
	}
}

func TestEditRefusals(t *testing.T) {
	doc, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := Reissue{Serial: 43, Issued: time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)}
	dup, _ := NewApprovalYAML("LA-2026-0018", "x", nil, []string{"192.0.2.0/24"}, nil)
	bad, _ := NewApprovalYAML("X", "x", nil, []string{"300.0.0.0/8"}, nil)
	tests := []struct {
		name string
		run  func() (*Edited, error)
		want error
	}{
		{"revoke unknown", func() (*Edited, error) { return Revoke(doc, "nope", r) }, ErrNoApproval},
		{"approve twice", func() (*Edited, error) { return Approve(doc, dup, r) }, ErrApprovalExists},
		{"invalid approval", func() (*Edited, error) { return Approve(doc, bad, r) }, ErrInvalid},
		{"not a mapping", func() (*Edited, error) { return Approve(doc, []byte("[1, 2]"), r) }, ErrInvalid},
		{"serial not above", func() (*Edited, error) {
			return Revoke(doc, "LA-2026-0018", Reissue{Serial: 42, Issued: r.Issued})
		}, ErrInvalid},
		{"invalid document", func() (*Edited, error) { return Revoke([]byte("serial: x\n"), "A", r) }, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := tt.run()
			if !errors.Is(err, tt.want) || e != nil {
				t.Errorf("got %v, %v; want %v", e, err, tt.want)
			}
		})
	}
}
