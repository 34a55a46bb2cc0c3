package redteam

import (
	"fmt"
	"math/rand/v2"
	"net"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// IP protocol numbers gopacket has no constant for.
const (
	protoOSPF = layers.IPProtocol(89)
	protoVRRP = layers.IPProtocol(112)
)

var (
	vrrpMAC     = net.HardwareAddr{0x00, 0x00, 0x5e, 0x00, 0x01, 0x01} // virtual router 1
	routerAlert = layers.IPv4Option{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}
	zeroMAC     = net.HardwareAddr{0, 0, 0, 0, 0, 0}
)

// garbage is n deterministic random bytes.
func garbage(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 11))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// arpBody is an ARP message with any field values (RFC 826).
func arpBody(htype, ptype uint16, hlen, plen uint8, op uint16, sha, spa, tha, tpa []byte) []byte {
	b := be16(be16(nil, htype), ptype)
	b = append(b, hlen, plen)
	b = be16(b, op)
	for _, a := range [][]byte{sha, spa, tha, tpa} {
		b = append(b, a...)
	}
	return b
}

// arp is a well-formed Ethernet/IPv4 ARP message.
func arp(op uint16, sha net.HardwareAddr, spa string, tha net.HardwareAddr, tpa string) *layers.ARP {
	return &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: op, SourceHwAddress: sha, SourceProtAddress: a4(spa), DstHwAddress: tha, DstProtAddress: a4(tpa)}
}

// lldp is a well-formed LLDPDU from mac: chassis, port, TTL, system name,
// end.
func lldp(mac net.HardwareAddr, port string) *layers.LinkLayerDiscovery {
	return &layers.LinkLayerDiscovery{
		ChassisID: layers.LLDPChassisID{Subtype: layers.LLDPChassisIDSubTypeMACAddr, ID: mac},
		PortID:    layers.LLDPPortID{Subtype: layers.LLDPPortIDSubtypeIfaceName, ID: []byte(port)},
		TTL:       120,
		Values:    []layers.LinkLayerDiscoveryValue{{Type: layers.LLDPTLVSysName, Length: 7, Value: []byte("border1")}},
	}
}

func lldpFrame(side Side, tg tags, dst net.HardwareAddr) []byte {
	src, _ := macs(side, nil)
	return serialize(nil, append(link(side, tg, dst, layers.EthernetTypeLinkLayerDiscovery), lldp(src, "eth1"))...)
}

// llcFrame is an 802.3 frame (length, not EtherType) to dst.
func llcFrame(side Side, dst net.HardwareAddr, ls ...gopacket.SerializableLayer) []byte {
	return to(side, untagged, dst, ls...)
}

var stpLLC = &layers.LLC{DSAP: 0x42, SSAP: 0x42, Control: 0x03}

// nd is an IPv6 neighbour-discovery (or other ICMPv6) packet: hop limit
// 255 as RFC 4861 requires, body after the ICMPv6 header.
func nd(src, dst string, typ uint8, hop uint8, body gopacket.SerializableLayer) layerList {
	h := ip6(src, dst, layers.IPProtocolICMPv6)
	h.HopLimit = hop
	return layerList{h, &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}, body}
}

// solicited is the solicited-node multicast address of a.
func solicited(a string) string {
	ip := net.ParseIP(a)
	return net.IP{0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, ip[13], ip[14], ip[15]}.String()
}

// solicit is a neighbour solicitation for target from mac.
func solicit(target string, mac net.HardwareAddr) *layers.ICMPv6NeighborSolicitation {
	return &layers.ICMPv6NeighborSolicitation{TargetAddress: net.ParseIP(target), Options: layers.ICMPv6Options{slla(mac)}}
}

// advertise is a solicited, overriding neighbour advertisement of target
// at mac.
func advertise(target string, mac net.HardwareAddr) *layers.ICMPv6NeighborAdvertisement {
	return &layers.ICMPv6NeighborAdvertisement{Flags: 0x60, TargetAddress: net.ParseIP(target),
		Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: mac}}}
}

// resolution is address resolution across the link: src on side
// solicits target, which answers from the other side.
func resolution(side Side, src, target string) []Frame {
	mac, peer := macs(side, nil)
	return []Frame{
		pass(side, fmt.Sprintf("NS for %s from %s with source link-layer address", target, src),
			to(side, untagged, mcastMAC(solicited(target)), nd(src, solicited(target), 135, 255, solicit(target, mac))...)),
		pass(side.other(), fmt.Sprintf("solicited NA for %s with target link-layer address", target),
			frame(side.other(), nd(target, src, 136, 255, advertise(target, peer))...)),
	}
}

func slla(mac net.HardwareAddr) layers.ICMPv6Option {
	return layers.ICMPv6Option{Type: layers.ICMPv6OptSourceAddress, Data: mac}
}

// ipv4Link is an IPv4 header of a routing or group protocol: TTL ttl,
// precedence internetwork control, no DF, options opts.
func ipv4Link(src, dst string, proto layers.IPProtocol, ttl uint8, opts ...layers.IPv4Option) *layers.IPv4 {
	h := ip4(src, dst, proto)
	h.TTL, h.TOS, h.Flags, h.Options = ttl, 0xc0, 0, opts
	return h
}

// ospf2Hello is an OSPFv2 Hello (RFC 2328 A.3.2) from router id rid.
func ospf2Hello(rid string) []byte {
	b := []byte{2, 1, 0, 44}
	b = append(b, a4(rid)...)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0) // area 0, checksum, autype 0
	b = append(b, make([]byte, 8)...)     // authentication
	b = append(b, 255, 255, 255, 0)
	b = append(b, 0, 10, 0x02, 1, 0, 0, 0, 40) // hello 10 s, E bit, priority 1, dead 40 s
	b = append(b, make([]byte, 8)...)          // no DR, no BDR yet
	c := inetSum(0, b)
	b[12], b[13] = byte(c>>8), byte(c)
	return b
}

// ospf3Hello is an OSPFv3 Hello (RFC 5340 A.3.2) from src to dst.
func ospf3Hello(rid, src, dst string) []byte {
	b := []byte{3, 1, 0, 36}
	b = append(b, a4(rid)...)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0)                        // area 0, checksum, instance 0
	b = append(b, 0, 0, 0, 5, 1, 0, 0, 0x13, 0, 10, 0, 40)       // interface 5, priority 1, V6|E|R, 10 s, 40 s
	b = append(b, make([]byte, 8)...)                            // no DR, no BDR
	c := inetSum(pseudo6(src, dst, uint8(protoOSPF), len(b)), b) // checksum over the pseudo-header
	b[12], b[13] = byte(c>>8), byte(c)
	return b
}

// vrrp2 is a VRRPv2 advertisement (RFC 3768) for virtual router 1.
func vrrp2(vip string) []byte {
	b := []byte{0x21, 1, 100, 1, 0, 1, 0, 0}
	b = append(b, a4(vip)...)
	b = append(b, make([]byte, 8)...)
	c := inetSum(0, b)
	b[6], b[7] = byte(c>>8), byte(c)
	return b
}

// igmp2 is an IGMPv2 message (RFC 2236) of typ about group.
func igmp2(typ byte, group string) []byte {
	b := append([]byte{typ, 0, 0, 0}, a4(group)...)
	c := inetSum(0, b)
	b[2], b[3] = byte(c>>8), byte(c)
	return b
}

// igmp3Report is an IGMPv3 report (RFC 3376 4.2) joining groups.
func igmp3Report(groups ...string) []byte {
	b := []byte{0x22, 0, 0, 0, 0, 0}
	b = be16(b, uint16(len(groups)))
	for _, g := range groups {
		b = append(b, 4, 0, 0, 0) // CHANGE_TO_EXCLUDE_MODE, no sources
		b = append(b, a4(g)...)
	}
	c := inetSum(0, b)
	b[2], b[3] = byte(c>>8), byte(c)
	return b
}

func (c *corpus) linkControl() {
	c.covertLinkControl()
	c.linkScoped()
	c.unspecifiedSource()
	c.legitLinkControl()
}

func (c *corpus) covertLinkControl() {
	arpReq := arpBody(1, 0x0800, 6, 4, 1, insideMAC, a4(cust), zeroMAC, a4(approved))
	c.add("arp-oversize-garbage", "covert-link-control",
		drop(Inside, "1,400-byte frame of EtherType ARP, random content, broadcast",
			raw(Inside, untagged, broadcast, layers.EthernetTypeARP, garbage(1386, 1))),
		drop(Outside, "1,400-byte frame of EtherType ARP, random content, unicast",
			raw(Outside, untagged, nil, layers.EthernetTypeARP, garbage(1386, 2))),
		drop(Inside, "1,400-byte frame of EtherType ARP, random content (802.1Q)",
			raw(Inside, dot1q, broadcast, layers.EthernetTypeARP, garbage(1382, 3))),
		drop(Inside, "an ARP request followed by 1,358 bytes of payload",
			raw(Inside, untagged, broadcast, layers.EthernetTypeARP, append(append([]byte(nil), arpReq...), filler(1358)...))))
	c.add("arp-malformed", "covert-link-control",
		drop(Inside, "ARP with hardware length 16", raw(Inside, untagged, broadcast, layers.EthernetTypeARP,
			arpBody(1, 0x0800, 16, 4, 1, filler(16), a4(cust), make([]byte, 16), a4(approved)))),
		drop(Inside, "ARP with protocol length 16 for IPv4", raw(Inside, untagged, broadcast, layers.EthernetTypeARP,
			arpBody(1, 0x0800, 6, 16, 1, insideMAC, filler(16), zeroMAC, make([]byte, 16)))),
		drop(Outside, "ARP with hardware type 0x00ff", raw(Outside, untagged, broadcast, layers.EthernetTypeARP,
			arpBody(0x00ff, 0x0800, 6, 4, 1, outsideMAC, a4(approved), zeroMAC, a4(cust)))),
		drop(Outside, "ARP with protocol type IPv6", raw(Outside, untagged, broadcast, layers.EthernetTypeARP,
			arpBody(1, 0x86dd, 6, 16, 1, outsideMAC, a16(approved6), zeroMAC, a16(cust6)))),
		drop(Inside, "ARP with hardware length 255 and protocol length 255", raw(Inside, untagged, broadcast, layers.EthernetTypeARP,
			arpBody(1, 0x0800, 255, 255, 1, filler(255), filler(255), filler(255), filler(255)))))
	c.add("arp-padded", "covert-link-control",
		drop(Inside, "an ARP request zero-padded to 1,000 bytes",
			padTo(frame(Inside, arp(layers.ARPRequest, insideMAC, cust, zeroMAC, approved)), 1000)),
		drop(Outside, "an ARP reply padded to 1,000 bytes with payload",
			append(frame(Outside, arp(layers.ARPReply, outsideMAC, approved, insideMAC, cust))[:42:42], filler(958)...)))

	c.addOpaque("lldp-blob", "covert-link-control",
		drop(Inside, "1,000 bytes of EtherType LLDP with no valid TLV",
			raw(Inside, untagged, lldpGroup, layers.EthernetTypeLinkLayerDiscovery, garbage(986, 4))),
		drop(Outside, "an LLDP chassis TLV then 900 bytes of junk",
			raw(Outside, untagged, lldpGroup, layers.EthernetTypeLinkLayerDiscovery,
				append([]byte{0x02, 0x07, 0x04, 0x02, 0, 0, 0, 0x02, 0x07}, garbage(900, 5)...))))
	c.add("lldp-to-non-lldp-group", "covert-link-control",
		drop(Inside, "a well-formed LLDPDU to the broadcast address", lldpFrame(Inside, untagged, broadcast)),
		drop(Outside, "a well-formed LLDPDU to a unicast address", lldpFrame(Outside, untagged, nil)),
		drop(Inside, "a well-formed LLDPDU to an IP multicast group address", lldpFrame(Inside, untagged, mcastMAC("224.0.0.1"))))
	snapIP := serialize(nil, pkt(cust, foreign, udpSeg(c.port(), 5000, filler(400)))...)
	c.addOpaque("llc-snap-to-lldp-group", "covert-link-control",
		drop(Inside, "LLC/SNAP carrying IPv4 UDP to 203.0.113.7, sent to the LLDP group address",
			llcFrame(Inside, lldpGroup, &layers.LLC{DSAP: 0xaa, SSAP: 0xaa, Control: 0x03},
				&layers.SNAP{OrganizationalCode: []byte{0, 0, 0}, Type: layers.EthernetTypeIPv4}, gopacket.Payload(snapIP))),
		drop(Outside, "LLC/SNAP of an IEEE OUI with 1,000 bytes of payload, sent to the LLDP group address",
			llcFrame(Outside, lldpGroup, &layers.LLC{DSAP: 0xaa, SSAP: 0xaa, Control: 0x03},
				&layers.SNAP{OrganizationalCode: []byte{0x00, 0x80, 0xc2}, Type: 0x0007}, gopacket.Payload(filler(1000)))))
	c.addOpaque("stp-bad-bpdu", "covert-link-control",
		drop(Inside, "an STP configuration BPDU header followed by 1,000 bytes",
			llcFrame(Inside, stpGroup, stpLLC, gopacket.Payload(append([]byte{0, 0, 0, 0}, filler(996)...)))),
		drop(Outside, "a BPDU of unknown type 0x55",
			llcFrame(Outside, stpGroup, stpLLC, gopacket.Payload(append([]byte{0, 0, 0, 0x55}, garbage(31, 6)...)))),
		drop(Inside, "a configuration BPDU cut to 10 bytes",
			llcFrame(Inside, stpGroup, stpLLC, gopacket.Payload([]byte{0, 0, 0, 0, 0, 0x80, 0, 2, 0, 0}))))
	c.addOpaque("slow-protocols-oversize", "covert-link-control",
		drop(Inside, "an LACP-subtype slow-protocols frame of 1,400 bytes",
			raw(Inside, untagged, slowGroup, 0x8809, append([]byte{0x01, 0x01}, filler(1384)...))))

	big := append(be32(nil, 0), a16(cust6)...) // reserved, target
	big = append(big, 1, 1)
	big = append(big, outsideMAC...)
	big = append(big, 200, 144) // unknown option 200, 1,152 bytes
	big = append(big, filler(1150)...)
	zeroOpt := append(be32(nil, 0), a16(cust6)...)
	zeroOpt = append(zeroOpt, 1, 0) // an option of length 0: RFC 4861 says discard
	zeroOpt = append(zeroOpt, filler(1000)...)
	c.addOpaque("nd-oversize-from-foreign", "covert-link-control",
		drop(Outside, "1,200-byte unicast NS from 2001:db8:bb::7 with an unknown 1,152-byte option",
			frame(Outside, nd(foreign6, cust6, 135, 255, gopacket.Payload(big))...)),
		drop(Outside, "unicast NS from 2001:db8:bb::7 with a zero-length option then 1,000 bytes",
			frame(Outside, nd(foreign6, cust6, 135, 255, gopacket.Payload(zeroOpt))...)),
		drop(Inside, "1,200-byte NA from fd00:1::2 with an unknown 1,152-byte option",
			frame(Inside, nd(cust6, foreign6, 136, 255, gopacket.Payload(big))...)))
	c.add("nd-hop-limit-not-255", "covert-link-control",
		drop(Outside, "NS with hop limit 64", frame(Outside, nd("fe80::7", solicited(cust6), 135, 64, solicit(cust6, outsideMAC))...)),
		drop(Inside, "NA with hop limit 64", frame(Inside, nd(cust6, "fe80::7", 136, 64, advertise(cust6, insideMAC))...)))
	c.add("nd-ra-not-link-local", "covert-link-control",
		drop(Outside, "RA from the global address 2001:db8:bb::1", frame(Outside, nd("2001:db8:bb::1", "ff02::1", 134, 255,
			ra(outsideMAC, "2001:db8:bb::"))...)),
		drop(Outside, "RA from fe80::1 with hop limit 64", frame(Outside, nd("fe80::1", "ff02::1", 134, 64,
			ra(outsideMAC, "2001:db8:bb::"))...)))
}

// ra is a router advertisement with source link-layer, MTU and prefix
// options.
func ra(mac net.HardwareAddr, prefix string) *layers.ICMPv6RouterAdvertisement {
	pi := []byte{64, 0xc0} // /64, on-link and autonomous
	pi = be32(be32(pi, 2592000), 604800)
	pi = append(be32(pi, 0), a16(prefix)...)
	return &layers.ICMPv6RouterAdvertisement{HopLimit: 64, RouterLifetime: 1800, Options: layers.ICMPv6Options{
		slla(mac),
		{Type: layers.ICMPv6OptMTU, Data: be32([]byte{0, 0}, 1500)},
		{Type: layers.ICMPv6OptPrefixInfo, Data: pi},
	}}
}

func (c *corpus) linkScoped() {
	udpTo := func(side Side, tg tags, src, dst string, sport, dport uint16, ttl uint8, n int) []byte {
		h := ipTo(src, dst, layers.IPProtocolUDP)
		switch h := h.(type) {
		case *layers.IPv4:
			h.TTL, h.Flags = ttl, 0
		case *layers.IPv6:
			h.HopLimit = ttl
		}
		dmac := broadcast
		if dst != "255.255.255.255" {
			dmac = mcastMAC(dst)
		}
		return to(side, tg, dmac, h, udpSeg(sport, dport, filler(n)))
	}
	c.add("link-scoped-multicast", "link-scoped",
		drop(Inside, "1,200 bytes of UDP from 10.1.0.2 to 224.0.0.99", udpTo(Inside, untagged, cust, "224.0.0.99", c.port(), 9999, 1, 1172)),
		drop(Inside, "1,200 bytes of UDP from 10.1.0.2 to 224.0.0.99 (802.1Q)", udpTo(Inside, dot1q, cust, "224.0.0.99", c.port(), 9999, 1, 1172)),
		drop(Outside, "1,200 bytes of UDP from 198.51.100.7 to 224.0.0.99", udpTo(Outside, untagged, approved, "224.0.0.99", c.port(), 443, 1, 1172)),
		drop(Inside, "1,200 bytes of mDNS-port UDP to 224.0.0.251", udpTo(Inside, untagged, cust, "224.0.0.251", 5353, 5353, 255, 1172)),
		drop(Inside, "1,200 bytes of UDP from fe80::2 to ff02::99", udpTo(Inside, untagged, "fe80::2", "ff02::99", c.port(), 9999, 1, 1152)),
		drop(Inside, "1,200 bytes of UDP from fe80::2 to ff02::1", udpTo(Inside, qinq, "fe80::2", "ff02::1", c.port(), 9999, 1, 1152)),
		drop(Outside, "1,200 bytes of mDNS-port UDP from fe80::7 to ff02::fb", udpTo(Outside, untagged, "fe80::7", "ff02::fb", 5353, 5353, 255, 1152)))
	c.add("broadcast-across-the-link", "link-scoped",
		drop(Outside, "1,200 bytes of UDP from 203.0.113.7 to 255.255.255.255", udpTo(Outside, untagged, foreign, "255.255.255.255", 5000, 5000, 64, 1172)),
		drop(Outside, "UDP from the approved 198.51.100.7:443 to 255.255.255.255:443", udpTo(Outside, untagged, approved, "255.255.255.255", 443, 443, 64, 1172)),
		drop(Inside, "1,200 bytes of UDP from 10.1.0.2 to 255.255.255.255", udpTo(Inside, dot1q, cust, "255.255.255.255", c.port(), 5000, 64, 1172)))
}

func (c *corpus) unspecifiedSource() {
	p := c.port()
	c.add("unspecified-source-tcp", "unspecified-source",
		drop(Inside, "SYN with 500 bytes of payload from 0.0.0.0 to 198.51.100.7:443",
			frame(Inside, ip4("0.0.0.0", approved, layers.IPProtocolTCP), tcpSeg(p, webPort, isn(p), 0, syn, filler(500)))),
		drop(Inside, "SYN with 500 bytes of payload from 0.0.0.0 to 10.1.0.3:443",
			frame(Inside, ip4("0.0.0.0", cust2, layers.IPProtocolTCP), tcpSeg(p, webPort, isn(p), 0, syn, filler(500)))),
		drop(Outside, "SYN with 500 bytes of payload from 0.0.0.0 to 10.1.0.2:443",
			frame(Outside, ip4("0.0.0.0", cust, layers.IPProtocolTCP), tcpSeg(p, webPort, isn(p), 0, syn, filler(500)))))
	c.add("unspecified-source-ipv6", "unspecified-source",
		drop(Inside, "UDP from :: to [2001:db8:aa::7]:443", frame(Inside, ip6("::", approved6, layers.IPProtocolUDP), udpSeg(c.port(), webPort, filler(500)))),
		drop(Inside, "UDP from :: to [fd00:1::3]:443", frame(Inside, ip6("::", cust26, layers.IPProtocolUDP), udpSeg(c.port(), webPort, filler(500)))),
		drop(Outside, "UDP from :: to [fd00:1::2]:443", frame(Outside, ip6("::", cust6, layers.IPProtocolUDP), udpSeg(c.port(), webPort, filler(500)))))
	dhcp := ip4("0.0.0.0", "255.255.255.255", layers.IPProtocolUDP)
	dhcp.Flags = 0
	ns := append(be32(nil, 0), a16(cust26)...)
	ns = append(ns, 200, 126) // an unknown option of 1,008 bytes
	ns = append(ns, filler(1006)...)
	c.addOpaque("unspecified-source-disguised", "unspecified-source",
		drop(Inside, "1,000 bytes that are not BOOTP, from 0.0.0.0:68 to 255.255.255.255:67",
			to(Inside, untagged, broadcast, dhcp, udpSeg(68, 67, garbage(1000, 7)))),
		drop(Inside, "NS from :: to a unicast address with a 1,008-byte option",
			frame(Inside, nd("::", cust26, 135, 255, gopacket.Payload(ns))...)))
}

func (c *corpus) legitLinkControl() {
	c.add("arp-request-reply", "legit",
		pass(Inside, "ARP who-has 198.51.100.7 tell 10.1.0.2 (60 bytes)",
			to(Inside, untagged, broadcast, arp(layers.ARPRequest, insideMAC, cust, zeroMAC, approved))),
		pass(Outside, "ARP 198.51.100.7 is-at (60 bytes)",
			frame(Outside, arp(layers.ARPReply, outsideMAC, approved, insideMAC, cust))),
		pass(Outside, "ARP who-has 10.1.0.2 tell 198.51.100.7 (60 bytes)",
			to(Outside, untagged, broadcast, arp(layers.ARPRequest, outsideMAC, approved, zeroMAC, cust))),
		pass(Inside, "ARP 10.1.0.2 is-at (60 bytes)",
			frame(Inside, arp(layers.ARPReply, insideMAC, cust, outsideMAC, approved))))
	c.add("arp-request-reply-dot1q", "legit",
		pass(Inside, "ARP who-has 198.51.100.7 tell 10.1.0.2 (802.1Q, 64 bytes)",
			padTo(to(Inside, dot1q, broadcast, arp(layers.ARPRequest, insideMAC, cust, zeroMAC, approved)), 64)),
		pass(Outside, "ARP 198.51.100.7 is-at (802.1Q, 64 bytes)",
			padTo(tagged(Outside, dot1q, arp(layers.ARPReply, outsideMAC, approved, insideMAC, cust)), 64)))
	c.add("nd-ns-na", "legit", append(append(resolution(Inside, "fe80::2", approved6), resolution(Outside, "fe80::7", cust6)...),
		pass(Inside, "duplicate address detection: NS from :: for fd00:1::2, no options",
			to(Inside, untagged, mcastMAC(solicited(cust6)), nd("::", solicited(cust6), 135, 255,
				&layers.ICMPv6NeighborSolicitation{TargetAddress: net.ParseIP(cust6)})...)))...)
	c.add("nd-router-discovery", "legit",
		pass(Outside, "RS from fe80::7 to ff02::2", to(Outside, untagged, mcastMAC("ff02::2"), nd("fe80::7", "ff02::2", 133, 255,
			&layers.ICMPv6RouterSolicitation{Options: layers.ICMPv6Options{slla(outsideMAC)}})...)),
		pass(Inside, "RA from fe80::1 with prefix fd00:1::/64", to(Inside, untagged, mcastMAC("ff02::1"), nd("fe80::1", "ff02::1", 134, 255,
			ra(insideMAC, "fd00:1::"))...)))
	c.add("lldp", "legit",
		pass(Inside, "LLDPDU (chassis, port, TTL, system name, end) to 01:80:c2:00:00:0e", lldpFrame(Inside, untagged, lldpGroup)),
		pass(Outside, "LLDPDU from the foreign router to 01:80:c2:00:00:0e", lldpFrame(Outside, untagged, lldpGroup)))
	rstp := []byte{0, 0, 2, 2, 0x3c, 0x80, 0, 0x02, 0, 0, 0, 0x02, 0x07, 0, 0, 0, 0, 0x80, 0, 0x02, 0, 0, 0, 0x02, 0x07,
		0x80, 0x01, 0, 0, 0x14, 0, 0x02, 0, 0x0f, 0, 0} // RSTP BPDU, version 1 length 0
	c.add("stp", "legit",
		pass(Inside, "STP configuration BPDU to 01:80:c2:00:00:00", llcFrame(Inside, stpGroup, stpLLC,
			&layers.STP{Type: 0, RouteID: layers.STPSwitchID{Priority: 32768, HwAddr: insideMAC}, BridgeID: layers.STPSwitchID{Priority: 32768, HwAddr: insideMAC},
				PortID: 0x8001, MaxAge: 20 << 8, HelloTime: 2 << 8, FDelay: 15 << 8})),
		pass(Outside, "RSTP BPDU to 01:80:c2:00:00:00", llcFrame(Outside, stpGroup, stpLLC, gopacket.Payload(rstp))))
	ospf6 := ip6("fe80::1", "ff02::5", protoOSPF)
	ospf6.HopLimit, ospf6.TrafficClass = 1, 0xc0
	c.add("ospf-hello", "legit",
		pass(Inside, "OSPFv2 Hello from 10.1.0.1 to 224.0.0.5, TTL 1", to(Inside, untagged, mcastMAC("224.0.0.5"),
			ipv4Link("10.1.0.1", "224.0.0.5", protoOSPF, 1), gopacket.Payload(ospf2Hello("10.1.0.1")))),
		pass(Outside, "OSPFv2 Hello from 198.51.100.1 to 224.0.0.5, TTL 1", to(Outside, untagged, mcastMAC("224.0.0.5"),
			ipv4Link("198.51.100.1", "224.0.0.5", protoOSPF, 1), gopacket.Payload(ospf2Hello("198.51.100.1")))),
		pass(Inside, "OSPFv3 Hello from fe80::1 to ff02::5, hop limit 1", to(Inside, untagged, mcastMAC("ff02::5"),
			ospf6, gopacket.Payload(ospf3Hello("10.1.0.1", "fe80::1", "ff02::5")))))
	vr := serialize(nil, &layers.Ethernet{SrcMAC: vrrpMAC, DstMAC: mcastMAC("224.0.0.18"), EthernetType: layers.EthernetTypeIPv4},
		ipv4Link("10.1.0.1", "224.0.0.18", protoVRRP, 255), gopacket.Payload(vrrp2("10.1.0.254")))
	c.add("vrrp", "legit", pass(Inside, "VRRPv2 advertisement from 10.1.0.1 to 224.0.0.18, TTL 255", vr))
	c.add("igmp", "legit",
		pass(Inside, "IGMPv3 report from 10.1.0.2 to 224.0.0.22", to(Inside, untagged, mcastMAC("224.0.0.22"),
			ipv4Link(cust, "224.0.0.22", layers.IPProtocolIGMP, 1, routerAlert), gopacket.Payload(igmp3Report("224.0.0.251")))),
		pass(Inside, "IGMPv2 report for 224.0.0.251 to 224.0.0.251", to(Inside, untagged, mcastMAC("224.0.0.251"),
			ipv4Link(cust, "224.0.0.251", layers.IPProtocolIGMP, 1, routerAlert), gopacket.Payload(igmp2(0x16, "224.0.0.251")))),
		pass(Inside, "IGMPv3 report from 0.0.0.0 to 224.0.0.22", to(Inside, untagged, mcastMAC("224.0.0.22"),
			ipv4Link("0.0.0.0", "224.0.0.22", layers.IPProtocolIGMP, 1, routerAlert), gopacket.Payload(igmp3Report("224.0.0.251")))),
		pass(Inside, "IGMPv2 leave for 224.0.0.251 to 224.0.0.2", to(Inside, untagged, mcastMAC("224.0.0.2"),
			ipv4Link(cust, "224.0.0.2", layers.IPProtocolIGMP, 1, routerAlert), gopacket.Payload(igmp2(0x17, "224.0.0.251")))))
	mld := func(src string) []byte {
		h := ip6(src, "ff02::16", layers.IPProtocolIPv6HopByHop)
		h.HopLimit = 1
		// Router alert (MLD), then a PadN of 2 to 8 bytes: gopacket's own
		// padding rounds wrong.
		h.HopByHop = &layers.IPv6HopByHop{Options: []*layers.IPv6HopByHopOption{
			{OptionType: 5, OptionLength: 2, OptionData: []byte{0, 0}}, {OptionType: 1, OptionLength: 0}}}
		h.HopByHop.NextHeader = layers.IPProtocolICMPv6
		return to(Inside, untagged, mcastMAC("ff02::16"), h,
			&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeMLDv2MulticastListenerReportMessageV2, 0)},
			&layers.MLDv2MulticastListenerReportMessage{MulticastAddressRecords: []layers.MLDv2MulticastAddressRecord{
				{RecordType: layers.MLDv2MulticastAddressRecordTypeChangeToExcludeMode, MulticastAddress: net.ParseIP("ff02::1:ff00:2")}}})
	}
	c.add("mld-report", "legit",
		pass(Inside, "MLDv2 report from fe80::2 to ff02::16 with a router-alert hop-by-hop header", mld("fe80::2")),
		pass(Inside, "MLDv2 report from :: (before an address) to ff02::16", mld("::")))
}
