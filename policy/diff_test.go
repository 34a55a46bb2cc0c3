package policy

import (
	"slices"
	"testing"
)

func mustParse(t *testing.T, doc string) *Policy {
	t.Helper()
	p, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDiff(t *testing.T) {
	const top = "issued: 2026-12-01T00:00:00Z\ndefault: deny\n"
	old := mustParse(t, "serial: 1\n"+top+"expires: 2027-01-01T00:00:00Z\ndomestic: [10.0.0.0/8]\napprovals:\n"+
		"  - {id: A, holder: Alpha, remote: [1.2.3.0/24]}\n"+
		"  - {id: B, holder: Beta, remote: [1.2.4.0/24], services: [tcp/443]}\n"+
		"  - {id: C, holder: Gamma, remote: [1.2.5.0/24]}\n")
	tests := []struct {
		name string
		cur  string
		want []string
	}{
		{"same", "serial: 1\n" + top + "expires: 2027-01-01T00:00:00Z\ndomestic: [10.0.0.0/8]\napprovals:\n" +
			"  - {id: C, holder: Gamma, remote: [1.2.5.0/24]}\n" +
			"  - {id: B, holder: Beta, remote: [1.2.4.0/24], services: [tcp/443]}\n" +
			"  - {id: A, holder: Alpha, remote: [1.2.3.0/24]}\n", nil},
		{"every kind", "serial: 2\nissued: 2026-12-01T00:00:00Z\ndefault: monitor\nexpires: 2027-02-01T00:00:00Z\ndomestic: [10.0.0.0/8, 172.16.0.0/12]\napprovals:\n" +
			"  - {id: B, holder: Beta, remote: [1.2.4.0/24, 192.0.2.0/24], services: [tcp/443, udp/53]}\n" +
			"  - {id: C, holder: Gamma, remote: [1.2.5.0/24], valid_until: 2026-12-31T00:00:00Z}\n" +
			"  - {id: D, holder: Delta, remote: [1.2.6.0/24, 1.2.7.0/24]}\n",
			[]string{
				"serial: 1 -> 2",
				"expires: 2027-01-01T00:00:00Z -> 2027-02-01T00:00:00Z",
				"default: deny -> monitor",
				"domestic: 10.0.0.0/8 -> 10.0.0.0/8, 172.16.0.0/12",
				"~ B (Beta): remote added 192.0.2.0/24; services [tcp/443] -> [tcp/443, udp/53]",
				"~ C (Gamma): window open..open -> open..2026-12-31T00:00:00Z",
				"+ D (Delta): 2 remote prefixes",
				"- A (Alpha): revoked",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, c := range Diff(old, mustParse(t, tt.cur)) {
				got = append(got, c.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Diff:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestChangeKindString(t *testing.T) {
	if ApprovalRevoked.String() != "revoked" || ChangeKind(99).String() != "ChangeKind(99)" {
		t.Error(ApprovalRevoked, ChangeKind(99))
	}
}
