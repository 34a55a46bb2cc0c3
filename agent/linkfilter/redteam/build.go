package redteam

import (
	"encoding/binary"
	"fmt"
	"net"
	"strconv"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Addresses of the border link the cases are set on: a customer and a
// second domestic host, an approved and an unapproved foreign host in each
// family, and the two approved tunnel endpoints abroad.
const (
	cust      = "10.1.0.2"
	cust2     = "10.1.0.3" // domestic, at the far end of domestic tunnels
	approved  = "198.51.100.7"
	foreign   = "203.0.113.7" // not approved
	vxPeer    = "192.0.2.10"  // LA-VX: udp/4789
	tunPeer   = "192.0.2.20"  // LA-IPIP: ip/4, ip/41, gre
	cust6     = "fd00:1::2"
	cust26    = "fd00:1::3"
	approved6 = "2001:db8:aa::7"
	foreign6  = "2001:db8:bb::7"
	overlay   = "10.1.5.2" // a customer address inside a tunnel
	overlay2  = "10.1.6.3"
	webPort   = 443
)

var (
	insideMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0x01, 0x02} // the customer's edge
	outsideMAC = net.HardwareAddr{0x02, 0, 0, 0, 0x02, 0x07} // the foreign router
	innerA     = net.HardwareAddr{0x02, 0, 0, 0, 0x05, 0x02} // bridged inside a tunnel
	innerB     = net.HardwareAddr{0x02, 0, 0, 0, 0x05, 0x03}
	broadcast  = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	lldpGroup  = net.HardwareAddr{0x01, 0x80, 0xc2, 0, 0, 0x0e} // nearest bridge
	stpGroup   = net.HardwareAddr{0x01, 0x80, 0xc2, 0, 0, 0x00}
	slowGroup  = net.HardwareAddr{0x01, 0x80, 0xc2, 0, 0, 0x02} // LACP, OAM
)

// tags are the VLAN tags a frame carries.
type tags uint8

const (
	untagged tags = iota
	dot1q         // one 802.1Q tag, VLAN 100
	qinq          // an 802.1ad service tag (VLAN 200) over an 802.1Q tag (VLAN 100)
)

var tagNames = [...]string{"", " (802.1Q)", " (QinQ)"}

func (t tags) String() string { return tagNames[t] }

// macs are the source and destination of a frame arriving on side, sent
// to dst (nil: the router across the link).
func macs(side Side, dst net.HardwareAddr) (src, to net.HardwareAddr) {
	src, to = insideMAC, outsideMAC
	if side == Outside {
		src, to = outsideMAC, insideMAC
	}
	if dst != nil {
		to = dst
	}
	return src, to
}

// link is the Ethernet header (and tags) of a frame arriving on side.
// An LLC payload (et == EthernetTypeLLC) gets an 802.3 length field.
func link(side Side, tg tags, dst net.HardwareAddr, et layers.EthernetType) []gopacket.SerializableLayer {
	src, to := macs(side, dst)
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: to, EthernetType: et}
	switch tg {
	case dot1q:
		eth.EthernetType = layers.EthernetTypeDot1Q
		return []gopacket.SerializableLayer{eth, &layers.Dot1Q{VLANIdentifier: 100, Type: et}}
	case qinq:
		eth.EthernetType = layers.EthernetTypeQinQ
		return []gopacket.SerializableLayer{eth,
			&layers.Dot1Q{VLANIdentifier: 200, Type: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: 100, Type: et}}
	}
	return []gopacket.SerializableLayer{eth}
}

// etherTypeOf is the EtherType that announces l.
func etherTypeOf(l gopacket.SerializableLayer) layers.EthernetType {
	switch l.(type) {
	case *layers.IPv4:
		return layers.EthernetTypeIPv4
	case *layers.IPv6:
		return layers.EthernetTypeIPv6
	case *layers.ARP:
		return layers.EthernetTypeARP
	case *layers.MPLS:
		return layers.EthernetTypeMPLSUnicast
	case *layers.PPPoE:
		return layers.EthernetTypePPPoESession
	case *layers.LLC:
		return layers.EthernetTypeLLC
	}
	panic(fmt.Sprintf("redteam: no EtherType for %T", l))
}

// frame is an untagged frame arriving on side across the link, carrying ls.
func frame(side Side, ls ...gopacket.SerializableLayer) []byte {
	return tagged(side, untagged, ls...)
}

// tagged is a frame arriving on side with tags, carrying ls.
func tagged(side Side, tg tags, ls ...gopacket.SerializableLayer) []byte {
	return to(side, tg, nil, ls...)
}

// to is a frame arriving on side with tags, sent to dst, carrying ls.
func to(side Side, tg tags, dst net.HardwareAddr, ls ...gopacket.SerializableLayer) []byte {
	return serialize(nil, append(link(side, tg, dst, etherTypeOf(ls[0])), ls...)...)
}

// raw is a frame whose payload after the EtherType is body as it is.
func raw(side Side, tg tags, dst net.HardwareAddr, et layers.EthernetType, body []byte) []byte {
	return serialize(nil, append(link(side, tg, dst, et), gopacket.Payload(body))...)
}

// checksummed is a layer whose checksum covers a pseudo-header.
type checksummed interface {
	gopacket.SerializableLayer
	SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
}

// serialize writes ls with lengths and checksums filled in; each
// transport header's pseudo-header is the network layer nearest before it
// (nl if there is none in ls). The corpus is fixed, so a layer gopacket
// refuses is a bug in this package: it panics.
func serialize(nl gopacket.NetworkLayer, ls ...gopacket.SerializableLayer) []byte {
	for _, l := range ls {
		switch v := l.(type) {
		case gopacket.NetworkLayer:
			nl = v
		case checksummed:
			if nl != nil {
				if err := v.SetNetworkLayerForChecksum(nl); err != nil {
					panic(err)
				}
			}
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		panic(fmt.Sprintf("redteam: %v", err))
	}
	return append([]byte(nil), buf.Bytes()...)
}

// padTo pads a frame with zeros to n bytes (a switch that adds a tag to a
// minimum-size frame makes it 64 bytes).
func padTo(b []byte, n int) []byte {
	for len(b) < n {
		b = append(b, 0)
	}
	return b
}

// ip4 is an IPv4 header (DF set, TTL 64).
func ip4(src, dst string, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: proto,
		SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
}

// ip6 is an IPv6 header (hop limit 64).
func ip6(src, dst string, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
}

// ipTo is the IP header from src to dst in their family, next being the
// protocol it carries.
func ipTo(src, dst string, next layers.IPProtocol) gopacket.SerializableLayer {
	if net.ParseIP(src).To4() != nil {
		return ip4(src, dst, next)
	}
	return ip6(src, dst, next)
}

// ipType is the EtherType (and GRE protocol type) of an address's family.
func ipType(a string) layers.EthernetType {
	if net.ParseIP(a).To4() != nil {
		return layers.EthernetTypeIPv4
	}
	return layers.EthernetTypeIPv6
}

// ipProto is the IP protocol number that carries an address's family.
func ipProto(a string) layers.IPProtocol {
	if net.ParseIP(a).To4() != nil {
		return layers.IPProtocolIPv4
	}
	return layers.IPProtocolIPv6
}

// carrying is a transport header with its payload, serialized as one
// layer (its checksum covers both).
type carrying struct {
	checksummed
	data []byte
}

func (c carrying) SerializeTo(b gopacket.SerializeBuffer, o gopacket.SerializeOptions) error {
	if len(c.data) > 0 {
		p, err := b.PrependBytes(len(c.data))
		if err != nil {
			return err
		}
		copy(p, c.data)
	}
	return c.checksummed.SerializeTo(b, o)
}

// TCP flags of seg.
type flags uint8

const (
	fin flags = 1 << iota
	syn
	rst
	psh
	ack
)

func (f flags) String() string {
	names := [...]string{"FIN", "SYN", "RST", "PSH", "ACK"}
	s := ""
	for i, n := range names {
		if f&(1<<i) != 0 {
			if s != "" {
				s += "+"
			}
			s += n
		}
	}
	return s
}

// tcpSeg is a TCP segment; SYNs carry an MSS option as real stacks send.
func tcpSeg(sport, dport uint16, seq, ackn uint32, f flags, data []byte) carrying {
	t := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Window: 64240,
		FIN: f&fin != 0, SYN: f&syn != 0, RST: f&rst != 0, PSH: f&psh != 0, ACK: f&ack != 0}
	if f&ack != 0 {
		t.Ack = ackn
	}
	if f&syn != 0 {
		t.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}}
	}
	return carrying{t, data}
}

// synTo is a lone SYN from sport to dport.
func synTo(sport, dport uint16) carrying {
	return tcpSeg(sport, dport, isn(sport), 0, syn, nil)
}

// udpSeg is a UDP datagram.
func udpSeg(sport, dport uint16, data []byte) carrying {
	return carrying{&layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}, data}
}

// isn is a deterministic initial sequence number for an end using port.
func isn(port uint16) uint32 { return 0x1c000000 + uint32(port)*7919 }

// conn plays both ends of one TCP connection, keeping their sequence
// numbers.
type conn struct {
	port [2]uint16 // client's, server's
	next [2]uint32
}

const (
	client = 0
	server = 1
)

func newConn(cport, sport uint16) *conn {
	return &conn{port: [2]uint16{cport, sport}, next: [2]uint32{isn(cport), isn(sport) ^ 0x5a5a5a5a}}
}

// seg is the next segment sent by end (client or server).
func (c *conn) seg(end int, f flags, data []byte) carrying {
	s := tcpSeg(c.port[end], c.port[1-end], c.next[end], c.next[1-end], f, data)
	c.next[end] += uint32(len(data))
	if f&(syn|fin) != 0 {
		c.next[end]++
	}
	return s
}

// segment is a transport header and payload alone, its checksum over
// the pseudo-header of nl: the upper layer of a packet whose headers in
// between are written by hand.
func segment(nl gopacket.NetworkLayer, l gopacket.SerializableLayer) []byte {
	return serialize(nl, l)
}

// hp is an address and port as a note shows them.
func hp(a string, port uint16) string { return net.JoinHostPort(a, strconv.Itoa(int(port))) }

// dnsMsg is a DNS query for example.org (or its answer).
func dnsMsg(answer bool) []byte {
	d := &layers.DNS{ID: 0x2a2a, RD: true, QDCount: 1,
		Questions: []layers.DNSQuestion{{Name: []byte("example.org"), Type: layers.DNSTypeA, Class: layers.DNSClassIN}}}
	if answer {
		d.QR, d.RA = true, true
		d.Answers = []layers.DNSResourceRecord{{Name: []byte("example.org"), Type: layers.DNSTypeA, Class: layers.DNSClassIN, TTL: 300, IP: net.IP{192, 0, 2, 80}}}
	}
	return serialize(nil, d)
}

// filler is n bytes of a recognisable pattern: a covert payload.
func filler(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte("linkguard-redteam "[i%18])
	}
	return b
}

// mcastMAC is the Ethernet group address of an IP multicast address.
func mcastMAC(a string) net.HardwareAddr {
	ip := net.ParseIP(a)
	if v4 := ip.To4(); v4 != nil {
		return net.HardwareAddr{0x01, 0x00, 0x5e, v4[1] & 0x7f, v4[2], v4[3]}
	}
	return net.HardwareAddr{0x33, 0x33, ip[12], ip[13], ip[14], ip[15]}
}

// inetSum is the Internet checksum of b (RFC 1071), seeded with sum.
func inetSum(sum uint32, b []byte) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// pseudo6 is the sum of an IPv6 pseudo-header (RFC 8200 8.1).
func pseudo6(src, dst string, proto uint8, n int) uint32 {
	var sum uint32
	for _, a := range []net.IP{net.ParseIP(src), net.ParseIP(dst)} {
		for i := 0; i < 16; i += 2 {
			sum += uint32(binary.BigEndian.Uint16(a[i:]))
		}
	}
	return sum + uint32(n>>16) + uint32(n&0xffff) + uint32(proto)
}

// be16 and be32 append big-endian integers.
func be16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func be32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }

// a4 and a16 are an address's bytes.
func a4(a string) []byte  { return net.ParseIP(a).To4() }
func a16(a string) []byte { return net.ParseIP(a).To16() }
