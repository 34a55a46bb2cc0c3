package policy

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestParseExample(t *testing.T) {
	data, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if p.Serial != 42 || p.Default != DefaultDeny || len(p.Domestic) != 2 || len(p.Approvals) != 2 {
		t.Fatalf("unexpected policy: %+v", p)
	}
	a := p.Approvals[0]
	if a.ID != "LA-2026-0017" || len(a.Remote) != 2 || len(a.Services) != 3 || a.ValidUntil.IsZero() {
		t.Fatalf("unexpected approval: %+v", a)
	}
	if got := a.Services[1].String(); got != "udp/5060-5061" {
		t.Fatalf("service = %q", got)
	}
	if p.Prefixes() != 3 {
		t.Fatalf("Prefixes = %d", p.Prefixes())
	}
}

const head = "serial: 1\nissued: 2026-12-01T00:00:00Z\nexpires: 2027-01-01T00:00:00Z\ndefault: deny\n"

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // substrings of the error, each must appear
	}{
		{"empty", "", []string{"a policy is a mapping"}},
		{"not yaml", "serial: [1\n", []string{"policy: invalid"}},
		{"unknown top key", head + "extra: 1\n", []string{"line 5: extra: unknown key"}},
		{"missing serial", "issued: 2026-12-01T00:00:00Z\nexpires: 2027-01-01T00:00:00Z\n", []string{"serial: is required"}},
		{"bad serial", strings.Replace(head, "serial: 1", "serial: -3", 1), []string{"line 1: serial:", "not a positive whole number"}},
		{"zero serial", strings.Replace(head, "serial: 1", "serial: 0", 1), []string{"serial:"}},
		{"time order", "serial: 1\nissued: 2027-01-01T00:00:00Z\nexpires: 2026-12-01T00:00:00Z\n", []string{"line 3: expires: expires"}},
		{"bad time", strings.Replace(head, "2026-12-01T00:00:00Z", "yesterday", 1), []string{"line 2: issued:", "RFC 3339"}},
		{"bad default", strings.Replace(head, "deny", "allow", 1), []string{"line 4: default:", "not deny or monitor"}},
		{"bad domestic", head + "domestic: [10.0.0.0/33]\n", []string{"line 5: domestic[0]:", "not a CIDR"}},
		{"host bits", head + "domestic: [10.0.0.1/8]\n", []string{"host bits set (did you mean 10.0.0.0/8?)"}},
		{"approvals not a list", head + "approvals: {id: x}\n", []string{"approvals: want a list"}},
		{"approval missing remote", head + "approvals:\n  - id: A\n", []string{"approvals[0].remote: is required"}},
		{"approval empty remote", head + "approvals:\n  - id: A\n    remote: []\n", []string{"at least one remote prefix"}},
		{"bad remote", head + "approvals:\n  - id: A\n    remote: [1.2.3.0/24, 300.1.2.0/24]\n",
			[]string{`line 7: approvals[0].remote[1]: "300.1.2.0/24" is not a CIDR`}},
		{"duplicate id", head + "approvals:\n  - {id: A, remote: [1.2.3.0/24]}\n  - {id: A, remote: [1.2.4.0/24]}\n",
			[]string{`line 7: approvals[1].id: id "A" is already used by approvals[0]`}},
		{"unknown approval key", head + "approvals:\n  - {id: A, remote: [1.2.3.0/24], sitez: [x]}\n", []string{"approvals[0].sitez: unknown key"}},
		{"duplicate key", head + "approvals:\n  - {id: A, id: B, remote: [1.2.3.0/24]}\n", []string{"line 6: approvals[0].id: key given twice"}},
		{"bad service", head + "approvals:\n  - {id: A, remote: [1.2.3.0/24], services: [tcp/0, udp/9-3, icmp/5, smtp]}\n",
			[]string{"services[0]", "services[1]: port range 9-3 runs backwards", "services[2]: icmp has no ports", "services[3]: unknown protocol"}},
		{"window order", head + "approvals:\n  - {id: A, remote: [1.2.3.0/24], valid_from: 2026-12-02T00:00:00Z, valid_until: 2026-12-01T00:00:00Z}\n",
			[]string{"valid_until"}},
		{"nested wrong type", head + "approvals:\n  - {id: [x], remote: [1.2.3.0/24]}\n", []string{"approvals[0].id: want a single value"}},
		{"every problem reported", head + "approvals:\n  - {id: A, remote: [bad1]}\n  - {id: B, remote: [bad2]}\n", []string{"bad1", "bad2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatal("Parse accepted an invalid policy")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestServiceMatches(t *testing.T) {
	tests := []struct {
		svc   string
		proto uint8
		port  uint16
		want  bool
	}{
		{"tcp/443", ProtoTCP, 443, true},
		{"tcp/443", ProtoTCP, 444, false},
		{"tcp/443", ProtoUDP, 443, false},
		{"udp/5060-5061", ProtoUDP, 5060, true},
		{"udp/5060-5061", ProtoUDP, 5061, true},
		{"udp/5060-5061", ProtoUDP, 5062, false},
		{"udp/1-65535", ProtoUDP, 65535, true},
		{"tcp", ProtoTCP, 1, true},
		{"icmp", ProtoICMP, 0, true},
		{"icmp", ProtoICMPv6, 0, true},
		{"icmpv6", ProtoICMP, 0, false},
		{"gre", ProtoGRE, 0, true},
		{"ip/47", ProtoGRE, 0, true},
		{"esp", ProtoESP, 0, true},
	}
	for _, tt := range tests {
		s, err := ParseService(tt.svc)
		if err != nil {
			t.Fatalf("ParseService(%q): %v", tt.svc, err)
		}
		if got := s.Matches(tt.proto, tt.port); got != tt.want {
			t.Errorf("%s.Matches(%d, %d) = %v, want %v", tt.svc, tt.proto, tt.port, got, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("testdata/example.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(head))
	f.Add([]byte(head + "approvals:\n  - {id: A, remote: [1.2.3.0/24], services: [tcp/1-2]}\n"))
	f.Add([]byte("&a [*a, *a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		// Whatever parses must be internally consistent.
		if p.Serial == 0 || !p.Expires.After(p.Issued) {
			t.Fatalf("accepted an inconsistent policy: %+v", p)
		}
		for _, a := range p.Approvals {
			if a.ID == "" || len(a.Remote) == 0 {
				t.Fatalf("accepted an approval without id or remote: %+v", a)
			}
		}
	})
}
