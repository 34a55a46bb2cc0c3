package redteam

import (
	"fmt"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// frag4 is one fragment of IPv4 datagram id: data at byte offset off,
// more to come if mf.
func frag4(side Side, src, dst string, proto layers.IPProtocol, id uint16, off int, mf bool, data []byte) []byte {
	if off%8 != 0 {
		panic("redteam: fragment offset not a multiple of 8")
	}
	h := ip4(src, dst, proto)
	h.Id, h.Flags, h.FragOffset = id, 0, uint16(off/8)
	if mf {
		h.Flags = layers.IPv4MoreFragments
	}
	return frame(side, h, gopacket.Payload(data))
}

// frag6 is one fragment of IPv6 datagram id (RFC 8200 4.5): the fragment
// header says next, data sits at byte offset off, more to come if m.
func frag6(side Side, src, dst string, next layers.IPProtocol, id uint32, off int, m bool, data []byte) []byte {
	if off%8 != 0 {
		panic("redteam: fragment offset not a multiple of 8")
	}
	fo := uint16(off)
	if m {
		fo |= 1
	}
	fh := be32(be16([]byte{byte(next), 0}, fo), id)
	return frame(side, ip6(src, dst, layers.IPProtocolIPv6Fragment), gopacket.Payload(append(fh, data...)))
}

// opts is an IPv6 extension header in the options format (hop-by-hop,
// destination options), one PadN filling it to 8 bytes.
func opts(next layers.IPProtocol) []byte { return []byte{byte(next), 0, 1, 4, 0, 0, 0, 0} }

// chain is an IPv6 packet from src to dst whose extension headers hdrs
// (first announced by first) are followed by the upper-layer bytes upper.
func chain(side Side, src, dst string, first layers.IPProtocol, hdrs, upper []byte) []byte {
	return frame(side, ip6(src, dst, first), gopacket.Payload(append(append([]byte(nil), hdrs...), upper...)))
}

func (c *corpus) fragments() {
	c.overlaps()
	c.tinyFragments()
	c.legitFragments()
	c.extHeaders()
}

// overlaps: once fragments of a datagram overlap, the overlapping one and
// every later one drop (RFC 5722, and the same for IPv4); what came before
// was a well-formed start.
func (c *corpus) overlaps() {
	p := c.port()
	syn443 := segment(ip4(cust, approved, layers.IPProtocolTCP), tcpSeg(p, webPort, isn(p), 0, syn, filler(40))) // 24-byte header
	syn22 := segment(ip4(cust, approved, layers.IPProtocolTCP), tcpSeg(p, 22, isn(p), 0, syn, filler(40)))
	c.add("frag4-overlap-rewrites-ports", "fragment-overlap",
		pass(Inside, "first fragment: SYN to 198.51.100.7:443, bytes 0-23", frag4(Inside, cust, approved, layers.IPProtocolTCP, 0x4101, 0, true, syn443[:24])),
		drop(Inside, "fragment at offset 0 again: the TCP header rewritten to port 22", frag4(Inside, cust, approved, layers.IPProtocolTCP, 0x4101, 0, true, syn22[:24])),
		drop(Inside, "last fragment, bytes 24-63", frag4(Inside, cust, approved, layers.IPProtocolTCP, 0x4101, 24, false, syn443[24:])))
	flagsRewritten := append([]byte(nil), syn443[8:24]...)
	flagsRewritten[5] = byte(syn | fin | psh | rst) // byte 13 of the TCP header: the flags
	c.add("frag4-overlap-rewrites-flags", "fragment-overlap",
		pass(Inside, "first fragment: SYN to 198.51.100.7:443, bytes 0-23", frag4(Inside, cust, approved, layers.IPProtocolTCP, 0x4102, 0, true, syn443[:24])),
		drop(Inside, "fragment at offset 8 rewriting bytes 8-23 (flags and window)", frag4(Inside, cust, approved, layers.IPProtocolTCP, 0x4102, 8, true, flagsRewritten)),
		drop(Inside, "last fragment, bytes 24-63", frag4(Inside, cust, approved, layers.IPProtocolTCP, 0x4102, 24, false, syn443[24:])))
	c.add("frag4-overlap-payload", "fragment-overlap",
		pass(Inside, "first fragment: SYN to 198.51.100.7:443, bytes 0-31", frag4(Inside, cust, approved, layers.IPProtocolTCP, 0x4103, 0, true, syn443[:32])),
		drop(Inside, "last fragment at offset 24 overlapping bytes 24-31", frag4(Inside, cust, approved, layers.IPProtocolTCP, 0x4103, 24, false, filler(40))))

	q := c.port()
	u := segment(ip6(cust6, approved6, layers.IPProtocolUDP), udpSeg(q, webPort, filler(2000)))
	u53 := segment(ip6(cust6, approved6, layers.IPProtocolUDP), udpSeg(q, 53, filler(2000)))
	c.add("frag6-overlap", "fragment-overlap",
		pass(Inside, "first fragment: UDP to [2001:db8:aa::7]:443, bytes 0-1447", frag6(Inside, cust6, approved6, layers.IPProtocolUDP, 0x6101, 0, true, u[:1448])),
		drop(Inside, "fragment at offset 1440 overlapping bytes 1440-1447", frag6(Inside, cust6, approved6, layers.IPProtocolUDP, 0x6101, 1440, true, u[1440:1480])),
		drop(Inside, "last fragment, bytes 1480-", frag6(Inside, cust6, approved6, layers.IPProtocolUDP, 0x6101, 1480, false, u[1480:])))
	c.add("frag6-overlap-rewrites-ports", "fragment-overlap",
		pass(Inside, "first fragment: UDP to [2001:db8:aa::7]:443, bytes 0-15", frag6(Inside, cust6, approved6, layers.IPProtocolUDP, 0x6102, 0, true, u[:16])),
		drop(Inside, "fragment at offset 0 again: the UDP header rewritten to port 53", frag6(Inside, cust6, approved6, layers.IPProtocolUDP, 0x6102, 0, true, u53[:16])),
		drop(Inside, "last fragment, bytes 16-", frag6(Inside, cust6, approved6, layers.IPProtocolUDP, 0x6102, 16, false, u[16:1000])))
}

// tinyFragments: a first fragment that does not hold the whole transport
// header (RFC 1858, RFC 7112 for IPv6) drops, and so does the rest of its
// datagram.
func (c *corpus) tinyFragments() {
	p := c.port()
	s := segment(ip4(cust, approved, layers.IPProtocolTCP), tcpSeg(p, webPort, isn(p), 0, syn, filler(40)))
	longOpts := &layers.TCP{SrcPort: layers.TCPPort(p + 1), DstPort: webPort, Seq: isn(p + 1), SYN: true, Window: 64240,
		Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)},
			{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
			{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2}}}
	lo := segment(ip4(cust, approved, layers.IPProtocolTCP), carrying{longOpts, nil})
	for _, v := range []struct {
		name string
		seg  []byte
		cut  int
		id   uint16
	}{{"frag4-tiny-first-8", s, 8, 0x4201}, {"frag4-tiny-first-16", s, 16, 0x4202}, {"frag4-tiny-first-tcp-options", lo, 32, 0x4203}} {
		c.add(v.name, "fragment-tiny",
			drop(Inside, fmt.Sprintf("first fragment with %d of the %d bytes of a TCP header to 198.51.100.7:443", v.cut, int(v.seg[12]>>4)*4),
				frag4(Inside, cust, approved, layers.IPProtocolTCP, v.id, 0, true, v.seg[:v.cut])),
			drop(Inside, "the rest", frag4(Inside, cust, approved, layers.IPProtocolTCP, v.id, v.cut, false, v.seg[v.cut:])))
	}

	q := c.port()
	t6 := segment(ip6(cust6, approved6, layers.IPProtocolTCP), tcpSeg(q, webPort, isn(q), 0, syn, nil))
	c.add("frag6-first-without-upper-layer", "fragment-tiny",
		drop(Inside, "first fragment holding only a destination-options header", frag6(Inside, cust6, approved6,
			layers.IPProtocolIPv6Destination, 0x6201, 0, true, opts(layers.IPProtocolTCP))),
		drop(Inside, "the rest: a SYN to [2001:db8:aa::7]:443", frag6(Inside, cust6, approved6,
			layers.IPProtocolIPv6Destination, 0x6201, 8, false, t6)))
	c.add("frag6-tiny-first", "fragment-tiny",
		drop(Inside, "first fragment with 8 bytes of a TCP header to [2001:db8:aa::7]:443", frag6(Inside, cust6, approved6,
			layers.IPProtocolTCP, 0x6202, 0, true, t6[:8])),
		drop(Inside, "the rest", frag6(Inside, cust6, approved6, layers.IPProtocolTCP, 0x6202, 8, false, t6[8:])))
}

// legitFragments: well-formed fragments of approved datagrams, in order.
func (c *corpus) legitFragments() {
	p := c.port()
	out := segment(ip4(cust, approved, layers.IPProtocolUDP), udpSeg(p, webPort, filler(2000)))
	back := segment(ip4(approved, cust, layers.IPProtocolUDP), udpSeg(webPort, p, filler(2000)))
	c.add("frag4-approved-udp", "legit",
		pass(Inside, "UDP to 198.51.100.7:443, first fragment (1,480 bytes)", frag4(Inside, cust, approved, layers.IPProtocolUDP, 0x4301, 0, true, out[:1480])),
		pass(Inside, "UDP to 198.51.100.7:443, last fragment", frag4(Inside, cust, approved, layers.IPProtocolUDP, 0x4301, 1480, false, out[1480:])),
		pass(Outside, "UDP from 198.51.100.7:443, first fragment", frag4(Outside, approved, cust, layers.IPProtocolUDP, 0x9301, 0, true, back[:1480])),
		pass(Outside, "UDP from 198.51.100.7:443, last fragment", frag4(Outside, approved, cust, layers.IPProtocolUDP, 0x9301, 1480, false, back[1480:])))
	q := c.port()
	u := segment(ip6(cust6, approved6, layers.IPProtocolUDP), udpSeg(q, webPort, filler(2000)))
	c.add("frag6-approved-udp", "legit",
		pass(Inside, "UDP to [2001:db8:aa::7]:443, first fragment (1,448 bytes)", frag6(Inside, cust6, approved6, layers.IPProtocolUDP, 0x6301, 0, true, u[:1448])),
		pass(Inside, "UDP to [2001:db8:aa::7]:443, last fragment", frag6(Inside, cust6, approved6, layers.IPProtocolUDP, 0x6301, 1448, false, u[1448:])))
}

// extHeaders: IPv6 extension-header chains are bounded, in order, and
// unknown headers are judged by the policy default.
func (c *corpus) extHeaders() {
	udp := func(dst string) []byte {
		return segment(ip6(cust6, dst, layers.IPProtocolUDP), udpSeg(c.port(), webPort, filler(200)))
	}
	var ten []byte
	for range 9 {
		ten = append(ten, opts(layers.IPProtocolIPv6Destination)...)
	}
	tenTCP := append(append([]byte(nil), ten...), opts(layers.IPProtocolTCP)...)
	ten = append(ten, opts(layers.IPProtocolUDP)...)
	q := c.port()
	c.add("ipv6-ten-destination-options", "ext-header",
		drop(Inside, "ten destination-options headers, then UDP to [2001:db8:aa::7]:443",
			chain(Inside, cust6, approved6, layers.IPProtocolIPv6Destination, ten, udp(approved6))),
		drop(Inside, "ten destination-options headers, then a SYN to [2001:db8:aa::7]:443",
			chain(Inside, cust6, approved6, layers.IPProtocolIPv6Destination, tenTCP,
				segment(ip6(cust6, approved6, layers.IPProtocolTCP), synTo(q, webPort)))))
	c.add("ipv6-hop-by-hop-not-first", "ext-header",
		drop(Inside, "destination options, then hop-by-hop (allowed only first), then UDP to [2001:db8:aa::7]:443",
			chain(Inside, cust6, approved6, layers.IPProtocolIPv6Destination,
				append(opts(layers.IPProtocolIPv6HopByHop), opts(layers.IPProtocolUDP)...), udp(approved6))))
	c.addOpaque("ipv6-unknown-extension", "ext-header",
		drop(Inside, "header 253 (experimental) in the extension format, then UDP to [2001:db8:aa::7]:443",
			chain(Inside, cust6, approved6, 253, opts(layers.IPProtocolUDP), udp(approved6))),
		drop(Inside, "hop-by-hop, then header 254 (experimental), then UDP to [2001:db8:aa::7]:443",
			chain(Inside, cust6, approved6, layers.IPProtocolIPv6HopByHop, append(opts(254), opts(layers.IPProtocolUDP)...), udp(approved6))))
	// A routing header's last segment is the real destination: the packet
	// to the approved 2001:db8:aa::7 is on its way to 2001:db8:bb::7.
	rh0 := append([]byte{byte(layers.IPProtocolUDP), 2, 0, 1, 0, 0, 0, 0}, a16(foreign6)...)
	srh := append([]byte{byte(layers.IPProtocolUDP), 4, 4, 1, 1, 0, 0, 0}, a16(foreign6)...)
	srh = append(srh, a16(approved6)...)
	c.add("ipv6-routing-header-hides-destination", "ext-header",
		drop(Inside, "type 0 routing header via [2001:db8:aa::7] to [2001:db8:bb::7]:443",
			chain(Inside, cust6, approved6, layers.IPProtocolIPv6Routing, rh0, udp(foreign6))),
		drop(Inside, "segment routing header via [2001:db8:aa::7] to [2001:db8:bb::7]:443",
			chain(Inside, cust6, approved6, layers.IPProtocolIPv6Routing, srh, udp(foreign6))))
	p := c.port()
	c.add("ipv6-one-destination-options", "legit",
		pass(Inside, "one destination-options header, then UDP to [2001:db8:aa::7]:443",
			chain(Inside, cust6, approved6, layers.IPProtocolIPv6Destination, opts(layers.IPProtocolUDP),
				segment(ip6(cust6, approved6, layers.IPProtocolUDP), udpSeg(p, webPort, filler(200))))),
		pass(Outside, "the reply, with one destination-options header",
			chain(Outside, approved6, cust6, layers.IPProtocolIPv6Destination, opts(layers.IPProtocolUDP),
				segment(ip6(approved6, cust6, layers.IPProtocolUDP), udpSeg(webPort, p, filler(200))))))
}
