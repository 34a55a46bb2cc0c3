package linkfilter

import (
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"linkguard.dev/linkguard/agent/linkfilter/packet"
	"linkguard.dev/linkguard/hal/capture/pcapfile"
	"linkguard.dev/linkguard/policy/match"
)

// gopacketPair is one IP header pair as gopacket's full decode sees it.
type gopacketPair struct {
	src, dst netip.Addr
	proto    uint8
	dport    uint16
	frag     bool
}

// gopacketPairs decodes frame the slow, complete way and lists every IP
// header pair it finds, with the protocol after extension headers and the
// destination port of the transport header that follows.
func gopacketPairs(frame []byte) []gopacketPair {
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	var out []gopacketPair
	ls := pkt.Layers()
	for i, l := range ls {
		var pr gopacketPair
		switch ip := l.(type) {
		case *layers.IPv4:
			s, ok1 := netip.AddrFromSlice(ip.SrcIP.To4())
			d, ok2 := netip.AddrFromSlice(ip.DstIP.To4())
			if !ok1 || !ok2 {
				continue
			}
			pr = gopacketPair{src: s, dst: d, proto: uint8(ip.Protocol), frag: ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0}
		case *layers.IPv6:
			s, ok1 := netip.AddrFromSlice(ip.SrcIP.To16())
			d, ok2 := netip.AddrFromSlice(ip.DstIP.To16())
			if !ok1 || !ok2 {
				continue
			}
			pr = gopacketPair{src: s, dst: d, proto: uint8(ip.NextHeader)}
			if ip.HopByHop != nil {
				pr.proto = uint8(ip.HopByHop.NextHeader)
			}
		default:
			continue
		}
	walk:
		for _, n := range ls[i+1:] {
			switch t := n.(type) {
			case *layers.IPv6HopByHop:
				pr.proto = uint8(t.NextHeader)
			case *layers.IPv6Destination:
				pr.proto = uint8(t.NextHeader)
			case *layers.IPv6Routing:
				pr.proto = uint8(t.NextHeader)
			case *layers.IPv6Fragment:
				pr.proto = uint8(t.NextHeader)
				pr.frag = pr.frag || t.FragmentOffset != 0 || t.MoreFragments
			case *layers.IPSecAH:
				pr.proto = uint8(t.NextHeader)
			case *layers.TCP:
				pr.dport = uint16(t.DstPort)
				break walk
			case *layers.UDP:
				pr.dport = uint16(t.DstPort)
				break walk
			case *layers.SCTP:
				pr.dport = uint16(t.DstPort)
				break walk
			default:
				break walk
			}
		}
		out = append(out, pr)
	}
	return out
}

// FuzzDifferential: whenever the filter passes a frame (inline, policy
// default deny, no pickup grace), gopacket's full decode of it finds no IP
// header pair the policy denies. A pair gopacket sees that the filter did
// not is a tunnel the filter was walked through.
func FuzzDifferential(f *testing.F) {
	for _, s := range differentialSeeds(f) {
		f.Add(s)
	}
	m := testMatcher(f, testPolicy)
	now := time.Unix(0, t0)
	f.Fuzz(func(t *testing.T, frame []byte) {
		flt := New(Options{Site: "s1", PickupGrace: -1})
		flt.SetMatcher(m)
		d := flt.NewDecoder(pcapfile.LinkTypeEthernet)
		var p packet.Packet
		d.Decode(frame, false, &p)
		if r := flt.Judge(&p, SideUnknown, frame, len(frame), t0); r.Action != Pass {
			return
		}
		pairs := gopacketPairs(frame)
		for i, pr := range pairs {
			if i >= p.N {
				t.Fatalf("passed, but gopacket sees header pair %d (%v -> %v proto %d) that the filter did not (it saw %d)", i, pr.src, pr.dst, pr.proto, p.N)
			}
			l := &p.L[i]
			if l.Src != pr.src || l.Dst != pr.dst {
				t.Fatalf("passed, but pair %d differs: filter %v -> %v, gopacket %v -> %v", i, l.Src, l.Dst, pr.src, pr.dst)
			}
			if l.LinkControl || pr.frag {
				continue // link control the link needs; a fragment's ports are the datagram's
			}
			q := match.Query{Site: "s1", Src: pr.src, Dst: pr.dst, Proto: pr.proto, DPort: pr.dport, Now: now}
			if pr.proto == packet.ProtoICMP || pr.proto == packet.ProtoICMPv6 {
				q.DPort = 0
			}
			if v := m.Decide(&q); !v.Verdict.Allowed() {
				t.Fatalf("passed, but gopacket's pair %d %v -> %v proto %d port %d is %v (%v)", i, pr.src, pr.dst, pr.proto, pr.dport, v.Verdict, v.Reason)
			}
		}
	})
}

// differentialSeeds are frames on both sides of the line: approved and
// domestic traffic, and tunnels carrying it or hiding unapproved traffic.
func differentialSeeds(tb testing.TB) [][]byte {
	inner := func(dst string, dport uint16) []gopacket.SerializableLayer {
		return []gopacket.SerializableLayer{ip4("10.1.0.2", dst, layers.IPProtocolTCP), &layers.TCP{SrcPort: 40000, DstPort: layers.TCPPort(dport), SYN: true}}
	}
	withEth := func(ls []gopacket.SerializableLayer) []gopacket.SerializableLayer {
		return append([]gopacket.SerializableLayer{eth(layers.EthernetTypeIPv4)}, ls...)
	}
	cat := func(a []gopacket.SerializableLayer, b ...gopacket.SerializableLayer) []gopacket.SerializableLayer {
		return append(append([]gopacket.SerializableLayer{}, a...), b...)
	}
	var seeds [][]byte
	for _, dst := range []string{"198.51.100.7", "203.0.113.7", "10.1.0.9"} {
		seeds = append(seeds,
			frame(tb, cat(withEth(nil), inner(dst, 443)...)...),
			frame(tb, cat(withEth([]gopacket.SerializableLayer{ip4("10.1.0.2", "10.1.0.3", layers.IPProtocolIPv4)}), inner(dst, 443)...)...),
			frame(tb, cat(withEth([]gopacket.SerializableLayer{ip4("10.1.0.2", "10.1.0.3", layers.IPProtocolGRE),
				&layers.GRE{KeyPresent: true, Key: 5, Protocol: layers.EthernetTypeIPv4}}), inner(dst, 443)...)...),
			frame(tb, cat(withEth([]gopacket.SerializableLayer{ip4("10.1.0.2", "10.1.0.3", layers.IPProtocolUDP),
				&layers.UDP{SrcPort: 50000, DstPort: 4789}, &layers.VXLAN{ValidIDFlag: true, VNI: 7}}), withEth(inner(dst, 443))...)...),
			frame(tb, cat(withEth([]gopacket.SerializableLayer{ip4("10.1.0.2", "10.1.0.3", layers.IPProtocolUDP),
				&layers.UDP{SrcPort: 4789, DstPort: 53}, &layers.VXLAN{ValidIDFlag: true, VNI: 7}}), withEth(inner(dst, 443))...)...),
			frame(tb, cat([]gopacket.SerializableLayer{eth(layers.EthernetTypeMPLSUnicast), &layers.MPLS{Label: 16, StackBottom: true, TTL: 64}}, inner(dst, 443)...)...),
		)
	}
	return seeds
}
