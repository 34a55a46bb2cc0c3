package match_test

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/match"
	"linkguard.dev/linkguard/policy/policytest"
)

const doc = `serial: 7
issued: 2026-12-01T00:00:00Z
expires: 2027-01-01T00:00:00Z
default: deny
domestic: [103.1.0.0/16, 2001:db8:100::/40]
approvals:
  - id: WIDE
    remote: [203.0.0.0/16]
    services: [udp/53]
  - id: NARROW
    sites: [vientiane-north]
    remote: [203.0.113.0/24, 2001:db8:feed::/48]
    services: [tcp/443, udp/5060-5061, icmp]
    valid_from: 2026-12-01T00:00:00Z
    valid_until: 2026-12-31T23:59:59Z
  - id: FUTURE
    remote: [198.51.100.0/24]
    valid_from: 2026-12-20T00:00:00Z
  - id: HOST
    remote: [192.0.2.7, 2001:db8:beef::1]
`

func compile(t testing.TB, src string) *match.Matcher {
	t.Helper()
	p, err := policy.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return match.Compile(p)
}

func TestDecide(t *testing.T) {
	m := compile(t, doc)
	dec10 := time.Date(2026, 12, 10, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		site     string
		src, dst string
		proto    uint8
		dport    uint16
		now      time.Time
		verdict  match.Verdict
		reason   match.Reason
		approval string
	}{
		{"domestic v4", "vientiane-north", "103.1.2.3", "103.1.9.9", 6, 80, dec10, match.Domestic, match.ReasonDomestic, ""},
		{"domestic v6", "x", "2001:db8:100::1", "2001:db8:1ff:ffff::1", 17, 53, dec10, match.Domestic, match.ReasonDomestic, ""},
		{"approved out", "vientiane-north", "103.1.2.3", "203.0.113.9", 6, 443, dec10, match.Approved, match.ReasonApproved, "NARROW"},
		{"approved in (remote is source)", "vientiane-north", "203.0.113.9", "103.1.2.3", 6, 443, dec10, match.Approved, match.ReasonApproved, "NARROW"},
		{"approved v6", "vientiane-north", "2001:db8:100::5", "2001:db8:feed:1::1", 17, 5061, dec10, match.Approved, match.ReasonApproved, "NARROW"},
		{"icmpv6 under icmp", "vientiane-north", "2001:db8:100::5", "2001:db8:feed::1", 58, 0, dec10, match.Approved, match.ReasonApproved, "NARROW"},
		{"supernet approval still applies inside narrower prefix", "other-site", "103.1.2.3", "203.0.113.9", 17, 53, dec10, match.Approved, match.ReasonApproved, "WIDE"},
		{"wrong service", "vientiane-north", "103.1.2.3", "203.0.113.9", 6, 22, dec10, match.Denied, match.ReasonService, ""},
		{"wrong site", "luang-prabang", "103.1.2.3", "203.0.113.9", 6, 443, dec10, match.Denied, match.ReasonSite, ""},
		{"lapsed", "vientiane-north", "103.1.2.3", "203.0.113.9", 6, 443, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), match.Denied, match.ReasonLapsed, ""},
		{"last second of window", "vientiane-north", "103.1.2.3", "203.0.113.9", 6, 443, time.Date(2026, 12, 31, 23, 59, 58, 0, time.UTC), match.Approved, match.ReasonApproved, "NARROW"},
		{"window end is exclusive", "vientiane-north", "103.1.2.3", "203.0.113.9", 6, 443, time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC), match.Denied, match.ReasonLapsed, ""},
		{"not yet valid", "s", "103.1.2.3", "198.51.100.1", 6, 443, dec10, match.Denied, match.ReasonNotYetValid, ""},
		{"valid from is inclusive", "s", "103.1.2.3", "198.51.100.1", 6, 443, time.Date(2026, 12, 20, 0, 0, 0, 0, time.UTC), match.Approved, match.ReasonApproved, "FUTURE"},
		{"no approval", "s", "103.1.2.3", "8.8.8.8", 17, 53, dec10, match.Denied, match.ReasonNoApproval, ""},
		{"no approval v6", "s", "2001:db8:100::1", "2001:4860::8888", 17, 53, dec10, match.Denied, match.ReasonNoApproval, ""},
		{"host prefix", "s", "103.1.2.3", "192.0.2.7", 6, 1, dec10, match.Approved, match.ReasonApproved, "HOST"},
		{"host prefix neighbour", "s", "103.1.2.3", "192.0.2.8", 6, 1, dec10, match.Denied, match.ReasonNoApproval, ""},
		{"host prefix v6", "s", "2001:db8:beef::1", "103.1.0.1", 6, 1, dec10, match.Approved, match.ReasonApproved, "HOST"},
		{"mapped v4 address", "s", "::ffff:103.1.2.3", "::ffff:192.0.2.7", 6, 1, dec10, match.Approved, match.ReasonApproved, "HOST"},
		{"transit judged by its destination, not a borrowed source", "s", "192.0.2.7", "8.8.8.8", 6, 1, dec10, match.Denied, match.ReasonNoApproval, ""},
		{"transit to an approved destination", "s", "8.8.8.8", "192.0.2.7", 6, 1, dec10, match.Approved, match.ReasonApproved, "HOST"},
		{"transit, neither approved", "s", "8.8.4.4", "8.8.8.8", 6, 1, dec10, match.Denied, match.ReasonNoApproval, ""},
		{"edge of domestic range", "s", "103.1.255.255", "103.2.0.0", 6, 1, dec10, match.Denied, match.ReasonNoApproval, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := match.Query{Site: tt.site, Src: netip.MustParseAddr(tt.src), Dst: netip.MustParseAddr(tt.dst), Proto: tt.proto, DPort: tt.dport, Now: tt.now}
			d := m.Decide(&q)
			if d.Verdict != tt.verdict || d.Reason != tt.reason {
				t.Fatalf("Decide = %v (%v), want %v (%v)", d.Verdict, d.Reason, tt.verdict, tt.reason)
			}
			got := ""
			if a := m.Approval(d.Approval); a != nil {
				got = a.ID
			}
			if got != tt.approval {
				t.Fatalf("approval = %q, want %q", got, tt.approval)
			}
		})
	}
}

func TestRecheckAt(t *testing.T) {
	m := compile(t, doc)
	now := time.Date(2026, 12, 10, 0, 0, 0, 0, time.UTC)
	q := match.Query{Site: "vientiane-north", Src: netip.MustParseAddr("103.1.2.3"), Dst: netip.MustParseAddr("203.0.113.9"), Proto: 6, DPort: 443, Now: now}
	d := m.Decide(&q)
	if want := time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC).UnixNano(); d.RecheckAt != want {
		t.Fatalf("RecheckAt = %v, want the window end", time.Unix(0, d.RecheckAt).UTC())
	}
	q.Dst = netip.MustParseAddr("198.51.100.1")
	if d := m.Decide(&q); d.RecheckAt != time.Date(2026, 12, 20, 0, 0, 0, 0, time.UTC).UnixNano() {
		t.Fatalf("RecheckAt for a not-yet-valid approval = %v", time.Unix(0, d.RecheckAt).UTC())
	}
	q.Dst = netip.MustParseAddr("192.0.2.7")
	if d := m.Decide(&q); d.RecheckAt != math.MaxInt64 {
		t.Fatalf("RecheckAt for an open approval = %d", d.RecheckAt)
	}
}

func TestDefaultMonitor(t *testing.T) {
	m := compile(t, "serial: 1\nissued: 2026-12-01T00:00:00Z\nexpires: 2027-01-01T00:00:00Z\ndefault: monitor\ndomestic: [10.0.0.0/8]\n")
	q := match.Query{Src: netip.MustParseAddr("10.1.1.1"), Dst: netip.MustParseAddr("8.8.8.8"), Proto: 17, DPort: 53, Now: time.Now()}
	if d := m.Decide(&q); d.Verdict != match.Monitored || !d.Verdict.Allowed() || d.Reason != match.ReasonNoApproval {
		t.Fatalf("Decide = %+v", d)
	}
}

// TestAgainstLinearScan checks the compiled matcher against the obvious
// reading of the policy over random flows and a large synthetic policy.
func TestAgainstLinearScan(t *testing.T) {
	p := policytest.Synthetic(5000, 1)
	// Add nested approvals with other services so supernet inheritance matters.
	r := rand.New(rand.NewPCG(2, 3))
	for i := range 50 {
		base := p.Approvals[i].Remote[0]
		if base.Bits() > 8 {
			sup, _ := base.Addr().Prefix(base.Bits() - 4)
			p.Approvals = append(p.Approvals, policy.Approval{ID: "SUP-" + base.String(), Remote: []netip.Prefix{sup},
				Services: []policy.Service{{Proto: policy.ProtoUDP, PortLo: 53, PortHi: 53}}, Sites: []string{"a"}})
		}
	}
	m := match.Compile(p)
	now := time.Date(2026, 12, 10, 0, 0, 0, 0, time.UTC)
	n := 20000
	if testing.Short() { // under qemu-user, where this runs ~30x slower
		n = 2000
	}
	for i := range n {
		var dst netip.Addr
		if i%2 == 0 {
			a := &p.Approvals[r.IntN(len(p.Approvals))]
			dst = randomIn(r, a.Remote[r.IntN(len(a.Remote))])
		} else {
			dst = policytest.RandomPrefix(r).Addr()
		}
		q := match.Query{Site: []string{"a", "b"}[r.IntN(2)], Src: netip.MustParseAddr("103.1.0.1"), Dst: dst,
			Proto: []uint8{6, 17}[r.IntN(2)], DPort: []uint16{53, 443, 5060, 22}[r.IntN(4)], Now: now}
		d := m.Decide(&q)
		want := false
		for j := range p.Approvals {
			a := &p.Approvals[j]
			if !a.CoversSite(q.Site) || !a.ActiveAt(now) {
				continue
			}
			for _, pfx := range a.Remote {
				if pfx.Contains(dst) && a.CoversService(q.Proto, q.DPort) {
					want = true
				}
			}
		}
		if (d.Verdict == match.Approved) != want {
			t.Fatalf("flow %+v: matcher says %v (%v), linear scan says approved=%v", q, d.Verdict, d.Reason, want)
		}
	}
}

func randomIn(r *rand.Rand, p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := range b {
		b[i] |= byte(r.Uint32())
	}
	a, _ := netip.AddrFromSlice(b)
	for bit := range p.Bits() {
		// copy the network bits back
		byteI, mask := bit/8, byte(0x80>>(bit%8))
		b[byteI] = b[byteI]&^mask | p.Addr().AsSlice()[byteI]&mask
	}
	a, _ = netip.AddrFromSlice(b)
	return a
}

func TestDecideAllocatesNothing(t *testing.T) {
	m := match.Compile(policytest.Synthetic(10000, 1))
	q := match.Query{Site: "s", Src: netip.MustParseAddr("103.1.0.1"), Dst: m.Policy().Approvals[3].Remote[0].Addr(), Proto: 6, DPort: 443, Now: time.Now()}
	// On 32-bit targets bart's lookup lets the address's byte slice escape
	// (netip.Addr.AsSlice is not kept on the stack there): up to one small
	// allocation per table lookup, paid per new flow, never per packet.
	want := 0.0
	if strconv.IntSize == 32 {
		want = 3
	}
	if n := testing.AllocsPerRun(1000, func() { m.Decide(&q) }); n > want {
		t.Fatalf("Decide allocates %v times per call, want at most %v", n, want)
	}
}

func TestExamplePolicyFile(t *testing.T) {
	data, err := os.ReadFile("../testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	compile(t, string(data))
}
