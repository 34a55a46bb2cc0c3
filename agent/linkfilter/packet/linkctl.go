package packet

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// LinkLocal is a set of link-scoped protocols that pass as link control
// when they are well formed: a border link's routing and redundancy
// protocols. Anything else sent to a link-scoped address is judged like
// any flow.
type LinkLocal uint32

const (
	LinkLocalOSPF   LinkLocal = 1 << iota // proto 89 to 224.0.0.5/6, ff02::5/6
	LinkLocalVRRP                         // proto 112 to 224.0.0.18, ff02::12
	LinkLocalIGMP                         // proto 2 with TTL 1 to a group (also from 0.0.0.0)
	LinkLocalMLD                          // ICMPv6 130-132, 143 with hop limit 1 (also from ::)
	LinkLocalPIM                          // PIMv2 hellos to 224.0.0.13, ff02::d
	LinkLocalRIP                          // udp/520 to 224.0.0.9 or the limited broadcast
	LinkLocalRIPng                        // udp/521 to ff02::9
	LinkLocalHSRP                         // udp/1985 to 224.0.0.2, 224.0.0.102; udp/2029 to ff02::66
	LinkLocalMDNS                         // udp/5353 to 224.0.0.251, ff02::fb
	LinkLocalDHCP                         // DHCP/BOOTP: from 0.0.0.0 or to the limited broadcast
	LinkLocalDHCPv6                       // udp/546-547 to ff02::1:2
	LinkLocalLDP                          // LDP hellos, udp/646 to 224.0.0.2, ff02::2

	// linkLocalSet marks a set that was given explicitly, so an empty
	// list is not the default.
	linkLocalSet LinkLocal = 1 << 31
)

// DefaultLinkLocal is what a border link runs: OSPF, VRRP, IGMP, MLD and
// PIM.
const DefaultLinkLocal = LinkLocalOSPF | LinkLocalVRRP | LinkLocalIGMP | LinkLocalMLD | LinkLocalPIM | linkLocalSet

var linkLocalNames = []struct {
	name string
	bit  LinkLocal
}{
	{"ospf", LinkLocalOSPF}, {"vrrp", LinkLocalVRRP}, {"igmp", LinkLocalIGMP}, {"mld", LinkLocalMLD},
	{"pim", LinkLocalPIM}, {"rip", LinkLocalRIP}, {"ripng", LinkLocalRIPng}, {"hsrp", LinkLocalHSRP},
	{"mdns", LinkLocalMDNS}, {"dhcp", LinkLocalDHCP}, {"dhcpv6", LinkLocalDHCPv6}, {"ldp", LinkLocalLDP},
}

// LinkLocalNames lists every name ParseLinkLocal knows.
func LinkLocalNames() []string {
	out := make([]string, len(linkLocalNames))
	for i, n := range linkLocalNames {
		out[i] = n.name
	}
	return out
}

// ParseLinkLocal parses protocol names (links.link_local); an empty list
// is the empty set, not the default.
func ParseLinkLocal(names []string) (LinkLocal, error) {
	s := linkLocalSet
next:
	for _, n := range names {
		for _, k := range linkLocalNames {
			if strings.EqualFold(n, k.name) {
				s |= k.bit
				continue next
			}
		}
		return 0, fmt.Errorf("packet: unknown link-local protocol %q (known: %s)", n, strings.Join(LinkLocalNames(), ", "))
	}
	return s, nil
}

// Names lists the set's protocols.
func (s LinkLocal) Names() []string {
	out := []string{}
	for _, k := range linkLocalNames {
		if s&k.bit != 0 {
			out = append(out, k.name)
		}
	}
	return out
}

func (s LinkLocal) String() string { return strings.Join(s.Names(), ",") }

// isLinkScoped reports destinations a packet cannot leave the link for:
// 224.0.0.0/24, the limited broadcast, and interface- and link-local IPv6
// multicast (ffx1::/16, ffx2::/16).
func isLinkScoped(a netip.Addr) bool {
	if a.Is4() {
		b := a.As4()
		return b[0] == 224 && b[1] == 0 && b[2] == 0 || b == [4]byte{255, 255, 255, 255}
	}
	b := a.As16()
	return b[0] == 0xff && (b[1]&0x0f == 1 || b[1]&0x0f == 2)
}

func addr4(a, b, c, d byte) netip.Addr { return netip.AddrFrom4([4]byte{a, b, c, d}) }

func addr6ll(last ...byte) netip.Addr { // ff02::<last>
	var b [16]byte
	b[0], b[1] = 0xff, 0x02
	copy(b[16-len(last):], last)
	return netip.AddrFrom16(b)
}

var (
	ospfGroups   = []netip.Addr{addr4(224, 0, 0, 5), addr4(224, 0, 0, 6), addr6ll(5), addr6ll(6)}
	vrrpGroups   = []netip.Addr{addr4(224, 0, 0, 18), addr6ll(0x12)}
	pimGroups    = []netip.Addr{addr4(224, 0, 0, 13), addr6ll(0x0d)}
	ripGroups    = []netip.Addr{addr4(224, 0, 0, 9), addr4(255, 255, 255, 255)}
	ripngGroups  = []netip.Addr{addr6ll(9)}
	hsrpGroups   = []netip.Addr{addr4(224, 0, 0, 2), addr4(224, 0, 0, 102), addr6ll(0x66)}
	mdnsGroups   = []netip.Addr{addr4(224, 0, 0, 251), addr6ll(0xfb)}
	dhcp6Groups  = []netip.Addr{addr6ll(0, 1, 0, 2)}
	ldpGroups    = []netip.Addr{addr4(224, 0, 0, 2), addr6ll(2)}
	broadcast4   = addr4(255, 255, 255, 255)
	linkLocalMax = 1500 // no link-scoped message of a listed protocol is larger
)

// linkScoped marks a layer sent to a link-scoped address, or from an
// unspecified source: link control when its protocol is listed and well
// formed (the link needs it; it is not judged), else LinkScoped (judged
// like any flow). pl is what follows the IP header (for UDP, what follows
// the UDP header).
func (w *walk) linkScoped(l *Layer, pl []byte) {
	if !w.special && l.Proto != ProtoIGMP {
		return // the common case, decided from the header's bytes
	}
	ll := w.d.ll
	scoped := isLinkScoped(l.Dst)
	if !scoped && !l.Src.IsUnspecified() && !(l.Proto == ProtoIGMP && l.Dst.IsMulticast()) {
		return
	}
	if w.listed(l, pl, ll) {
		l.LinkControl = true
		if w.p.N == 1 {
			w.p.Link = LinkIP
			if l.Proto == ProtoUDP && (l.DPort == 67 || l.DPort == 68) {
				w.p.Link = LinkDHCP
			}
		}
		return
	}
	l.LinkScoped = scoped
}

func (w *walk) listed(l *Layer, pl []byte, ll LinkLocal) bool {
	if len(pl) > linkLocalMax {
		return false
	}
	dst, unspec := l.Dst, l.Src.IsUnspecified()
	switch l.Proto {
	case ProtoIGMP:
		// RFC 4541 lets queriers use 0.0.0.0; every IGMP message has TTL 1.
		return ll&LinkLocalIGMP != 0 && !l.IPv6 && l.HopLimit == 1 && dst.IsMulticast() && validIGMP(pl)
	case ProtoOSPF:
		return ll&LinkLocalOSPF != 0 && !unspec && l.HopLimit == 1 && slices.Contains(ospfGroups, dst) && validOSPF(l, pl)
	case ProtoVRRP:
		return ll&LinkLocalVRRP != 0 && !unspec && l.HopLimit == 255 && slices.Contains(vrrpGroups, dst) && validVRRP(pl)
	case ProtoPIM:
		return ll&LinkLocalPIM != 0 && !unspec && l.HopLimit == 1 && slices.Contains(pimGroups, dst) && len(pl) >= 4 && pl[0] == 0x20
	case ProtoUDP:
		sp, dp := l.SPort, l.DPort
		switch {
		case dp == 67 && sp == 68 || dp == 68 && sp == 67:
			return ll&LinkLocalDHCP != 0 && !l.IPv6 && (unspec && sp == 68 || dst == broadcast4 && !unspec) && validDHCP(pl)
		case unspec:
			return false
		case dp == 520 && sp == 520:
			return ll&LinkLocalRIP != 0 && slices.Contains(ripGroups, dst)
		case dp == 521 && sp == 521:
			return ll&LinkLocalRIPng != 0 && l.HopLimit == 255 && slices.Contains(ripngGroups, dst)
		case dp == 1985 || dp == 2029:
			return ll&LinkLocalHSRP != 0 && slices.Contains(hsrpGroups, dst)
		case dp == 5353:
			return ll&LinkLocalMDNS != 0 && slices.Contains(mdnsGroups, dst)
		case dp == 547:
			return ll&LinkLocalDHCPv6 != 0 && l.Src.IsLinkLocalUnicast() && slices.Contains(dhcp6Groups, dst)
		case dp == 646:
			return ll&LinkLocalLDP != 0 && slices.Contains(ldpGroups, dst)
		}
	}
	return false
}

func validIGMP(pl []byte) bool {
	if len(pl) < 8 {
		return false
	}
	switch pl[0] {
	case 0x11: // query: v1/v2 8 bytes, v3 12 plus sources
		return len(pl) == 8 || len(pl) >= 12 && len(pl) == 12+4*int(be16(pl, 10))
	case 0x12, 0x16, 0x17: // v1, v2 report, leave
		return len(pl) == 8
	case 0x22: // v3 report: records walked for length
		n, p := int(be16(pl, 6)), 8
		for range n {
			if len(pl)-p < 8 {
				return false
			}
			p += 8 + int(pl[p+1])*4 + 4*int(be16(pl, p+2))
		}
		return p == len(pl)
	}
	return false
}

func validOSPF(l *Layer, pl []byte) bool {
	ver := byte(2)
	hdr := 24
	if l.IPv6 {
		ver, hdr = 3, 16
	}
	if len(pl) < hdr || pl[0] != ver || pl[1] < 1 || pl[1] > 5 {
		return false
	}
	n := int(be16(pl, 2))
	// OSPFv2 cryptographic authentication appends its digest after the
	// packet length (RFC 2328 D.4.3); nothing else may follow.
	return n >= hdr && n <= len(pl) && len(pl)-n <= 64
}

func validVRRP(pl []byte) bool {
	if len(pl) < 8 || pl[0]&0x0f != 1 || (pl[0]>>4 != 2 && pl[0]>>4 != 3) {
		return false
	}
	// At most count addresses of 16 bytes plus a v2 authentication field.
	return len(pl) <= 8+16*int(pl[3])+8
}

func validDHCP(pl []byte) bool {
	// BOOTP's fixed part, the magic cookie, op 1/2, Ethernet addresses.
	return len(pl) >= 240 && len(pl) <= 1024 && (pl[0] == 1 || pl[0] == 2) && pl[1] == 1 && pl[2] == 6 &&
		pl[236] == 99 && pl[237] == 130 && pl[238] == 83 && pl[239] == 99
}

// Neighbour discovery (RFC 4861): per message type, its fixed size, the
// largest it may be, and the options it may carry. Unknown options are
// refused: a border link has no use for them and they would carry data.
var ndRules = [...]struct {
	hdr, max int
	opts     uint64
}{
	icmp6RouterSol - icmp6RouterSol:   {8, 64, 1 << 1},
	icmp6RouterAdv - icmp6RouterSol:   {16, 1024, 1<<1 | 1<<3 | 1<<5 | 1<<24 | 1<<25 | 1<<31 | 1<<37 | 1<<38},
	icmp6NeighborSol - icmp6RouterSol: {24, 64, 1<<1 | 1<<14},
	icmp6NeighborAdv - icmp6RouterSol: {24, 64, 1<<2 | 1<<14},
	icmp6Redirect - icmp6RouterSol:    {40, 160, 1<<2 | 1<<4},
}

// validND checks a neighbour discovery message m (the ICMPv6 message).
func validND(l *Layer, m []byte) bool {
	t := m[0]
	r := ndRules[t-icmp6RouterSol]
	if l.HopLimit != 255 || m[1] != 0 || len(m) < r.hdr || len(m) > r.max {
		return false
	}
	slla := false
	for p := r.hdr; p < len(m); {
		if len(m)-p < 2 {
			return false
		}
		typ, n := m[p], int(m[p+1])*8
		if n == 0 || p+n > len(m) || typ >= 64 || r.opts&(1<<typ) == 0 {
			return false
		}
		switch typ {
		case 1, 2, 5: // link-layer address (Ethernet), MTU
			if n != 8 {
				return false
			}
			slla = slla || typ == 1
		case 3: // prefix information
			if n != 32 {
				return false
			}
		}
		p += n
	}
	src := l.Src
	switch t {
	case icmp6RouterAdv, icmp6Redirect:
		return src.IsLinkLocalUnicast()
	case icmp6NeighborSol:
		target := netip.AddrFrom16([16]byte(m[8:24]))
		if target.IsMulticast() {
			return false
		}
		if src.IsUnspecified() { // duplicate address detection
			d := l.Dst.As16()
			return !slla && d[0] == 0xff && d[1] == 0x02 && d[11] == 1 && d[12] == 0xff
		}
		return true
	case icmp6NeighborAdv:
		return !src.IsUnspecified() && !netip.AddrFrom16([16]byte(m[8:24])).IsMulticast()
	}
	return true // router solicitation: from a host address or ::
}

// validMLD checks a multicast listener message of n bytes (RFC 2710,
// RFC 3810): hop limit 1, from a link-local address (or :: for reports),
// to a group.
func validMLD(l *Layer, n int) bool {
	if l.HopLimit != 1 || !l.Dst.IsMulticast() || n > linkLocalMax {
		return false
	}
	if !l.Src.IsLinkLocalUnicast() && !(l.Src.IsUnspecified() && (l.ICMPType == icmp6MLDReport || l.ICMPType == icmp6MLDv2Report)) {
		return false
	}
	switch l.ICMPType {
	case icmp6MLDQuery:
		return n == 24 || n >= 28
	case icmp6MLDReport, icmp6MLDDone:
		return n == 24
	}
	return n >= 8
}

// arp checks an ARP or RARP frame: Ethernet and IPv4 address types and
// lengths, a known operation, and a frame no longer than the minimum
// frame (with the tags it carries) — what every ARP sender puts on the
// wire.
func (w *walk) arp(et uint16, off, end int) LinkProto {
	b := w.b
	if end-off < 28 || !w.padOK(off+28, end) {
		return LinkNone
	}
	if be16(b, off) != 1 || be16(b, off+2) != EtherIPv4 || b[off+4] != 6 || b[off+5] != 4 {
		return LinkNone
	}
	op := be16(b, off+6)
	if et == EtherRARP {
		if op == 3 || op == 4 {
			return LinkRARP
		}
		return LinkNone
	}
	if op == 1 || op == 2 {
		return LinkARP
	}
	return LinkNone
}

// groupIs reports whether the frame's destination is 01:80:c2:00:00:last.
func (w *walk) groupIs(last ...byte) bool {
	return w.reservedGroup() && slices.Contains(last, w.ethDst[5])
}

// maxLLDP bounds an LLDPDU: 802.1AB allows 1500 bytes, but what a border
// router announces (chassis, port, names, capabilities, addresses, a few
// organisational TLVs) fits in a fraction; the rest would be a payload.
const maxLLDP = 1024

// lldp checks an LLDPDU: to an LLDP group address; chassis ID, port ID
// and TTL first; only defined TLV types; an End TLV; padding only after.
func (w *walk) lldp(off, end int) LinkProto {
	if !w.groupIs(0x0e, 0x03, 0x00) {
		return LinkNone
	}
	b := w.b
	p := off
	for i := 0; ; i++ {
		if end-p < 2 || p-off > maxLLDP {
			return LinkNone
		}
		h := be16(b, p)
		typ, n := int(h>>9), int(h&0x1ff)
		p += 2
		if p+n > end {
			return LinkNone
		}
		switch {
		case i < 3 && typ != i+1:
			return LinkNone // chassis ID, port ID, TTL, in that order
		case typ == 0:
			if n != 0 || !w.padOK(p, end) {
				return LinkNone
			}
			return LinkLLDP
		case typ > 8 && typ != 127:
			return LinkNone
		case typ == 3 && n != 2, (typ == 1 || typ == 2) && (n < 2 || n > 256):
			return LinkNone
		}
		p += n
	}
}

// stp checks a BPDU (off is past the LLC header) sent to the bridge group
// address: configuration, topology change, RSTP or MSTP, each of its size.
func (w *walk) stp(off, end int) LinkProto {
	if !w.groupIs(0x00) {
		return LinkNone
	}
	b := w.b
	n := end - off
	if n < 4 || be16(b, off) != 0 {
		return LinkNone
	}
	ver, typ := b[off+2], b[off+3]
	switch {
	case typ == 0x80 && n <= 7: // topology change notification
		return LinkSTP
	case typ == 0x00 && ver == 0 && n >= 35 && n <= 38:
		return LinkSTP
	case typ == 0x02 && ver == 2 && n >= 36 && n <= 39:
		return LinkSTP
	case typ == 0x02 && ver >= 3 && n >= 102:
		v3 := int(be16(b, off+36))
		if v3 == n-38 && v3 >= 64 && (v3-64)%16 == 0 && (v3-64)/16 <= 64 {
			return LinkSTP
		}
	}
	return LinkNone
}

// slow checks an 802.3 slow-protocols frame: LACP or marker PDUs of their
// fixed 110 bytes and TLV layout, to the slow-protocols group address.
func (w *walk) slow(off, end int) LinkProto {
	if !w.groupIs(0x02) || end-off < 110 || !w.padOK(off+110, end) {
		return LinkNone
	}
	b := w.b[off:]
	switch b[0] {
	case 1: // LACP: actor, partner, collector, terminator
		if b[2] == 1 && b[3] == 20 && b[22] == 2 && b[23] == 20 && b[42] == 3 && b[43] == 16 && b[58] == 0 && b[59] == 0 {
			return LinkSlow
		}
	case 2: // marker
		if (b[2] == 1 || b[2] == 2) && b[3] == 16 && b[18] == 0 && b[19] == 0 {
			return LinkSlow
		}
	}
	return LinkNone
}
