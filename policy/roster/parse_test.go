package roster_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"linkguard.dev/linkguard/policy/roster"
)

func TestParseExample(t *testing.T) {
	data, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := roster.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	want := roster.Thresholds{Committee: 2, Grid: 1, Protected: 2, Technician: 1, Release: 2}
	if r.Serial != 3 || len(r.Operators) != 7 || r.Thresholds != want {
		t.Fatalf("serial %d, %d operators, thresholds %+v", r.Serial, len(r.Operators), r.Thresholds)
	}
	chai := r.Operator("chai")
	if chai == nil || !chai.Has(roster.Release) || chai.Has(roster.Grid) || len(chai.Keys) != 1 {
		t.Fatalf("chai (a PEM key) = %+v", chai)
	}
	if got := r.ByKey(chai.Keys[0].ID); got != chai {
		t.Fatalf("ByKey = %v", got)
	}
	if n := len(r.Holders(roster.Committee)); n != 3 {
		t.Fatalf("%d committee members, want 3", n)
	}
	if ring := r.Keyring(roster.Grid); ring.Len() != 2 || ring.Name(r.Operator("grid-ops-2").Keys[0].ID) != "grid-ops-2" {
		t.Fatalf("grid keyring: %d keys", ring.Len())
	}
	if r.Keyring().Len() != 7 {
		t.Fatal("the full keyring lacks keys")
	}
}

const (
	keyA = "MCowBQYDK2VwAyEAFkZ98pry52P885AHX5jRK5QHm8swLJhZAuLY49XCXHQ="
	keyB = "MCowBQYDK2VwAyEADxz8sEMUs9JMoz7hzrh0QBrmEIGn4ia2lLxhJSriljo="
	head = "serial: 1\nissued: 2026-12-01T00:00:00Z\nexpires: 2027-01-01T00:00:00Z\n"
)

func TestParseErrors(t *testing.T) {
	ops := "operators:\n  - {id: a, roles: [grid], keys: [" + keyA + "]}\n"
	tests := []struct {
		name, doc string
		want      []string // each must appear in the error
	}{
		{"empty", "", []string{"the document is empty"}},
		{"not a mapping", "- a\n", []string{"line 1:", "a roster is a mapping"}},
		{"unknown top key", head + ops + "colour: red\n", []string{"line 6: colour: unknown key"}},
		{"serial zero", strings.Replace(head, "serial: 1", "serial: 0", 1) + ops, []string{"line 1: serial:", "not a positive whole number"}},
		{"bad time", strings.Replace(head, "2027-01-01T00:00:00Z", "soon", 1) + ops, []string{"line 3: expires:", "RFC 3339"}},
		{"expires before issued", strings.Replace(head, "2027-01-01", "2026-01-01", 1) + ops, []string{"expires: expires 2026-01-01T00:00:00Z is not after issued"}},
		{"no operators", head, []string{"operators: is required"}},
		{"operators not a list", head + "operators: {a: 1}\n", []string{"line 4: operators: want a list"}},
		{"operator not a mapping", head + "operators: [x]\n", []string{"operators[0]: an operator is a mapping"}},
		{"unknown operator key", head + "operators:\n  - {id: a, roles: [grid], keys: [" + keyA + "], email: x}\n", []string{"line 5: operators[0].email: unknown key"}},
		{"missing fields", head + "operators:\n  - {name: x}\n", []string{"operators[0].id: is required", "operators[0].roles: is required", "operators[0].keys: is required"}},
		{"bad id", head + "operators:\n  - {id: 'Alice Smith', roles: [grid], keys: [" + keyA + "]}\n", []string{"operators[0].id:", "is not an id"}},
		{"unknown role", head + "operators:\n  - {id: a, roles: [admin], keys: [" + keyA + "]}\n", []string{"operators[0].roles[0]:", `"admin" is not a role`}},
		{"role twice", head + "operators:\n  - {id: a, roles: [grid, grid], keys: [" + keyA + "]}\n", []string{"operators[0].roles[1]: role grid given twice"}},
		{"empty roles", head + "operators:\n  - {id: a, roles: [], keys: [" + keyA + "]}\n", []string{"operators[0].roles: is empty"}},
		{"bad key", head + "operators:\n  - {id: a, roles: [grid], keys: [notakey]}\n", []string{"operators[0].keys[0]: not a public key"}},
		{"rsa pem", head + "operators:\n  - {id: a, roles: [grid], keys: [\"-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\"]}\n", []string{"operators[0].keys[0]: not an ed25519 public key"}},
		{"key twice in one operator", head + "operators:\n  - {id: a, roles: [grid], keys: [" + keyA + ", " + keyA + "]}\n", []string{"operators[0].keys[1]: key", "given twice"}},
		{"key shared by two operators", head + "operators:\n  - {id: a, roles: [grid], keys: [" + keyA + "]}\n  - {id: b, roles: [viewer], keys: [" + keyA + "]}\n",
			[]string{"line 6: operators[1].keys[0]: key", "is already a's"}},
		{"duplicate id", head + "operators:\n  - {id: a, roles: [grid], keys: [" + keyA + "]}\n  - {id: a, roles: [viewer], keys: [" + keyB + "]}\n",
			[]string{"operators[1].id: id \"a\" is already used by operators[0]"}},
		{"unknown class", head + "thresholds: {everything: 1}\n" + ops, []string{"line 4: thresholds.everything: unknown key"}},
		{"threshold zero", head + "thresholds: {grid: 0}\n" + ops, []string{"thresholds.grid:", "not a number of signatures"}},
		{"protected of one", head + "thresholds: {protected: 1}\n" + ops, []string{"thresholds.protected: 1: a protected circuit needs at least 2 grid signatures"}},
		{"threshold above holders", head + "thresholds: {release: 2}\n" + ops, []string{"thresholds.release: 2 signatures, but 0 operators hold the role release"}},
		{"thresholds not a mapping", head + "thresholds: [1]\n" + ops, []string{"line 4: thresholds: want a mapping"}},
		{"yaml syntax", head + "operators: [\n", []string{"roster: invalid"}},
		{"too large", strings.Repeat("#", roster.MaxSize+1), []string{"over the 1048576 byte limit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := roster.Parse([]byte(tt.doc))
			if !errors.Is(err, roster.ErrInvalid) {
				t.Fatalf("Parse = %v, want ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestThresholdsAtLeast(t *testing.T) {
	floor := roster.Thresholds{Committee: 3, Protected: 1, Release: 2}
	got := roster.Thresholds{Committee: 2, Grid: 2, Protected: 2, Technician: 1, Release: 1}.AtLeast(floor)
	want := roster.Thresholds{Committee: 3, Grid: 2, Protected: 2, Technician: 1, Release: 2}
	if got != want {
		t.Fatalf("AtLeast = %+v, want %+v", got, want)
	}
	if z := (roster.Thresholds{}).AtLeast(roster.Thresholds{}); z != roster.Defaults {
		t.Fatalf("zero thresholds = %+v, want the defaults", z)
	}
	if roster.ClassProtected.Role() != roster.Grid || roster.ClassRelease.Role() != roster.Release {
		t.Fatal("class roles")
	}
}

func TestKeyRoundTrip(t *testing.T) {
	pub, err := roster.ParseKey(keyA)
	if err != nil {
		t.Fatal(err)
	}
	if got := roster.FormatKey(pub); got != keyA {
		t.Fatalf("FormatKey = %s", got)
	}
}
