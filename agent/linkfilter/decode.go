package linkfilter

import (
	"encoding/binary"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Kind sorts frames by how the filter treats them.
type Kind uint8

const (
	// KindIP: an IPv4 or IPv6 packet with addresses (and ports, when the
	// transport header is there); judged by the policy.
	KindIP Kind = iota + 1
	// KindLinkControl: frames the link needs to work (ARP, RARP, LLDP,
	// IEEE link-local control such as STP, IPv6 neighbour discovery and
	// router solicitation/advertisement); always passed.
	KindLinkControl
	// KindOther: a frame of a protocol the filter cannot classify (IPX,
	// PPPoE, MPLS, an unknown link type, ...): denied in deny mode.
	KindOther
	// KindMalformed: a frame whose headers do not decode; addresses are
	// filled in when the IP header itself decoded.
	KindMalformed
)

var kindNames = [...]string{"invalid", "ip", "link-control", "other", "malformed"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "invalid"
}

// Frag says where a packet sits in a fragmented datagram.
type Frag uint8

const (
	NotFragment   Frag = iota
	FirstFragment      // offset 0, more to come: carries the transport header
	LaterFragment      // offset > 0: no transport header, follows its flow
)

// Packet is what the filter needs from one frame. The decoder fills one the
// caller owns; nothing in it points into the decoder.
type Packet struct {
	Kind      Kind
	Src, Dst  netip.Addr
	Proto     uint8
	SPort     uint16 // TCP/UDP source port; ICMP echo identifier
	DPort     uint16 // TCP/UDP destination port; ICMP echo identifier
	TCPFlags  uint8
	Seq, Ack  uint32
	Payload   int // transport payload bytes (TCP sequence space for RSTs)
	Frag      Frag
	FragID    uint32
	Truncated bool // the capture cut the frame short
	L3Off     int  // offset of the IP header in the frame (-1: none)
	IPv6      bool
	// Segments is how many wire frames this frame stands for: more than
	// 1 for a GRO/GSO super-frame (set by the reader from
	// capture.Info.GSO; 0 counts as 1).
	Segments int
}

// segments is Segments, at least 1.
func (p *Packet) segments() uint64 { return uint64(max(p.Segments, 1)) }

// TCP flag bits in Packet.TCPFlags.
const (
	TCPFin = 1 << 0
	TCPSyn = 1 << 1
	TCPRst = 1 << 2
	TCPPsh = 1 << 3
	TCPAck = 1 << 4
)

// Decoder decodes frames with a gopacket DecodingLayerParser per link type,
// reusing its layers: it allocates nothing per frame. Not safe for
// concurrent use; each reader goroutine owns one.
type Decoder struct {
	link    layers.LinkType
	parser  *gopacket.DecodingLayerParser
	raw6    *gopacket.DecodingLayerParser // LINKTYPE_RAW frames holding IPv6
	decoded []gopacket.LayerType

	eth   layers.Ethernet
	vlan  layers.Dot1Q
	sll   layers.LinuxSLL
	loop  layers.Loopback
	ip4   layers.IPv4
	ip6   layers.IPv6
	ext   layers.IPv6ExtensionSkipper
	frag6 layers.IPv6Fragment
	tcp   layers.TCP
	udp   layers.UDP
	icmp4 layers.ICMPv4
	icmp6 layers.ICMPv6
}

// NewDecoder returns a decoder for frames of the given link type
// (Ethernet for live interfaces; files may be raw IP, Linux SLL or BSD
// loopback too). Frames of other link types decode as KindOther.
func NewDecoder(link layers.LinkType) *Decoder {
	d := &Decoder{link: link, decoded: make([]gopacket.LayerType, 0, 16)}
	var first gopacket.LayerType
	switch link {
	case layers.LinkTypeEthernet:
		first = layers.LayerTypeEthernet
	case layers.LinkTypeRaw, layers.LinkTypeIPv4:
		first = layers.LayerTypeIPv4 // raw may be IPv6 too: see Decode
	case layers.LinkTypeIPv6:
		first = layers.LayerTypeIPv6
	case layers.LinkTypeLinuxSLL:
		first = layers.LayerTypeLinuxSLL
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		first = layers.LayerTypeLoopback
	default:
		return d // parser nil: every frame is KindOther
	}
	d.parser = d.newParser(first)
	if link == layers.LinkTypeRaw {
		d.raw6 = d.newParser(layers.LayerTypeIPv6)
	}
	return d
}

func (d *Decoder) newParser(first gopacket.LayerType) *gopacket.DecodingLayerParser {
	p := gopacket.NewDecodingLayerParser(first)
	p.SetDecodingLayerContainer(gopacket.DecodingLayerSparse(nil))
	// The skipper registers for every IPv6 extension; the fragment layer
	// replaces it for fragments, so later fragments are not parsed as
	// transport headers.
	for _, l := range []gopacket.DecodingLayer{&d.eth, &d.vlan, &d.sll, &d.loop, &d.ip4, &d.ip6, &d.ext, &d.frag6, &d.tcp, &d.udp, &d.icmp4, &d.icmp6} {
		p.AddDecodingLayer(l)
	}
	p.IgnoreUnsupported = true
	return p
}

// LinkType is the link type the decoder was built for.
func (d *Decoder) LinkType() layers.LinkType { return d.link }

// Decode fills p from frame. truncated says the capture cut the frame.
func (d *Decoder) Decode(frame []byte, truncated bool, p *Packet) {
	*p = Packet{L3Off: -1, Truncated: truncated}
	if d.parser == nil {
		p.Kind = KindOther
		return
	}
	data := frame
	parser := d.parser
	if d.raw6 != nil && len(frame) > 0 && frame[0]>>4 == 6 {
		parser = d.raw6 // LINKTYPE_RAW carries either family
	}
	err := parser.DecodeLayers(data, &d.decoded)
	if parser.Truncated {
		p.Truncated = true
	}
	d.fill(frame, err != nil, p)
}

// Ethernet types the link needs.
const (
	etherARP  = 0x0806
	etherRARP = 0x8035
	etherLLDP = 0x88cc
)

func (d *Decoder) fill(frame []byte, failed bool, p *Packet) {
	var etype layers.EthernetType
	linkLocal := false
	haveIP := false
	for _, t := range d.decoded {
		switch t {
		case layers.LayerTypeEthernet:
			etype = d.eth.EthernetType
			linkLocal = isLinkLocalGroup(d.eth.DstMAC)
		case layers.LayerTypeDot1Q:
			etype = d.vlan.Type
		case layers.LayerTypeLinuxSLL:
			etype = d.sll.EthernetType
		case layers.LayerTypeIPv4:
			haveIP = true
			p.Src = netip.AddrFrom4([4]byte(d.ip4.SrcIP.To4()))
			p.Dst = netip.AddrFrom4([4]byte(d.ip4.DstIP.To4()))
			p.Proto = uint8(d.ip4.Protocol)
			p.L3Off = offsetIn(frame, d.ip4.Contents)
			if d.ip4.Flags&layers.IPv4MoreFragments != 0 || d.ip4.FragOffset != 0 {
				p.FragID = uint32(d.ip4.Id)
				p.Frag = FirstFragment
				if d.ip4.FragOffset != 0 {
					p.Frag = LaterFragment
				} else {
					transportPorts(d.ip4.Payload, p)
				}
			}
		case layers.LayerTypeIPv6:
			haveIP = true
			p.IPv6 = true
			p.Src = netip.AddrFrom16([16]byte(d.ip6.SrcIP.To16()))
			p.Dst = netip.AddrFrom16([16]byte(d.ip6.DstIP.To16()))
			p.Proto = uint8(d.ip6.NextHeader)
			if d.ip6.HopByHop != nil { // the IPv6 layer decodes hop-by-hop itself
				p.Proto = uint8(d.ip6.HopByHop.NextHeader)
			}
			p.L3Off = offsetIn(frame, d.ip6.Contents)
		case layers.LayerTypeIPv6HopByHop, layers.LayerTypeIPv6Routing, layers.LayerTypeIPv6Destination:
			p.Proto = uint8(d.ext.NextHeader)
		case layers.LayerTypeIPv6Fragment:
			p.Proto = uint8(d.frag6.NextHeader)
			if d.frag6.FragmentOffset != 0 || d.frag6.MoreFragments {
				p.FragID = d.frag6.Identification
				p.Frag = FirstFragment
				if d.frag6.FragmentOffset != 0 {
					p.Frag = LaterFragment
				} else {
					transportPorts(d.frag6.Payload, p)
				}
			}
		case layers.LayerTypeTCP:
			p.SPort, p.DPort = uint16(d.tcp.SrcPort), uint16(d.tcp.DstPort)
			p.Seq, p.Ack = d.tcp.Seq, d.tcp.Ack
			p.TCPFlags = tcpFlags(&d.tcp)
			p.Payload = len(d.tcp.Payload)
		case layers.LayerTypeUDP:
			p.SPort, p.DPort = uint16(d.udp.SrcPort), uint16(d.udp.DstPort)
		case layers.LayerTypeICMPv4:
			if t := d.icmp4.TypeCode.Type(); t == layers.ICMPv4TypeEchoRequest || t == layers.ICMPv4TypeEchoReply {
				p.SPort, p.DPort = d.icmp4.Id, d.icmp4.Id
			}
		case layers.LayerTypeICMPv6:
			switch t := d.icmp6.TypeCode.Type(); t {
			case layers.ICMPv6TypeEchoRequest, layers.ICMPv6TypeEchoReply:
				if len(d.icmp6.Payload) >= 2 {
					id := binary.BigEndian.Uint16(d.icmp6.Payload)
					p.SPort, p.DPort = id, id
				}
			case layers.ICMPv6TypeRouterSolicitation, layers.ICMPv6TypeRouterAdvertisement,
				layers.ICMPv6TypeNeighborSolicitation, layers.ICMPv6TypeNeighborAdvertisement,
				layers.ICMPv6TypeRedirect, layers.ICMPv6TypeMLDv1MulticastListenerQueryMessage,
				layers.ICMPv6TypeMLDv1MulticastListenerReportMessage, layers.ICMPv6TypeMLDv1MulticastListenerDoneMessage,
				layers.ICMPv6TypeMLDv2MulticastListenerReportMessageV2:
				// Neighbour discovery and multicast listener discovery
				// never leave the link.
				p.Kind = KindLinkControl
				return
			}
		}
	}
	switch {
	case haveIP && failed:
		p.Kind = KindMalformed
	case haveIP && linkScoped(p.Src, p.Dst):
		p.Kind = KindLinkControl
	case haveIP:
		p.Kind = KindIP
		if p.Proto == 0 && !p.IPv6 {
			p.Kind = KindMalformed
		}
	case failed:
		p.Kind = KindMalformed
	case etype == etherARP || etype == etherRARP || etype == etherLLDP:
		p.Kind = KindLinkControl
	case linkLocal && (etype == layers.EthernetTypeLLC || etype < 0x0600):
		p.Kind = KindLinkControl // STP and other IEEE 802.1D link-local control
	default:
		p.Kind = KindOther
	}
}

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// linkScoped reports packets that cannot leave the link whatever the
// policy says: to link-local multicast groups (224.0.0.0/24, ff02::/16:
// MLD, VRRP, OSPF hellos, mDNS), to the limited broadcast address, or from
// an unspecified source (DHCP discovery, duplicate address detection).
// Link-local unicast is not among them: on a bridged border link the
// foreign peer is link-local too, so it is judged like any other address.
func linkScoped(src, dst netip.Addr) bool {
	return dst.IsLinkLocalMulticast() || dst == limitedBroadcast || src.IsUnspecified()
}

// transportPorts reads ports from the start of a first fragment's payload,
// which the parser leaves undecoded.
func transportPorts(b []byte, p *Packet) {
	switch p.Proto {
	case 6, 17, 132:
		if len(b) >= 4 {
			p.SPort, p.DPort = binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
		}
	case 1, 58:
		if len(b) >= 6 && (b[0] == 8 || b[0] == 0 || b[0] == 128 || b[0] == 129) {
			id := binary.BigEndian.Uint16(b[4:])
			p.SPort, p.DPort = id, id
		}
	}
}

func tcpFlags(t *layers.TCP) uint8 {
	var f uint8
	if t.FIN {
		f |= TCPFin
	}
	if t.SYN {
		f |= TCPSyn
	}
	if t.RST {
		f |= TCPRst
	}
	if t.PSH {
		f |= TCPPsh
	}
	if t.ACK {
		f |= TCPAck
	}
	return f
}

// isLinkLocalGroup reports 01:80:c2:00:00:0x, the IEEE 802.1D reserved
// link-local group addresses (STP, LACP, LLDP, 802.1X).
func isLinkLocalGroup(mac []byte) bool {
	return len(mac) == 6 && mac[0] == 0x01 && mac[1] == 0x80 && mac[2] == 0xc2 &&
		mac[3] == 0 && mac[4] == 0 && mac[5]&0xf0 == 0
}

// offsetIn returns where sub starts inside frame, -1 if it does not.
func offsetIn(frame, sub []byte) int {
	if len(sub) == 0 || len(frame) == 0 {
		return -1
	}
	for off := 0; off+len(sub) <= len(frame) && off <= 64; off++ {
		if &frame[off] == &sub[0] {
			return off
		}
	}
	return -1
}
