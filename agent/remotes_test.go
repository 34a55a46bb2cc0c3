package agent

import (
	"net/netip"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/linkfilter"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/match"
)

func testRemotes(fls *[]linkfilter.FlowInfo, m *match.Matcher) *remotes {
	r := newRemotes(linkfilter.New(linkfilter.Options{}))
	r.flows = func() []linkfilter.FlowInfo { return *fls }
	r.matcher = func() *match.Matcher { return m }
	return r
}

func flowTo(dst string, dport uint16, v match.Verdict, approval int32, packets, bytes uint64, first time.Time) linkfilter.FlowInfo {
	d := netip.MustParseAddr(dst)
	return linkfilter.FlowInfo{Src: netip.MustParseAddr("103.1.2.3"), Dst: d, Proto: policy.ProtoTCP, SPort: 40000, DPort: dport,
		Decision: match.Decision{Verdict: v, Approval: approval}, Packets: packets, Bytes: bytes, First: first}
}

// TestRemotesSection: the section counts each flow's increase since the
// last telemetry by /24 or /48, service and verdict, names the approval,
// leaves domestic flows out, keeps the heaviest MaxRemotes and sums the
// rest, and validates.
func TestRemotesSection(t *testing.T) {
	p, err := policy.Parse([]byte("serial: 1\nissued: 2026-12-01T00:00:00Z\nexpires: 2027-01-01T00:00:00Z\ndomestic: [103.1.0.0/16]\n" +
		"approvals:\n  - {id: LA-1, holder: Example, remote: [198.51.100.0/24]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	fls := []linkfilter.FlowInfo{
		flowTo("203.0.113.5", 22, match.Denied, -1, 3, 180, t0),
		flowTo("203.0.113.9", 22, match.Denied, -1, 2, 120, t0),
		flowTo("198.51.100.7", 443, match.Approved, 0, 10, 9000, t0),
		flowTo("2001:db8:1:2::5", 443, match.Monitored, -1, 1, 100, t0),
		flowTo("103.1.9.9", 80, match.Domestic, -1, 50, 50000, t0),
	}
	// Opened from outside: the remote end is the source.
	inbound := flowTo("103.1.2.3", 22, match.Denied, -1, 1, 60, t0)
	inbound.Src = netip.MustParseAddr("203.0.113.77")
	fls = append(fls, inbound)
	r := testRemotes(&fls, match.Compile(p))
	s := r.read(t0)
	want := []contract.RemoteTraffic{
		{Prefix: "198.51.100.0/24", Proto: "tcp", DPort: 443, Verdict: "approved", Approval: "LA-1", RemoteTotals: contract.RemoteTotals{Flows: 1, Packets: 10, Bytes: 9000}},
		{Prefix: "203.0.113.0/24", Proto: "tcp", DPort: 22, Verdict: "denied", RemoteTotals: contract.RemoteTotals{Flows: 3, Packets: 6, Bytes: 360}},
		{Prefix: "2001:db8:1::/48", Proto: "tcp", DPort: 443, Verdict: "monitored", RemoteTotals: contract.RemoteTotals{Flows: 1, Packets: 1, Bytes: 100}},
	}
	if len(s.Top) != len(want) {
		t.Fatalf("top %+v, want %+v", s.Top, want)
	}
	for i := range want {
		if s.Top[i] != want[i] {
			t.Errorf("top[%d] = %+v, want %+v", i, s.Top[i], want[i])
		}
	}
	validSection(t, contract.SectionRemotes, s)

	// The next read counts what each flow carried since; a flow that did
	// not move is not counted, a 5-tuple reopened later is a new flow.
	fls[0].Packets, fls[0].Bytes = 5, 300
	fls[2].First = t0.Add(time.Second)
	s = r.read(t0.Add(5 * time.Second))
	if s.IntervalS != 5 || len(s.Top) != 2 || s.Top[0].Verdict != "approved" || s.Top[0].Packets != 10 ||
		s.Top[1].Flows != 1 || s.Top[1].Packets != 2 || s.Top[1].Bytes != 120 {
		t.Errorf("second read: %+v", s)
	}
	if s = r.read(t0.Add(10 * time.Second)); len(s.Top) != 0 || s.Top == nil {
		t.Errorf("nothing moved: %+v", s)
	}

	// Bounded: the heaviest MaxRemotes, the rest in Other.
	fls = fls[:0]
	for i := range contract.MaxRemotes + 10 {
		fls = append(fls, flowTo(netip.AddrFrom4([4]byte{198, byte(18 + i>>8), byte(i), 1}).String(), 22, match.Denied, -1, 1, uint64(1000+i), t0))
	}
	s = r.read(t0.Add(15 * time.Second))
	if len(s.Top) != contract.MaxRemotes || s.Other.Flows != 10 || s.Top[0].Bytes != uint64(1000+contract.MaxRemotes+9) || s.Other.Bytes != 1000*10+45 {
		t.Errorf("bounded: %d top, other %+v, first %+v", len(s.Top), s.Other, s.Top[0])
	}
	validSection(t, contract.SectionRemotes, s)
}

// BenchmarkRemotesSection reads a full flow table (65,536 flows to 1,024
// remote /24s, 7 services, 2 verdicts) the way each telemetry message does.
func BenchmarkRemotesSection(b *testing.B) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	var fls []linkfilter.FlowInfo
	for i := range 65536 {
		d := netip.AddrFrom4([4]byte{198, byte(18 + i>>14), byte(i >> 4), byte(i)})
		v := match.Denied
		if i%3 == 0 {
			v = match.Approved
		}
		fl := flowTo("103.1.2.3", uint16(i%7+20), v, -1, 1, 100, t0.Add(time.Duration(i)))
		fl.Dst = d
		fls = append(fls, fl)
	}
	p, err := policy.Parse([]byte("serial: 1\nissued: 2026-12-01T00:00:00Z\nexpires: 2027-01-01T00:00:00Z\ndomestic: [103.1.0.0/16]\napprovals: []\n"))
	if err != nil {
		b.Fatal(err)
	}
	r := testRemotes(&fls, match.Compile(p))
	r.read(t0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		for j := range fls {
			fls[j].Packets++
			fls[j].Bytes += 100
		}
		if s := r.read(t0.Add(time.Duration(i+1) * time.Second)); len(s.Top) != contract.MaxRemotes {
			b.Fatal(len(s.Top))
		}
	}
}
