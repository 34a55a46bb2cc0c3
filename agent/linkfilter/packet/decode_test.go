package packet_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"linkguard.dev/linkguard/agent/linkfilter/packet"
	"linkguard.dev/linkguard/hal/capture/pcapfile"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

func ser(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	for i, l := range ls {
		if n, ok := l.(gopacket.NetworkLayer); ok {
			for _, m := range ls[i+1:] {
				if t, ok := m.(interface {
					SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
				}); ok {
					_ = t.SetNetworkLayerForChecksum(n)
					break
				}
			}
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// serRaw serializes transport layers on their own, checksums left 0.
func serRaw(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ls...); err != nil {
		tb.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func eth(t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: t}
}

func v4(src, dst string, p layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: p, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
}

func v6(src, dst string, p layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: p, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
}

func syn(sp, dp uint16) *layers.TCP {
	return &layers.TCP{SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp), SYN: true, Seq: 7, Window: 1000}
}

func decode(tb testing.TB, fr []byte) *packet.Packet {
	tb.Helper()
	d := packet.NewDecoder(pcapfile.LinkTypeEthernet, packet.Options{})
	p := new(packet.Packet)
	d.Decode(fr, false, p)
	return p
}

func a(s string) netip.Addr { return netip.MustParseAddr(s) }

type hop struct {
	src, dst string
	proto    uint8
	via      packet.Encap
}

func TestDecodeLayers(t *testing.T) {
	inner := func() []gopacket.SerializableLayer {
		return []gopacket.SerializableLayer{v4("10.1.0.2", "203.0.113.7", layers.IPProtocolTCP), syn(40000, 443), gopacket.Payload("x")}
	}
	innerEth := func() []gopacket.SerializableLayer {
		return append([]gopacket.SerializableLayer{eth(layers.EthernetTypeIPv4)}, inner()...)
	}
	cat := func(ls ...[]gopacket.SerializableLayer) []gopacket.SerializableLayer {
		var out []gopacket.SerializableLayer
		for _, l := range ls {
			out = append(out, l...)
		}
		return out
	}
	one := func(l ...gopacket.SerializableLayer) []gopacket.SerializableLayer { return l }
	tunnelEnd := hop{"10.1.0.2", "203.0.113.7", 6, 0}
	cases := []struct {
		name string
		ls   []gopacket.SerializableLayer
		want []hop
	}{
		{"plain", cat(one(eth(layers.EthernetTypeIPv4)), inner()), []hop{tunnelEnd}},
		{"ipip", cat(one(eth(layers.EthernetTypeIPv4), v4("10.1.0.2", "10.1.0.3", layers.IPProtocolIPv4)), inner()),
			[]hop{{"10.1.0.2", "10.1.0.3", 4, 0}, {"10.1.0.2", "203.0.113.7", 6, packet.EncapIPIP}}},
		{"4in6", cat(one(eth(layers.EthernetTypeIPv6), v6("fd00::2", "fd00::3", layers.IPProtocolIPv4)), inner()),
			[]hop{{"fd00::2", "fd00::3", 4, 0}, {"10.1.0.2", "203.0.113.7", 6, packet.Encap4in6}}},
		{"6in4", one(eth(layers.EthernetTypeIPv4), v4("10.1.0.2", "10.1.0.3", layers.IPProtocolIPv6), v6("fd00::2", "2001:db8:bb::7", layers.IPProtocolTCP), syn(1, 443)),
			[]hop{{"10.1.0.2", "10.1.0.3", 41, 0}, {"fd00::2", "2001:db8:bb::7", 6, packet.Encap6in4}}},
		{"6in6", one(eth(layers.EthernetTypeIPv6), v6("fd00::2", "fd00::3", layers.IPProtocolIPv6), v6("fd00::2", "2001:db8:bb::7", layers.IPProtocolTCP), syn(1, 443)),
			[]hop{{"fd00::2", "fd00::3", 41, 0}, {"fd00::2", "2001:db8:bb::7", 6, packet.Encap6in6}}},
		{"gre-key-seq-csum", cat(one(eth(layers.EthernetTypeIPv4), v4("10.1.0.2", "10.1.0.3", layers.IPProtocolGRE),
			&layers.GRE{ChecksumPresent: true, KeyPresent: true, SeqPresent: true, Key: 9, Seq: 3, Protocol: layers.EthernetTypeIPv4}), inner()),
			[]hop{{"10.1.0.2", "10.1.0.3", 47, 0}, {"10.1.0.2", "203.0.113.7", 6, packet.EncapGRE}}},
		{"gre-teb-over-v6", cat(one(eth(layers.EthernetTypeIPv6), v6("fd00::2", "fd00::3", layers.IPProtocolGRE),
			&layers.GRE{Protocol: layers.EthernetTypeTransparentEthernetBridging}), innerEth()),
			[]hop{{"fd00::2", "fd00::3", 47, 0}, {"10.1.0.2", "203.0.113.7", 6, packet.EncapGRE}}},
		{"vxlan", cat(one(eth(layers.EthernetTypeIPv4), v4("10.1.0.2", "10.1.0.3", layers.IPProtocolUDP),
			&layers.UDP{SrcPort: 50000, DstPort: 4789}, &layers.VXLAN{ValidIDFlag: true, VNI: 42}), innerEth()),
			[]hop{{"10.1.0.2", "10.1.0.3", 17, 0}, {"10.1.0.2", "203.0.113.7", 6, packet.EncapVXLAN}}},
		{"qinq-mpls", cat(one(&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeQinQ},
			&layers.Dot1Q{VLANIdentifier: 10, Type: layers.EthernetTypeDot1Q}, &layers.Dot1Q{VLANIdentifier: 20, Type: layers.EthernetTypeMPLSUnicast},
			&layers.MPLS{Label: 100, TTL: 64}, &layers.MPLS{Label: 200, StackBottom: true, TTL: 64}), inner()),
			[]hop{{"10.1.0.2", "203.0.113.7", 6, packet.EncapMPLS}}},
		{"pppoe", cat(one(eth(layers.EthernetTypePPPoESession), &layers.PPPoE{Version: 1, Type: 1, Code: layers.PPPoECodeSession, SessionId: 5},
			&layers.PPP{PPPType: layers.PPPTypeIPv4}), inner()),
			[]hop{{"10.1.0.2", "203.0.113.7", 6, packet.EncapPPPoE}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := decode(t, ser(t, c.ls...))
			if p.Kind != packet.KindIP || p.N != len(c.want) {
				t.Fatalf("kind %v problem %q layers %d, want ip with %d", p.Kind, p.Problem, p.N, len(c.want))
			}
			for i, w := range c.want {
				l := &p.L[i]
				if l.Src != a(w.src) || l.Dst != a(w.dst) || l.Proto != w.proto || l.Via != w.via {
					t.Errorf("layer %d: %v -> %v proto %d via %v, want %+v", i, l.Src, l.Dst, l.Proto, l.Via, w)
				}
			}
			last := p.Last()
			if !last.L4 || last.DPort != 443 || last.TCPFlags != packet.TCPSyn {
				t.Errorf("inner transport %+v", last)
			}
		})
	}
}

func TestDecodeTooDeep(t *testing.T) {
	ls := []gopacket.SerializableLayer{eth(layers.EthernetTypeIPv4)}
	for range 5 {
		ls = append(ls, v4("10.1.0.2", "10.1.0.3", layers.IPProtocolIPv4))
	}
	ls = append(ls, v4("10.1.0.2", "10.1.0.9", layers.IPProtocolTCP), syn(1, 2))
	if p := decode(t, ser(t, ls...)); p.Problem != packet.ProblemTooDeep {
		t.Fatalf("5 encapsulations: %v %q", p.Kind, p.Problem)
	}
	ls = append(ls[:1], ls[2:]...)
	if p := decode(t, ser(t, ls...)); p.Kind != packet.KindIP || p.N != 5 {
		t.Fatalf("4 encapsulations: %v %q %d", p.Kind, p.Problem, p.N)
	}
}

func TestDecodeLinkControl(t *testing.T) {
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: 1, SourceHwAddress: macA, SourceProtAddress: net.IP{10, 1, 0, 2}.To4(), DstHwAddress: make(net.HardwareAddr, 6), DstProtAddress: net.IP{10, 1, 0, 3}.To4()}
	pad := func(b []byte, n int) []byte { return append(b, make([]byte, n-len(b))...) }
	ns := func(hop uint8, src string, opt int) []byte {
		ip := v6(src, "ff02::1:ff00:7", layers.IPProtocolICMPv6)
		ip.HopLimit = hop
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)}
		body := make([]byte, 20)
		copy(body[4:], net.ParseIP("2001:db8:aa::7"))
		if opt > 0 {
			o := make([]byte, opt)
			o[0], o[1] = 1, byte(opt/8)
			body = append(body, o...)
		}
		return ser(t, eth(layers.EthernetTypeIPv6), ip, icmp, gopacket.Payload(body))
	}
	lldp := func(dst net.HardwareAddr, tlvs []byte) []byte {
		hdr := append(append(append([]byte{}, dst...), macA...), 0x88, 0xcc)
		return append(hdr, tlvs...)
	}
	good := []byte{0x02, 0x07, 4, 0, 0, 0, 0, 0, 1, 0x04, 0x02, 7, '1', 0x06, 0x02, 0, 120, 0, 0}
	lldpGroup := net.HardwareAddr{0x01, 0x80, 0xc2, 0, 0, 0x0e}
	ospf := func(dst string, ttl uint8) []byte {
		ip := v4("10.1.0.2", dst, layers.IPProtocol(89))
		ip.TTL = ttl
		hello := make([]byte, 44)
		hello[0], hello[1], hello[2], hello[3] = 2, 1, 0, 44
		return ser(t, eth(layers.EthernetTypeIPv4), ip, gopacket.Payload(hello))
	}
	cases := []struct {
		name    string
		fr      []byte
		kind    packet.Kind
		problem packet.Problem
	}{
		{"arp", pad(ser(t, eth(layers.EthernetTypeARP), arp), 60), packet.KindLinkControl, 0},
		{"arp-1400", pad(ser(t, eth(layers.EthernetTypeARP), arp), 1400), packet.KindMalformed, packet.ProblemLinkControl},
		{"arp-garbage", pad(ser(t, eth(layers.EthernetTypeARP)), 60), packet.KindMalformed, packet.ProblemLinkControl},
		{"ns", ns(255, "fe80::2", 8), packet.KindLinkControl, 0},
		{"ns-dad", ns(255, "::", 0), packet.KindLinkControl, 0},
		{"ns-hop64", ns(64, "fe80::2", 8), packet.KindMalformed, packet.ProblemLinkControl},
		{"ns-1200", ns(255, "2001:db8:bb::7", 1200), packet.KindMalformed, packet.ProblemLinkControl},
		{"lldp", lldp(lldpGroup, good), packet.KindLinkControl, 0},
		{"lldp-blob", lldp(lldpGroup, make([]byte, 300)), packet.KindMalformed, packet.ProblemLinkControl},
		{"lldp-unicast", lldp(macB, good), packet.KindMalformed, packet.ProblemLinkControl},
		{"ospf-hello", ospf("224.0.0.5", 1), packet.KindLinkControl, 0},
		{"udp-224.0.0.99", ser(t, eth(layers.EthernetTypeIPv4), v4("10.1.0.2", "224.0.0.99", layers.IPProtocolUDP), &layers.UDP{SrcPort: 9, DstPort: 9}, gopacket.Payload(make([]byte, 1200))), packet.KindIP, 0},
		{"trailer", append(ser(t, eth(layers.EthernetTypeIPv4), v4("10.1.0.2", "10.1.0.3", layers.IPProtocolTCP), syn(1, 2)), make([]byte, 500)...), packet.KindMalformed, packet.ProblemHeader},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := decode(t, c.fr)
			if p.Kind != c.kind || p.Problem != c.problem {
				t.Fatalf("kind %v problem %q, want %v %q", p.Kind, p.Problem, c.kind, c.problem)
			}
		})
	}
	if p := decode(t, cases[len(cases)-2].fr); !p.L[0].LinkScoped || p.L[0].LinkControl {
		t.Errorf("udp to 224.0.0.99: %+v", p.L[0])
	}
}

func TestDecodeFragments(t *testing.T) {
	tcp := serRaw(t, syn(40000, 443), gopacket.Payload(make([]byte, 64)))
	frag := func(off uint16, more bool, body []byte) []byte {
		ip := v4("10.1.0.2", "198.51.100.7", layers.IPProtocolTCP)
		ip.Id = 77
		ip.FragOffset = off / 8
		if more {
			ip.Flags = layers.IPv4MoreFragments
		}
		return ser(t, eth(layers.EthernetTypeIPv4), ip, gopacket.Payload(body))
	}
	first := decode(t, frag(0, true, tcp[:40]))
	if first.Kind != packet.KindIP || first.L[0].Frag != packet.FirstFragment || first.L[0].DPort != 443 || first.L[0].FragEnd != 40 {
		t.Fatalf("first: %v %q %+v", first.Kind, first.Problem, first.L[0])
	}
	later := decode(t, frag(40, false, tcp[40:]))
	if later.Kind != packet.KindIP || later.L[0].Frag != packet.LaterFragment || later.L[0].FragOff != 40 || later.L[0].L4 {
		t.Fatalf("later: %v %q %+v", later.Kind, later.Problem, later.L[0])
	}
	if p := decode(t, frag(0, true, tcp[:8])); p.Problem != packet.ProblemFragTiny {
		t.Fatalf("tiny first: %q", p.Problem)
	}
	if p := decode(t, frag(8, false, tcp[8:])); p.Problem != packet.ProblemFragOverlap {
		t.Fatalf("offset 8 over TCP: %q", p.Problem)
	}
	// IPv6 first fragment without the upper-layer header (RFC 7112).
	ip := v6("fd00::2", "2001:db8:aa::7", layers.IPProtocolIPv6Fragment)
	fh := &layers.IPv6Fragment{NextHeader: layers.IPProtocolIPv6Destination, MoreFragments: true, Identification: 5}
	dst := make([]byte, 8*20) // a destination-options header of 160 bytes, cut at 64
	dst[0], dst[1] = byte(layers.IPProtocolTCP), 19
	if p := decode(t, ser(t, eth(layers.EthernetTypeIPv6), ip, fh, gopacket.Payload(dst[:64]))); p.Problem != packet.ProblemFragTiny {
		t.Fatalf("v6 first fragment without upper header: %v %q", p.Kind, p.Problem)
	}
}

func TestDecodeExtHeaders(t *testing.T) {
	chain := func(n int) []byte {
		ip := v6("fd00::2", "2001:db8:aa::7", layers.IPProtocolIPv6Destination)
		var body []byte
		for i := range n {
			next := byte(layers.IPProtocolIPv6Destination)
			if i == n-1 {
				next = byte(layers.IPProtocolUDP)
			}
			body = append(body, next, 0, 1, 4, 0, 0, 0, 0)
		}
		body = append(body, serRaw(t, &layers.UDP{SrcPort: 1, DstPort: 2})...)
		binaryFix := body[len(body)-8:]
		binaryFix[4], binaryFix[5] = 0, 8
		return ser(t, eth(layers.EthernetTypeIPv6), ip, gopacket.Payload(body))
	}
	if p := decode(t, chain(2)); p.Kind != packet.KindIP || p.L[0].Proto != 17 {
		t.Fatalf("2 dest opts: %v %q proto %d", p.Kind, p.Problem, p.L[0].Proto)
	}
	if p := decode(t, chain(10)); p.Problem != packet.ProblemExtHeader {
		t.Fatalf("10 dest opts: %v %q", p.Kind, p.Problem)
	}
}

func TestNoAllocs(t *testing.T) {
	fr := ser(t, eth(layers.EthernetTypeIPv4), v4("10.1.0.2", "10.1.0.3", layers.IPProtocolUDP),
		&layers.UDP{SrcPort: 50000, DstPort: 4789}, &layers.VXLAN{ValidIDFlag: true, VNI: 42},
		eth(layers.EthernetTypeIPv4), v4("10.1.0.2", "203.0.113.7", layers.IPProtocolTCP), syn(1, 443))
	d := packet.NewDecoder(pcapfile.LinkTypeEthernet, packet.Options{})
	var p packet.Packet
	if n := testing.AllocsPerRun(1000, func() { d.Decode(fr, false, &p) }); n != 0 {
		t.Fatalf("%v allocs per decode", n)
	}
}
