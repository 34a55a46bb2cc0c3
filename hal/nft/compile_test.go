package nft_test

import (
	"errors"
	"net/netip"
	"testing"

	"linkguard.dev/linkguard/hal/nft"
)

// BenchmarkCompile100k: compiling a national-size ruleset (no kernel).
func BenchmarkCompile100k(b *testing.B) {
	rs := synthetic(100_000, 1)
	b.ReportAllocs()
	for range b.N {
		if _, _, _, err := nft.Compiled(rs, nft.Options{Inside: "a", Outside: "b"}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNftRulesetInvalid: what the kernel would refuse halfway, or take
// with another meaning, is refused before any netlink message.
func TestNftRulesetInvalid(t *testing.T) {
	ok := func() *nft.Ruleset { return approving(1, net198) }
	for _, c := range []struct {
		name  string
		spoil func(*nft.Ruleset)
	}{
		{"host bits", func(rs *nft.Ruleset) {
			rs.Approvals[0].Remote[0] = netip.PrefixFrom(netip.MustParseAddr("198.51.100.7"), 24)
		}},
		{"mapped", func(rs *nft.Ruleset) { rs.Domestic[0] = netip.MustParsePrefix("::ffff:10.1.0.0/112") }},
		{"no id", func(rs *nft.Ruleset) { rs.Approvals[0].ID = "" }},
		{"repeated id", func(rs *nft.Ruleset) { rs.Approvals = append(rs.Approvals, rs.Approvals[0]) }},
		{"no remote", func(rs *nft.Ruleset) { rs.Approvals[0].Remote = nil }},
		{"backwards ports", func(rs *nft.Ruleset) {
			rs.Approvals[0].Services = []nft.Service{{Proto: nft.ProtoTCP, PortLo: 9, PortHi: 8}}
		}},
		{"ports without ports", func(rs *nft.Ruleset) {
			rs.Approvals[0].Services = []nft.Service{{Proto: nft.ProtoGRE, PortLo: 1, PortHi: 2}}
		}},
	} {
		rs := ok()
		c.spoil(rs)
		if _, _, _, err := nft.Compiled(rs, nft.Options{Inside: "a", Outside: "b"}); !errors.Is(err, nft.ErrInvalid) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if _, _, _, err := nft.Compiled(ok(), nft.Options{Inside: "a", Outside: "a"}); err == nil {
		t.Error("one port twice taken")
	}
}
