package linkfilter

import (
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"linkguard.dev/linkguard/agent/linkfilter/packet"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/hal/capture/pcapfile"
	"linkguard.dev/linkguard/policy/match"
)

// tcpFlags4 is a TCP segment with exactly the given flags.
func tcpFlags4(tb testing.TB, src, dst string, sport, dport uint16, syn, ack, psh bool, payload []byte) []byte {
	t := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: syn, ACK: ack, PSH: psh, Seq: 5, Ack: 9, Window: 1000}
	return frame(tb, eth(layers.EthernetTypeIPv4), ip4(src, dst, layers.IPProtocolTCP), t, gopacket.Payload(payload))
}

// TestTCPOpensOnlyOnSYN: the forged SYN-ACK trick and mid-stream segments
// cannot choose which end is the server.
func TestTCPOpensOnlyOnSYN(t *testing.T) {
	rec := &report.Recorder{}
	f := New(Options{Site: "s1", Events: rec, PickupGrace: -1})
	f.SetMatcher(testMatcher(t, testPolicy))
	d := f.NewDecoder(pcapfile.LinkTypeEthernet)
	// A2 approves 192.0.2.0/24 for tcp/443 only. The client forges a
	// SYN-ACK from its own port 443 to the server's SSH port, then talks.
	steps := []struct {
		name string
		fr   []byte
		side Side
		want Action
	}{
		{"forged syn-ack from client:443", tcpFlags4(t, "10.1.0.5", "192.0.2.9", 443, 22, true, true, false, nil), SideInside, Drop},
		{"data from client:443 to :22", tcpFlags4(t, "10.1.0.5", "192.0.2.9", 443, 22, false, true, true, []byte("ssh")), SideInside, Drop},
		{"syn from client:443 to :22", tcpFlags4(t, "10.1.0.5", "192.0.2.9", 443, 22, true, false, false, nil), SideInside, Drop},
		{"reply from server:22", tcpFlags4(t, "192.0.2.9", "10.1.0.5", 22, 443, true, true, false, nil), SideOutside, Drop},
		{"approved syn to :443", tcpFlags4(t, "10.1.0.5", "192.0.2.9", 40000, 443, true, false, false, nil), SideInside, Pass},
		{"approved syn-ack", tcpFlags4(t, "192.0.2.9", "10.1.0.5", 443, 40000, true, true, false, nil), SideOutside, Pass},
		{"approved data", tcpFlags4(t, "10.1.0.5", "192.0.2.9", 40000, 443, false, true, true, []byte("GET")), SideInside, Pass},
		{"mid-stream, no syn seen", tcpFlags4(t, "10.1.0.5", "192.0.2.9", 40001, 443, false, true, true, []byte("x")), SideInside, Drop},
		{"rst, no flow", tcpFlags4(t, "192.0.2.9", "10.1.0.5", 443, 40002, false, false, false, nil), SideOutside, Drop},
	}
	for i, s := range steps {
		if _, r := judgeOn(f, d, s.side, s.fr, t0+int64(i)); r.Action != s.want {
			t.Errorf("%s: %+v, want %v", s.name, r, s.want)
		}
	}
	if s := f.Snapshot(); s.TCPNoSYN < 3 {
		t.Errorf("tcp_no_syn %d, want at least 3", s.TCPNoSYN)
	}
	// A sender's own port is never the service: UDP from port 443.
	udp := frame(t, eth(layers.EthernetTypeIPv4), ip4("10.1.0.5", "192.0.2.9", layers.IPProtocolUDP), &layers.UDP{SrcPort: 443, DstPort: 53})
	if _, r := judgeOn(f, d, SideInside, udp, t0+100); r.Action != Drop || r.Reason != match.ReasonService {
		t.Errorf("udp from :443 to :53: %+v", r)
	}
}

// TestTCPPickupGrace: after start, mid-stream sessions are picked up only
// if approved whichever end is the server.
func TestTCPPickupGrace(t *testing.T) {
	f := New(Options{Site: "s1", PickupGrace: DefaultPickupGrace})
	f.SetMatcher(testMatcher(t, testPolicy))
	d := f.NewDecoder(pcapfile.LinkTypeEthernet)
	// A1 approves 198.51.100.0/24 for any service: picked up.
	if _, r := judgeOn(f, d, SideInside, tcpFlags4(t, "10.1.0.5", "198.51.100.7", 40000, 22, false, true, true, nil), t0); r.Action != Pass {
		t.Fatalf("any-service approval, mid-stream in grace: %+v", r)
	}
	// A2 approves 192.0.2.0/24 for tcp/443 only: the reverse reading (the
	// client's port as the service) is not approved, so it is not picked up.
	if _, r := judgeOn(f, d, SideInside, tcpFlags4(t, "10.1.0.5", "192.0.2.9", 40000, 443, false, true, true, nil), t0+1); r.Action != Drop || r.Technique != TechTCPNoSYN {
		t.Fatalf("port-bound approval, mid-stream in grace: %+v", r)
	}
	// Its SYN sets it right.
	if _, r := judgeOn(f, d, SideInside, tcpFlags4(t, "10.1.0.5", "192.0.2.9", 40000, 443, true, false, false, nil), t0+2); r.Action != Pass {
		t.Fatalf("syn after pickup: %+v", r)
	}
	// After the grace: no pickup at all.
	after := t0 + int64(DefaultPickupGrace) + 1
	if _, r := judgeOn(f, d, SideInside, tcpFlags4(t, "10.1.0.5", "198.51.100.7", 40003, 22, false, true, true, nil), after); r.Action != Drop || r.Reason != match.ReasonNoSYN {
		t.Fatalf("mid-stream after grace: %+v", r)
	}
}

func TestSpoofedSource(t *testing.T) {
	rec := &report.Recorder{}
	f := New(Options{Site: "s1", Events: rec})
	f.SetMatcher(testMatcher(t, testPolicy))
	d := f.NewDecoder(pcapfile.LinkTypeEthernet)
	cases := []struct {
		name string
		side Side
		fr   []byte
		want Action
		tech Technique
	}{
		{"domestic source from outside", SideOutside, tcp4(t, "10.1.0.9", "10.1.0.5", 1000, 22, true, false, nil), Drop, TechSpoofed},
		{"foreign source from inside", SideInside, tcp4(t, "198.51.100.7", "203.0.113.7", 1000, 22, true, false, nil), Drop, TechSpoofed},
		{"borrowed approved source, inside", SideInside, tcp4(t, "198.51.100.9", "10.1.0.5", 443, 1000, true, false, nil), Drop, TechSpoofed},
		{"unspecified source", SideInside, tcp4(t, "0.0.0.0", "198.51.100.7", 1, 443, true, false, []byte("data")), Drop, TechUnspecifiedSource},
		{"domestic from inside", SideInside, tcp4(t, "10.1.0.5", "10.1.0.9", 1000, 22, true, false, nil), Pass, TechNone},
		{"approved from outside", SideOutside, tcp4(t, "198.51.100.7", "10.1.0.5", 1000, 22, true, false, nil), Pass, TechNone},
		{"link-local unicast from inside (BGP over fe80::)", SideInside,
			frame(t, eth(layers.EthernetTypeIPv6), ip6("fe80::1", "fe80::2", layers.IPProtocolTCP), &layers.TCP{SrcPort: 40000, DstPort: 179, SYN: true}),
			Drop, TechNone}, // not a spoof: judged, and no approval covers fe80::2
	}
	for i, c := range cases {
		_, r := judgeOn(f, d, c.side, c.fr, t0+int64(i))
		if r.Action != c.want || (c.tech != TechNone && r.Technique != c.tech) {
			t.Errorf("%s: %+v, want %v %v", c.name, r, c.want, c.tech)
		}
		if c.name == "link-local unicast from inside (BGP over fe80::)" && r.Reason == match.ReasonSpoofed {
			t.Errorf("%s: judged a spoof", c.name)
		}
	}
	// The same spoofed source again: dropped, not reported again.
	n := len(rec.Events())
	judgeOn(f, d, SideOutside, tcp4(t, "10.1.0.9", "10.1.0.5", 1001, 22, true, false, nil), t0+100)
	if len(rec.Events()) != n {
		t.Errorf("a second spoof from one source was reported again")
	}
	// Four spoofs and the unspecified source, which is one too.
	if s := f.Snapshot(); s.Spoofed != 5 || s.Techniques["spoofed"] != 4 || s.Techniques["unspecified-source"] != 1 {
		t.Errorf("spoofed %d techniques %v", s.Spoofed, s.Techniques)
	}
	// Loose ingress does not check.
	lo := New(Options{Site: "s1", Ingress: IngressLoose})
	lo.SetMatcher(testMatcher(t, testPolicy))
	if _, r := judgeOn(lo, d, SideOutside, tcp4(t, "10.1.0.9", "10.1.0.5", 1000, 22, true, false, nil), t0); r.Action != Pass {
		t.Errorf("loose: %+v", r)
	}
}

// TestTunnelJudgedInside: an IPIP tunnel between domestic hosts carrying a
// flow to an unapproved host is cut, and the event names the inner
// endpoints and the encapsulation; monitor mode reports the same.
func TestTunnelJudgedInside(t *testing.T) {
	fr := frame(t, eth(layers.EthernetTypeIPv4), ip4("10.1.0.2", "10.1.0.3", layers.IPProtocolIPv4),
		ip4("10.1.0.2", "203.0.113.7", layers.IPProtocolTCP), &layers.TCP{SrcPort: 40000, DstPort: 443, SYN: true})
	for _, mode := range []Mode{ModeInline, ModeMonitor} {
		rec := &report.Recorder{}
		f := New(Options{Site: "s1", Events: rec, Mode: mode})
		f.SetMatcher(testMatcher(t, testPolicy))
		d := f.NewDecoder(pcapfile.LinkTypeEthernet)
		p, r := judgeOn(f, d, SideInside, fr, t0)
		if p.N != 2 || r.Verdict != match.Denied || r.Layer != 1 || r.Technique != TechTunnel {
			t.Fatalf("%v: %d layers, %+v", mode, p.N, r)
		}
		if want := map[Mode]Action{ModeInline: Drop, ModeMonitor: Pass}[mode]; r.Action != want {
			t.Fatalf("%v: action %v", mode, r.Action)
		}
		ev := rec.Events()
		if len(ev) != 1 {
			t.Fatalf("%v: %d events", mode, len(ev))
		}
		fl := ev[0].Fields
		if fl["technique"] != "tunnel" || fl["src"] != "10.1.0.2" || fl["dst"] != "203.0.113.7" || fl["via"] != "ipip 10.1.0.2 -> 10.1.0.3" || fl["layer"] != 1 {
			t.Fatalf("%v: event %+v", mode, fl)
		}
		if s := f.Snapshot(); s.Tunnelled != 1 || s.Techniques["tunnel"] != 1 {
			t.Fatalf("%v: %+v", mode, s)
		}
	}
}

func TestFragmentOverlapDropsDatagram(t *testing.T) {
	f := New(Options{Site: "s1"})
	f.SetMatcher(testMatcher(t, testPolicy))
	d := f.NewDecoder(pcapfile.LinkTypeEthernet)
	body := make([]byte, 72)
	copy(body, []byte{0x13, 0x88, 0x00, 0x35, 0, 80, 0, 0}) // UDP 5000 -> 53, length 80
	mk := func(off uint16, more bool, b []byte) []byte {
		ip := ip4("10.1.0.5", "198.51.100.7", layers.IPProtocolUDP)
		ip.Id = 99
		ip.FragOffset = off / 8
		if more {
			ip.Flags = layers.IPv4MoreFragments
		}
		return frame(t, eth(layers.EthernetTypeIPv4), ip, gopacket.Payload(b))
	}
	if _, r := judge(f, d, mk(0, true, body[:32]), t0); r.Action != Pass {
		t.Fatalf("first: %+v", r)
	}
	// Overlaps the first fragment's bytes 24-31.
	if _, r := judge(f, d, mk(24, true, body[24:48]), t0+1); r.Action != Drop || r.Technique != TechFragmentOverlap {
		t.Fatalf("overlap: %+v", r)
	}
	// The rest of the datagram drops too, even where it would not overlap.
	if _, r := judge(f, d, mk(48, false, body[48:]), t0+2); r.Action != Drop {
		t.Fatalf("after overlap: %+v", r)
	}
	// A second first fragment is an overlap as well.
	ip := ip4("10.1.0.5", "198.51.100.7", layers.IPProtocolUDP)
	ip.Id, ip.Flags = 100, layers.IPv4MoreFragments
	first := frame(t, eth(layers.EthernetTypeIPv4), ip, gopacket.Payload(body[:32]))
	judge(f, d, first, t0+3)
	if _, r := judge(f, d, first, t0+4); r.Action != Drop || r.Technique != TechFragmentOverlap {
		t.Fatalf("second first fragment: %+v", r)
	}
	// The overlapping fragment, the one after it and the second first.
	if s := f.Snapshot(); s.FragmentOverlaps != 3 {
		t.Fatalf("fragment_overlaps %d", s.FragmentOverlaps)
	}
}

// TestLinkControlRateBounded: well-formed ARP passes at the rate ARP is
// sent; a flood of it is not a channel.
func TestLinkControlRateBounded(t *testing.T) {
	f := New(Options{Site: "s1"})
	f.SetMatcher(testMatcher(t, testPolicy))
	d := f.NewDecoder(pcapfile.LinkTypeEthernet)
	arp := arpRequest(t)
	passed := 0
	for i := range 2000 { // 2,000 ARPs in 1 s
		if _, r := judgeOn(f, d, SideOutside, arp, t0+int64(i)*5e5); r.Action == Pass {
			passed++
		}
	}
	if passed > ctlARPBurst+ctlARPRate+1 || passed < ctlARPRate {
		t.Fatalf("%d of 2000 ARPs in 1 s passed (rate %d/s, burst %d)", passed, ctlARPRate, ctlARPBurst)
	}
	if s := f.Snapshot(); s.LinkControlLimited != uint64(2000-passed) {
		t.Fatalf("limited %d", s.LinkControlLimited)
	}
}

// TestMalformedNotDomestic: a frame that breaks a decoding rule is judged
// by the policy default even between domestic addresses (a trailer after
// the datagram would be a channel a raw socket reads).
func TestMalformedNotDomestic(t *testing.T) {
	rec := &report.Recorder{}
	f := New(Options{Site: "s1", Events: rec})
	f.SetMatcher(testMatcher(t, testPolicy))
	d := f.NewDecoder(pcapfile.LinkTypeEthernet)
	fr := append(tcp4(t, "10.1.0.5", "10.1.0.6", 1, 2, true, false, nil), make([]byte, 1000)...)
	p, r := judgeOn(f, d, SideInside, fr, t0)
	if p.Kind != packet.KindMalformed || r.Action != Drop || r.Technique != TechMalformed {
		t.Fatalf("%v %+v", p.Kind, r)
	}
	if ev := rec.Events(); len(ev) != 1 || ev[0].Fields["problem"] != "malformed header" {
		t.Fatalf("events %+v", ev)
	}
}
