package match_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"linkguard.dev/linkguard/policy/match"
	"linkguard.dev/linkguard/policy/policytest"
)

// BenchmarkMatch: random lookups against a 100,000-prefix policy, half of
// them inside approved prefixes.
func BenchmarkMatch(b *testing.B) {
	p := policytest.Synthetic(100_000, 1)
	m := match.Compile(p)
	r := rand.New(rand.NewPCG(7, 7))
	qs := make([]match.Query, 4096)
	now := time.Date(2026, 12, 10, 0, 0, 0, 0, time.UTC)
	for i := range qs {
		dst := policytest.RandomPrefix(r).Addr()
		if i%2 == 0 {
			a := &p.Approvals[r.IntN(len(p.Approvals))]
			dst = a.Remote[r.IntN(len(a.Remote))].Addr()
		}
		qs[i] = match.Query{Site: "s", Src: netip.MustParseAddr("103.1.0.1"), Dst: dst, Proto: 6, DPort: 443, Now: now}
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		m.Decide(&qs[i&4095])
		i++
	}
}

// BenchmarkCompile: time and memory to compile 100,000 prefixes.
func BenchmarkCompile(b *testing.B) {
	p := policytest.Synthetic(100_000, 1)
	b.ReportAllocs()
	for b.Loop() {
		match.Compile(p)
	}
}
