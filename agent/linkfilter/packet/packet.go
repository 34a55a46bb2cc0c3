package packet

import (
	"net/netip"
	"strconv"
)

// Kind sorts frames by how the filter treats them.
type Kind uint8

const (
	// KindIP: one or more IP header pairs (Packet.L), each judged by the
	// policy.
	KindIP Kind = iota + 1
	// KindLinkControl: a frame the link needs to work, validated by its
	// structure (ARP, neighbour discovery, LLDP, STP, LACP, a link-scoped
	// packet of a listed protocol, DHCP from an unspecified source).
	KindLinkControl
	// KindOther: a protocol the decoder cannot classify (IPX, PPPoE
	// discovery, an unknown EtherType): the policy default applies.
	KindOther
	// KindMalformed: headers that do not decode or break the rules the
	// decoder enforces; Problem says which. The policy default applies.
	KindMalformed
)

var kindNames = [...]string{"invalid", "ip", "link-control", "other", "malformed"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "invalid"
}

// Problem is why a frame is KindMalformed (or KindOther). Its String is a
// constant, and Technique names the evasion it stands for in events.
type Problem uint8

const (
	ProblemNone        Problem = iota
	ProblemTruncated           // a header runs past the end of the frame
	ProblemHeader              // a header's fields contradict each other or the frame
	ProblemLinkControl         // link-control EtherType or group address whose content is not that protocol
	ProblemTooDeep             // more encapsulations than the limit
	ProblemOpaque              // an encapsulation the decoder cannot see into
	ProblemFragTiny            // a first fragment without every header the filter must see
	ProblemFragOverlap         // a later fragment overlapping the transport header (RFC 1858)
	ProblemExtHeader           // IPv6 extension headers too many, repeated or unknown
	ProblemUnknown             // a protocol the decoder does not know (KindOther)
)

var problemNames = [...]string{
	"",
	"truncated header",
	"malformed header",
	"not a valid link-control frame",
	"too many encapsulations",
	"an encapsulation that cannot be inspected",
	"first fragment without the whole transport header",
	"fragment overlapping the transport header",
	"IPv6 extension headers too many, repeated or unknown",
	"unknown protocol",
}

func (p Problem) String() string {
	if int(p) < len(problemNames) {
		return problemNames[p]
	}
	return "invalid"
}

// Technique is the name events give the evasion a problem stands for.
func (p Problem) Technique() string {
	switch p {
	case ProblemLinkControl:
		return "covert-link-control"
	case ProblemTooDeep:
		return "too-deep"
	case ProblemOpaque:
		return "opaque-tunnel"
	case ProblemFragTiny:
		return "fragment-tiny"
	case ProblemFragOverlap:
		return "fragment-overlap"
	case ProblemExtHeader:
		return "ext-header"
	case ProblemUnknown:
		return "unknown-protocol"
	case ProblemNone:
		return ""
	}
	return "malformed"
}

// Encap is how an IP header pair was carried inside the one before it.
type Encap uint8

const (
	EncapNone     Encap = iota // the outermost header, straight on the link
	EncapIPIP                  // IPv4 in IPv4 (protocol 4)
	Encap6in4                  // IPv6 in IPv4 (protocol 41, "sit")
	Encap4in6                  // IPv4 in IPv6 (next header 4)
	Encap6in6                  // IPv6 in IPv6 (next header 41)
	EncapGRE                   // GRE, any payload
	EncapVXLAN                 // VXLAN (udp/4789, udp/8472)
	EncapVXLANGPE              // VXLAN-GPE (udp/4790)
	EncapGeneve                // Geneve (udp/6081)
	EncapMPLS                  // an MPLS label stack (on the link or in a tunnel)
	EncapPPPoE                 // a PPPoE session
	EncapEtherIP               // EtherIP (protocol 97)
	EncapGTPU                  // GTP-U (udp/2152)
)

var encapNames = [...]string{"", "ipip", "6in4", "4in6", "6in6", "gre", "vxlan", "vxlan-gpe", "geneve", "mpls", "pppoe", "etherip", "gtpu"}

func (e Encap) String() string {
	if int(e) < len(encapNames) {
		return encapNames[e]
	}
	return "invalid"
}

// Frag says where a header pair sits in a fragmented datagram.
type Frag uint8

const (
	NotFragment   Frag = iota
	FirstFragment      // offset 0, more to come: carries the transport header
	LaterFragment      // offset > 0: no transport header, follows its datagram
)

// MaxLayers is the most IP header pairs a Packet holds (the outermost plus
// seven encapsulations): the hard ceiling on Options.MaxEncap.
const MaxLayers = 8

// Layer is one IP header pair and what follows it. Nothing in it points
// into the frame.
type Layer struct {
	Src, Dst netip.Addr
	// Proto is the upper-layer protocol (after IPv6 extension headers).
	Proto uint8
	// Via is how this header pair was carried in the layer before it
	// (EncapNone for the outermost; MPLS or PPPoE on the link count).
	Via  Encap
	IPv6 bool
	// HopLimit is the IPv4 TTL or IPv6 hop limit.
	HopLimit uint8
	// L4 reports the transport header decoded: ports, flags and ICMP type
	// are set. False for later fragments and protocols without one.
	L4                 bool
	TCPFlags           uint8
	SPort, DPort       uint16 // TCP, UDP, SCTP ports; the ICMP echo identifier in both
	ICMPType, ICMPCode uint8
	// LinkControl: a link-scoped packet of a listed protocol (OSPF hello,
	// VRRP, IGMP, MLD, ...), or DHCP from an unspecified source: the link
	// needs it, it is not judged.
	LinkControl bool
	// LinkScoped: the destination is link-scoped (224.0.0.0/24, ff02::/16,
	// the limited broadcast) but the protocol is not listed: judged like
	// any flow, and named so in events.
	LinkScoped bool
	Frag       Frag
	FragID     uint32
	FragOff    uint32 // byte offset of this fragment in its datagram
	FragEnd    uint32 // FragOff plus the fragment's payload length
	Seq, Ack   uint32
	Payload    int // transport payload bytes (TCP sequence space for RSTs)
	L3Off      int // offset of the IP header in the frame
}

// Packet is what the filter needs from one frame: every IP header pair it
// carries, outermost first. The decoder fills one the caller owns.
type Packet struct {
	Kind    Kind
	Problem Problem
	// N is the number of header pairs in L.
	N int
	L [MaxLayers]Layer
	// Inner is a valid link-control frame carried inside the last tunnel
	// (ARP in VXLAN): the tunnel's layers are judged, the frame is not.
	Inner LinkProto
	// Link is the link-control protocol of a KindLinkControl frame.
	Link LinkProto
	// EtherType is the outermost frame's, after VLAN tags (0 for other
	// link types).
	EtherType uint16
	// Truncated: the capture cut the frame short (headers past the cut are
	// not judged).
	Truncated bool
	// Segments is how many wire frames this frame stands for: more than 1
	// for a GRO/GSO super-frame (set by the reader; 0 counts as 1).
	Segments int
}

// Outer is the outermost header pair; the zero Layer if there is none.
func (p *Packet) Outer() *Layer { return &p.L[0] }

// Last is the innermost header pair; the zero Layer if there is none.
func (p *Packet) Last() *Layer { return &p.L[max(p.N-1, 0)] }

// Via describes how layer i was carried ("ipip 192.0.2.1 -> 192.0.2.2":
// the encapsulation and the outer header pair), "" for the outermost.
// Not for the packet path: it allocates.
func (p *Packet) Via(i int) string {
	if i <= 0 || i >= p.N {
		return ""
	}
	o := &p.L[i-1]
	return p.L[i].Via.String() + " " + o.Src.String() + " -> " + o.Dst.String()
}

// SegmentCount is Segments, at least 1.
func (p *Packet) SegmentCount() uint64 { return uint64(max(p.Segments, 1)) }

// LinkProto names a link-control protocol.
type LinkProto uint8

const (
	LinkNone LinkProto = iota
	LinkARP
	LinkRARP
	LinkND   // IPv6 neighbour discovery (RS, RA, NS, NA, redirect)
	LinkLLDP // 802.1AB
	LinkSTP  // 802.1D/w/s BPDUs
	LinkSlow // LACP and marker (802.3 slow protocols)
	LinkIP   // a link-scoped IP packet of a listed protocol
	LinkDHCP // DHCP from an unspecified source
)

var linkNames = [...]string{"", "arp", "rarp", "nd", "lldp", "stp", "lacp", "link-local-ip", "dhcp"}

func (l LinkProto) String() string {
	if int(l) < len(linkNames) {
		return linkNames[l]
	}
	return "link/" + strconv.Itoa(int(l))
}
