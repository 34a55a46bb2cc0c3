package nft

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// TestFlattenMatchesLongestPrefix: for random nested prefixes, every
// address falls in the span of its longest matching prefix, spans are
// disjoint and ascending, and neighbours of one target are merged.
func TestFlattenMatchesLongestPrefix(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		v6 := round%4 == 3
		var ls []listed
		seen := map[netip.Prefix]bool{}
		for i := range 1 + r.IntN(40) {
			var p netip.Prefix
			if v6 {
				var b [16]byte
				b[0], b[1] = 0x20, byte(r.IntN(3))
				p = netip.PrefixFrom(netip.AddrFrom16(b), 8+r.IntN(16)).Masked()
				b[2] = byte(r.Uint32())
				p = netip.PrefixFrom(netip.AddrFrom16(b), p.Bits()+r.IntN(10)).Masked()
			} else {
				b := [4]byte{byte(10 + r.IntN(3)), byte(r.IntN(4)), byte(r.Uint32()), 0}
				p = netip.PrefixFrom(netip.AddrFrom4(b), 6+r.IntN(26)).Masked()
			}
			if r.IntN(20) == 0 {
				p = netip.PrefixFrom(p.Addr(), 0).Masked() // the whole space
			}
			if seen[p] {
				continue
			}
			seen[p] = true
			ls = append(ls, listed{p, i % 5})
		}
		spans := flatten(ls, nil)
		for i := 1; i < len(spans); i++ {
			if !spans[i-1].hi.Less(spans[i].lo) {
				t.Fatalf("round %d: spans %v and %v overlap or are out of order", round, spans[i-1], spans[i])
			}
			if spans[i-1].target == spans[i].target && spans[i-1].hi.Next() == spans[i].lo {
				t.Fatalf("round %d: neighbours %v %v not merged", round, spans[i-1], spans[i])
			}
		}
		// Probe the edges of every prefix and random addresses.
		var probes []netip.Addr
		for _, l := range ls {
			first, last := l.pfx.Addr(), lastAddr(l.pfx)
			probes = append(probes, first, last, first.Prev(), last.Next())
		}
		for range 200 {
			probes = append(probes, ls[r.IntN(len(ls))].pfx.Addr().Next())
		}
		for _, a := range probes {
			if !a.IsValid() {
				continue
			}
			want, best := -1, -1
			for _, l := range ls {
				if l.pfx.Contains(a) && l.pfx.Bits() > best {
					want, best = l.target, l.pfx.Bits()
				}
			}
			got := -1
			if i, ok := slices.BinarySearchFunc(spans, a, func(s span, a netip.Addr) int {
				switch {
				case s.hi.Less(a):
					return -1
				case a.Less(s.lo):
					return 1
				}
				return 0
			}); ok {
				got = spans[i].target
			}
			if got != want {
				t.Fatalf("round %d: %s: span target %d, longest prefix says %d\nprefixes %v\nspans %v", round, a, got, want, ls, spans)
			}
		}
	}
}

func TestMergedDomestic(t *testing.T) {
	ps := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/9"), netip.MustParsePrefix("10.128.0.0/9"), netip.MustParsePrefix("10.1.0.0/16"),
		netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("0.0.0.0/0"),
	}
	if got := merged(ps[:4]); len(got) != 1 || got[0].lo != netip.MustParseAddr("10.0.0.0") || got[0].hi != netip.MustParseAddr("10.255.255.255") {
		t.Errorf("merged %v", got)
	}
	got := merged(ps)
	if len(got) != 1 || got[0].hi != netip.MustParseAddr("255.255.255.255") {
		t.Errorf("merged with the whole space %v", got)
	}
	if e := appendSpan(nil, got[0], nil); len(e) != 1 {
		t.Errorf("the highest range has an end marker: %v", e)
	}
}

func TestDominates(t *testing.T) {
	tcp443 := Service{Proto: ProtoTCP, PortLo: 443, PortHi: 443}
	tcpAll := Service{Proto: ProtoTCP}
	gre := Service{Proto: ProtoGRE}
	for _, c := range []struct {
		e, c    Approval
		tunnels bool
		want    bool
	}{
		{Approval{}, Approval{Services: []Service{tcp443}}, false, true},
		{Approval{Services: []Service{tcp443}}, Approval{}, false, false},
		{Approval{Services: []Service{tcpAll}}, Approval{Services: []Service{tcp443}}, false, true},
		{Approval{Services: []Service{tcp443}}, Approval{Services: []Service{tcpAll}}, false, false},
		{Approval{}, Approval{Services: []Service{gre}}, true, false}, // any is not a tunnel
		{Approval{Services: []Service{gre, tcp443}}, Approval{Services: []Service{gre}}, true, true},
		{Approval{Until: at(10)}, Approval{}, false, false},
		{Approval{Until: at(10)}, Approval{Until: at(5)}, false, true},
		{Approval{From: at(3)}, Approval{From: at(1)}, false, false},
	} {
		if got := dominates(&c.e, &c.c, c.tunnels); got != c.want {
			t.Errorf("%+v dominates %+v (tunnels %v): %v", c.e, c.c, c.tunnels, got)
		}
	}
}

func at(s int64) time.Time { return time.Unix(s, 0) }
