package redteam

import (
	"bytes"
	"fmt"
	"net"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

type layerList = []gopacket.SerializableLayer

// tunnel is one encapsulation: wrap puts inner (an IP packet's layers)
// inside it, sent from src to dst (outer addresses, which link-layer
// tunnels such as MPLS and PPPoE have none of).
type tunnel struct {
	name     string // "" for no tunnel
	wrap     func(src, dst string, inner layerList) layerList
	linkOnly bool // no outer IP header
}

// protoOf is the IP protocol number that carries the packet inner.
func protoOf(inner layerList) layers.IPProtocol {
	switch inner[0].(type) {
	case *layers.IPv4:
		return layers.IPProtocolIPv4
	case *layers.IPv6:
		return layers.IPProtocolIPv6
	}
	panic(fmt.Sprintf("redteam: %T is not an IP header", inner[0]))
}

// bridged is inner behind an Ethernet header, as an L2 tunnel carries it;
// the inner MACs follow the direction of the outer addresses.
func bridged(src, dst string, inner layerList) layerList {
	a, b := innerA, innerB
	if bytes.Compare(net.ParseIP(src), net.ParseIP(dst)) > 0 {
		a, b = b, a
	}
	return append(layerList{&layers.Ethernet{SrcMAC: a, DstMAC: b, EthernetType: etherTypeOf(inner[0])}}, inner...)
}

// flowPort is the source port a UDP tunnel picks for a flow (a hash of
// the inner flow in real stacks).
func flowPort(inner layerList) uint16 {
	h := uint16(0)
	for _, l := range inner {
		if c, ok := l.(carrying); ok {
			if t, ok := c.checksummed.(*layers.TCP); ok {
				h = uint16(t.SrcPort)*31 + uint16(t.DstPort)
			}
		}
	}
	return 49152 + h%16384
}

var (
	// ipInIP is IP-in-IP of either family in either: IPIP (4 in 4), 6in4
	// (41 in 4), IPv6-in-IPv6 (41 in 6) and IPv4-in-IPv6 (4 in 6).
	ipInIP = tunnel{name: "ipip", wrap: func(src, dst string, inner layerList) layerList {
		return append(layerList{ipTo(src, dst, protoOf(inner))}, inner...)
	}}
	grePlain = greTunnel("gre", layers.GRE{})
	greKey   = greTunnel("gre+key", layers.GRE{KeyPresent: true, Key: 42})
	greSeq   = greTunnel("gre+seq", layers.GRE{SeqPresent: true, Seq: 7})
	greCsum  = greTunnel("gre+csum", layers.GRE{ChecksumPresent: true})
	greAll   = greTunnel("gre+csum+key+seq", layers.GRE{ChecksumPresent: true, KeyPresent: true, Key: 42, SeqPresent: true, Seq: 7})
	greTEB   = tunnel{name: "gre/teb", wrap: func(src, dst string, inner layerList) layerList {
		return append(layerList{ipTo(src, dst, layers.IPProtocolGRE),
			&layers.GRE{KeyPresent: true, Key: 42, Protocol: layers.EthernetTypeTransparentEthernetBridging}},
			bridged(src, dst, inner)...)
	}}
	vxlan      = udpTunnel("vxlan", 4789, func() gopacket.SerializableLayer { return &layers.VXLAN{ValidIDFlag: true, VNI: 42} })
	vxlanLinux = udpTunnel("vxlan/8472", 8472, func() gopacket.SerializableLayer { return &layers.VXLAN{ValidIDFlag: true, VNI: 42} })
	geneve     = udpTunnel("geneve", 6081, func() gopacket.SerializableLayer {
		return &layers.Geneve{Protocol: layers.EthernetTypeTransparentEthernetBridging, VNI: 42}
	})
	geneveOpts = udpTunnel("geneve+options", 6081, func() gopacket.SerializableLayer {
		return &layers.Geneve{Protocol: layers.EthernetTypeTransparentEthernetBridging, VNI: 42,
			Options: []*layers.GeneveOption{{Class: 0x0103, Type: 0x01, Data: []byte{0, 0, 0, 1, 0, 0, 0, 2}}}}
	})
	// vxlanGPE (RFC draft-ietf-nvo3-vxlan-gpe, udp/4790): flags I and P,
	// next protocol IPv4 (1) or IPv6 (2), no inner Ethernet. gopacket has
	// no layer for it.
	vxlanGPE = tunnel{name: "vxlan-gpe", wrap: func(src, dst string, inner layerList) layerList {
		next := byte(1)
		if protoOf(inner) == layers.IPProtocolIPv6 {
			next = 2
		}
		return append(layerList{ipTo(src, dst, layers.IPProtocolUDP),
			&layers.UDP{SrcPort: layers.UDPPort(flowPort(inner)), DstPort: 4790},
			gopacket.Payload{0x0c, 0, 0, next, 0, 0, 42, 0}}, inner...)
	}}
	mpls1  = mplsTunnel("mpls", 1)
	mpls3  = mplsTunnel("mpls x3", 3)
	pppoe  = tunnel{name: "pppoe", wrap: pppoeWrap, linkOnly: true}
	direct = tunnel{wrap: func(_, _ string, inner layerList) layerList { return inner }}
)

func greTunnel(name string, g layers.GRE) tunnel {
	return tunnel{name: name, wrap: func(src, dst string, inner layerList) layerList {
		h := g
		h.Protocol = etherTypeOf(inner[0])
		return append(layerList{ipTo(src, dst, layers.IPProtocolGRE), &h}, inner...)
	}}
}

// udpTunnel is an L2 tunnel over UDP to port (VXLAN, Geneve).
func udpTunnel(name string, port uint16, hdr func() gopacket.SerializableLayer) tunnel {
	return tunnel{name: name, wrap: func(src, dst string, inner layerList) layerList {
		return append(layerList{ipTo(src, dst, layers.IPProtocolUDP),
			&layers.UDP{SrcPort: layers.UDPPort(flowPort(inner)), DstPort: layers.UDPPort(port)}, hdr()},
			bridged(src, dst, inner)...)
	}}
}

// mplsTunnel is a stack of n unicast labels over the inner packet.
func mplsTunnel(name string, n int) tunnel {
	return tunnel{name: name, linkOnly: true, wrap: func(_, _ string, inner layerList) layerList {
		var ls layerList
		for i := range n {
			ls = append(ls, &layers.MPLS{Label: uint32(100 * (i + 1)), StackBottom: i == n-1, TTL: 64})
		}
		return append(ls, inner...)
	}}
}

func pppoeWrap(_, _ string, inner layerList) layerList {
	t := layers.PPPTypeIPv4
	if protoOf(inner) == layers.IPProtocolIPv6 {
		t = layers.PPPTypeIPv6
	}
	return append(layerList{&layers.PPPoE{Version: 1, Type: 1, Code: layers.PPPoECodeSession, SessionId: 0x0101},
		&layers.PPP{PPPType: t}}, inner...)
}

// pkt is a TCP or UDP segment s inside an IP header from src to dst.
func pkt(src, dst string, s carrying) layerList {
	next := layers.IPProtocolTCP
	if _, ok := s.checksummed.(*layers.UDP); ok {
		next = layers.IPProtocolUDP
	}
	return layerList{ipTo(src, dst, next), s}
}

// via says, for a note, what a packet is tunnelled in.
func via(t tunnel, src, dst string) string {
	switch {
	case t.name == "":
		return ""
	case t.linkOnly:
		return " in " + t.name
	}
	return fmt.Sprintf(" in %s %s -> %s", t.name, src, dst)
}

// hide adds a case whose frames each carry, inside a tunnel from osrc to
// odst, a SYN from isrc to idst:443 that the policy denies (or whose
// outer header it denies): one frame per tunnel from the inside, then for
// the first tunnel the SYN-ACK back from the far end and the SYN again
// with 802.1Q and QinQ tags. Every frame must drop.
func (c *corpus) hide(name, osrc, odst, isrc, idst string, ts ...tunnel) {
	var fs []Frame
	synIn := func(t tunnel, tg tags) Frame {
		p := c.port()
		return drop(Inside, fmt.Sprintf("SYN %s -> %s%s%s", hp(isrc, p), hp(idst, webPort), via(t, osrc, odst), tg),
			tagged(Inside, tg, t.wrap(osrc, odst, pkt(isrc, idst, synTo(p, webPort)))...))
	}
	for _, t := range ts {
		fs = append(fs, synIn(t, untagged))
	}
	t := ts[0]
	p := c.port()
	cn := newConn(p, webPort)
	cn.seg(client, syn, nil)
	fs = append(fs, drop(Outside, fmt.Sprintf("SYN+ACK %s -> %s%s", hp(idst, webPort), hp(isrc, p), via(t, odst, osrc)),
		frame(Outside, t.wrap(odst, osrc, pkt(idst, isrc, cn.seg(server, syn|ack, nil)))...)))
	fs = append(fs, synIn(t, dot1q), synIn(t, qinq))
	c.add(name, "tunnel", fs...)
}

// conv is a legitimate TCP connection to port 443 for handshake.
type conv struct {
	t          tunnel // zero: not tunnelled
	osrc, odst string // outer addresses, the client's end first
	cli, srv   string // the client and the server
	clientSide Side   // where the client's segments arrive; zero: Inside
	// oneWay: only the client's segments cross (the tunnel's far end is
	// domestic, and under strict ingress cannot send from the outside).
	oneWay bool
	tg     tags
}

// handshake adds a legitimate case: the connection v from open to close,
// every frame passing.
func (c *corpus) handshake(name string, v conv) {
	sc := &script{cn: newConn(c.port(), webPort), t: v.t, osrc: v.osrc, odst: v.odst, cli: v.cli, srv: v.srv, cliSide: v.clientSide, tg: v.tg}
	steps := []step{{client, syn, 0}, {server, syn | ack, 0}, {client, ack, 0}, {client, psh | ack, 200}, {server, psh | ack, 900},
		{client, fin | ack, 0}, {server, fin | ack, 0}, {client, ack, 0}}
	if v.oneWay {
		steps = []step{{client, syn, 0}, {client, psh | ack, 200}, {client, fin | ack, 0}}
	}
	c.add(name, "legit", sc.frames(Pass, steps...)...)
}

// step is one segment of a script: its sender, flags and payload size.
type step struct {
	end int // client or server
	f   flags
	n   int
}

// script plays a TCP connection cn between cli and srv, tunnelled in t
// (outer addresses osrc, the client's end, and odst) or not (zero t).
type script struct {
	cn         *conn
	t          tunnel
	osrc, odst string
	cli, srv   string
	cliSide    Side // where the client's segments arrive; zero: Inside
	tg         tags
	note       string // added to each frame's note
}

// frames are the steps' segments, each wanting want.
func (s *script) frames(want Want, steps ...step) []Frame {
	t := s.t
	if t.wrap == nil {
		t = direct
	}
	var fs []Frame
	for _, st := range steps {
		side, src, dst, osrc, odst := s.cliSide, s.cli, s.srv, s.osrc, s.odst
		if side == 0 {
			side = Inside
		}
		if st.end == server {
			side, src, dst, osrc, odst = side.other(), s.srv, s.cli, s.odst, s.osrc
		}
		seg := s.cn.seg(st.end, st.f, filler(st.n))
		h := seg.checksummed.(*layers.TCP)
		fs = append(fs, Frame{Side: side, Want: want, Note: fmt.Sprintf("%v %s -> %s%s%s%s",
			st.f, hp(src, uint16(h.SrcPort)), hp(dst, uint16(h.DstPort)), via(t, osrc, odst), s.tg, s.note),
			Data: tagged(side, s.tg, t.wrap(osrc, odst, pkt(src, dst, seg))...)})
	}
	return fs
}

// nest wraps inner in each tunnel in turn (the first innermost), every
// outer header between the same two domestic hosts (in6: their IPv6
// addresses).
func nest(inner layerList, ts ...tunnel) layerList {
	for _, t := range ts {
		inner = t.wrap(cust, cust2, inner)
	}
	return inner
}

// in6 is IP-in-IP with IPv6 outer headers.
var in6 = tunnel{name: "ipip6", wrap: func(_, _ string, inner layerList) layerList {
	return append(layerList{ip6(cust6, cust26, protoOf(inner))}, inner...)
}}

func repeat(t tunnel, n int) []tunnel {
	ts := make([]tunnel, n)
	for i := range ts {
		ts[i] = t
	}
	return ts
}

func (c *corpus) tunnels() {
	// IP in IP: the inner header pair is what the policy judges.
	c.hide("ipip-domestic-outer-hides-unapproved", cust, cust2, cust, foreign, ipInIP)
	c.hide("ipip-domestic-inner-to-unapproved", cust, foreign, cust, cust2, ipInIP)
	c.hide("6in4-domestic-outer-hides-unapproved", cust, cust2, cust6, foreign6, ipInIP)
	c.hide("6in4-domestic-inner-to-unapproved", cust, foreign, cust6, cust26, ipInIP)
	c.hide("ip6ip6-domestic-outer-hides-unapproved", cust6, cust26, cust6, foreign6, ipInIP)
	c.hide("ip6ip6-domestic-inner-to-unapproved", cust6, foreign6, cust6, cust26, ipInIP)
	c.hide("ip4in6-domestic-outer-hides-unapproved", cust6, cust26, cust, foreign, ipInIP)
	// GRE with every option, carrying IPv4, IPv6 and Ethernet; over IPv6.
	gres := []tunnel{grePlain, greKey, greSeq, greCsum, greAll}
	c.hide("gre-ipv4-hides-unapproved", cust, cust2, cust, foreign, gres...)
	c.hide("gre-ipv6-hides-unapproved", cust, cust2, cust6, foreign6, gres...)
	c.hide("gre-teb-hides-unapproved", cust, cust2, overlay, foreign, greTEB)
	c.hide("gre6-hides-unapproved", cust6, cust26, cust, foreign, grePlain, greKey, greAll)
	c.hide("gre6-ipv6-hides-unapproved", cust6, cust26, cust6, foreign6, grePlain, greTEB)
	c.hide("gre-domestic-inner-to-unapproved", cust, foreign, cust, cust2, grePlain, greKey)
	// UDP tunnels between domestic hosts.
	c.hide("vxlan-domestic-hides-unapproved", cust, cust2, overlay, foreign, vxlan, vxlanLinux)
	c.hide("vxlan-domestic-hides-unapproved-ipv6", cust, cust2, cust6, foreign6, vxlan)
	c.hide("vxlan6-domestic-hides-unapproved", cust6, cust26, overlay, foreign, vxlan)
	c.hide("geneve-domestic-hides-unapproved", cust, cust2, overlay, foreign, geneve, geneveOpts)
	c.hide("vxlan-gpe-domestic-hides-unapproved", cust, cust2, cust, foreign, vxlanGPE)
	// Link-layer encapsulations with no outer IP header.
	c.hide("mpls-hides-unapproved", "", "", cust, foreign, mpls1, mpls3)
	c.hide("mpls-hides-unapproved-ipv6", "", "", cust6, foreign6, mpls1, mpls3)
	c.hide("pppoe-hides-unapproved", "", "", cust, foreign, pppoe)
	c.hide("pppoe-hides-unapproved-ipv6", "", "", cust6, foreign6, pppoe)
	// An approved tunnel endpoint approves the outer header, not what it
	// carries.
	c.hide("ipip-approved-endpoint-unapproved-inner", cust, tunPeer, cust, foreign, ipInIP, grePlain, greKey)
	c.hide("6in4-approved-endpoint-unapproved-inner", cust, tunPeer, cust6, foreign6, ipInIP, grePlain)
	c.hide("ipip-approved-endpoint-spoofed-inner", cust, tunPeer, approved, foreign, ipInIP)
	c.hide("vxlan-approved-endpoint-unapproved-inner", cust, vxPeer, overlay, foreign, vxlan)

	c.tooDeep()
	c.opaqueTunnels()

	// Legitimate tunnels: every layer passes.
	c.domesticTunnels()
	c.handshake("vxlan-approved-endpoint-approved-inner", conv{t: vxlan, osrc: cust, odst: vxPeer, cli: overlay, srv: approved})
	c.handshake("ipip-approved-endpoint-approved-inner", conv{t: ipInIP, osrc: cust, odst: tunPeer, cli: cust, srv: approved})
	c.handshake("gre-approved-endpoint-approved-inner", conv{t: greKey, osrc: cust, odst: tunPeer, cli: cust, srv: approved})
	c.handshake("6in4-approved-endpoint-approved-inner", conv{t: ipInIP, osrc: cust, odst: tunPeer, cli: cust6, srv: approved6})
	c.handshake("ipip-approved-endpoint-approved-inner-dot1q", conv{t: ipInIP, osrc: cust, odst: tunPeer, cli: cust, srv: approved, tg: dot1q})
	c.handshake("mpls-approved", conv{t: mpls1, cli: cust, srv: approved})
	c.handshake("mpls3-approved-ipv6", conv{t: mpls3, cli: cust6, srv: approved6})
	c.handshake("pppoe-approved-dot1q", conv{t: pppoe, cli: cust, srv: approved, tg: dot1q})
	c.handshake("pppoe-approved-ipv6", conv{t: pppoe, cli: cust6, srv: approved6})
}

// domesticTunnels: tunnels between domestic hosts carrying domestic or
// approved traffic pass; the far end is domestic, so only the inside
// sends (a domestic source arriving from outside is a spoof).
func (c *corpus) domesticTunnels() {
	var fs []Frame
	add := func(t tunnel, osrc, odst, isrc, idst string, dport uint16) {
		p := c.port()
		fs = append(fs, pass(Inside, fmt.Sprintf("SYN %s -> %s%s", hp(isrc, p), hp(idst, dport), via(t, osrc, odst)),
			frame(Inside, t.wrap(osrc, odst, pkt(isrc, idst, synTo(p, dport)))...)))
	}
	for _, t := range []tunnel{grePlain, greKey, greSeq, greCsum, greAll} {
		add(t, cust, cust2, overlay, overlay2, 22)
	}
	add(grePlain, cust, cust2, cust6, cust26, 22)
	add(greTEB, cust, cust2, overlay, overlay2, 22)
	add(grePlain, cust6, cust26, overlay, overlay2, 22)
	add(ipInIP, cust, cust2, overlay, overlay2, 22)
	add(vxlan, cust, cust2, overlay, overlay2, 22)
	c.add("domestic-tunnels-carry-domestic", "legit", fs...)

	fs = nil
	for _, t := range []tunnel{grePlain, greKey, greAll, greTEB, ipInIP, vxlan, geneve, geneveOpts} {
		add(t, cust, cust2, overlay, approved, webPort)
	}
	add(ipInIP, cust, cust2, cust6, approved6, webPort) // 6in4
	add(ipInIP, cust6, cust26, cust6, approved6, webPort)
	add(ipInIP, cust6, cust26, cust, approved, webPort) // 4in6
	c.add("domestic-tunnels-carry-approved", "legit", fs...)

	// Two encapsulations deep is well inside the limit.
	p := c.port()
	c.add("gre-in-ipip-domestic", "legit", pass(Inside, fmt.Sprintf("SYN %s -> %s in gre in ipip, all domestic", hp(overlay, p), hp(overlay2, 22)),
		frame(Inside, nest(pkt(overlay, overlay2, synTo(p, 22)), grePlain, ipInIP)...)))
}

// tooDeep: five or more encapsulations drop whatever they carry, even when
// every layer is domestic.
func (c *corpus) tooDeep() {
	var fs []Frame
	add := func(note string, inner layerList, ts ...tunnel) {
		fs = append(fs, drop(Inside, note, frame(Inside, nest(inner, ts...)...)))
	}
	syn4 := func() layerList { return pkt(cust, cust2, synTo(c.port(), webPort)) }
	syn6 := func() layerList { return pkt(cust6, cust26, synTo(c.port(), webPort)) }
	add("domestic SYN in 5 IPIP headers", syn4(), repeat(ipInIP, 5)...)
	add("domestic SYN in 16 IPIP headers", syn4(), repeat(ipInIP, 16)...)
	add("domestic SYN in 8 IPv6-in-IPv6 headers", syn6(), repeat(in6, 8)...)
	add("domestic SYN in 4in6 in 6in6 in 6in4 in vxlan in gre", syn4(), in6, in6, ipInIP, vxlan, grePlain)
	add("domestic SYN in gre x5", syn4(), grePlain, greKey, greSeq, greCsum, greAll)
	add("domestic SYN in vxlan in geneve in gre/teb in vxlan in gre", syn4(), vxlan, geneve, greTEB, vxlan, grePlain)
	c.add("too-deep-domestic", "too-deep", fs...)

	fs = nil
	add("approved SYN in 5 IPIP headers to the approved endpoint", pkt(cust, approved, synTo(c.port(), webPort)),
		tunnel{name: "ipip", wrap: func(_, _ string, in layerList) layerList { return ipInIP.wrap(cust, tunPeer, in) }},
		ipInIP, ipInIP, ipInIP, ipInIP)
	c.add("too-deep-approved-inner", "too-deep", fs...)
}

// opaqueTunnels: encapsulations the filter cannot see into are judged by
// the policy default (deny: dropped), even between domestic hosts or to an
// approved endpoint.
func (c *corpus) opaqueTunnels() {
	hidden := func(dst string) layerList { return pkt(cust, dst, synTo(c.port(), webPort)) }
	hiddenBytes := func(dst string) []byte { return serialize(nil, hidden(dst)...) }
	gre := func(osrc, odst string, g *layers.GRE, rest ...gopacket.SerializableLayer) []byte {
		return frame(Inside, append(layerList{ip4(osrc, odst, layers.IPProtocolGRE), g}, rest...)...)
	}

	// PPTP's enhanced GRE (version 1): key is payload length and call ID.
	inner := append(layerList{&layers.PPP{PPPType: layers.PPPTypeIPv4, HasPPTPHeader: true}}, hidden(foreign)...)
	innerLen := len(serialize(nil, inner...))
	c.add("gre-version1-pptp", "opaque-tunnel",
		drop(Inside, "GRE version 1 (PPTP) carrying PPP carrying a SYN to 203.0.113.7, between domestic hosts",
			gre(cust, cust2, &layers.GRE{Version: 1, KeyPresent: true, SeqPresent: true, Protocol: layers.EthernetTypePPP,
				Key: uint32(innerLen)<<16 | 0x0007, Seq: 1}, inner...)))
	c.add("gre-routing-present", "opaque-tunnel",
		drop(Inside, "GRE with the routing bit and a source route, carrying a SYN to 203.0.113.7, between domestic hosts",
			gre(cust, cust2, &layers.GRE{RoutingPresent: true, Protocol: layers.EthernetTypeIPv4,
				GRERouting: &layers.GRERouting{AddressFamily: 0x0800, SRELength: 4, RoutingInformation: a4(foreign)}},
				hidden(foreign)...)))
	c.add("gre-unknown-protocol", "opaque-tunnel",
		drop(Inside, "GRE protocol 0x88b5 (local experimental) carrying a SYN to 203.0.113.7, between domestic hosts",
			gre(cust, cust2, &layers.GRE{Protocol: 0x88b5}, gopacket.Payload(hiddenBytes(foreign)))),
		drop(Inside, "GRE protocol 0x88b5 to the approved GRE endpoint",
			gre(cust, tunPeer, &layers.GRE{Protocol: 0x88b5}, gopacket.Payload(hiddenBytes(foreign)))))
	c.addOpaque("ipip-truncated-inner", "opaque-tunnel",
		drop(Inside, "IPIP between domestic hosts carrying 12 bytes of an IPv4 header",
			frame(Inside, ip4(cust, cust2, layers.IPProtocolIPv4), gopacket.Payload(hiddenBytes(foreign)[:12]))),
		drop(Inside, "IPIP to the approved endpoint carrying 12 bytes of an IPv4 header",
			frame(Inside, ip4(cust, tunPeer, layers.IPProtocolIPv4), gopacket.Payload(hiddenBytes(foreign)[:12]))))
	long := hiddenBytes(foreign)
	long[0] = 0x4f // IHL 15: 60 bytes of header, 40 there
	c.addOpaque("gre-truncated-inner", "opaque-tunnel",
		drop(Inside, "GRE between domestic hosts carrying an IPv4 header that claims 60 bytes and has 40",
			gre(cust, cust2, &layers.GRE{Protocol: layers.EthernetTypeIPv4}, gopacket.Payload(long))))
	v6 := serialize(nil, pkt(cust6, foreign6, synTo(c.port(), webPort))...)
	c.addOpaque("ipip-inner-version-mismatch", "opaque-tunnel",
		drop(Inside, "protocol 4 (IPv4) between domestic hosts carrying an IPv6 packet",
			frame(Inside, ip4(cust, cust2, layers.IPProtocolIPv4), gopacket.Payload(v6))))
	odd := layerList{ip4(cust, cust2, layers.IPProtocolUDP), &layers.UDP{SrcPort: 49999, DstPort: 4789},
		&layers.VXLAN{ValidIDFlag: true, VNI: 42}, &layers.Ethernet{SrcMAC: innerA, DstMAC: innerB, EthernetType: 0x88b5},
		gopacket.Payload(hiddenBytes(foreign))}
	c.addOpaque("vxlan-inner-unknown-ethertype", "opaque-tunnel",
		drop(Inside, "VXLAN between domestic hosts carrying a frame of EtherType 0x88b5", frame(Inside, odd...)))
	c.add("geneve-unknown-protocol", "opaque-tunnel",
		drop(Inside, "Geneve between domestic hosts with protocol type 0x88b5",
			frame(Inside, ip4(cust, cust2, layers.IPProtocolUDP), &layers.UDP{SrcPort: 49998, DstPort: 6081},
				&layers.Geneve{Protocol: 0x88b5, VNI: 42}, gopacket.Payload(hiddenBytes(foreign)))))
}
