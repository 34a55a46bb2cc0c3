package packet

import (
	"encoding/binary"
	"net/netip"

	"linkguard.dev/linkguard/hal/capture/pcapfile"
)

// Options configure a Decoder. Zero values take the defaults.
type Options struct {
	// MaxEncap is how many encapsulations deep the decoder walks (IP in
	// IP, GRE, VXLAN, Geneve, MPLS, PPPoE each count one); a frame nested
	// deeper is ProblemTooDeep. Default DefaultMaxEncap; at most
	// MaxLayers-1.
	MaxEncap int
	// LinkLocal is the link-scoped protocols that pass as link control;
	// the zero set is DefaultLinkLocal.
	LinkLocal LinkLocal
}

// DefaultMaxEncap is the default of Options.MaxEncap.
const DefaultMaxEncap = 4

// Decoder walks every header a frame carries into a Packet the caller
// owns. It allocates nothing, holds no state between frames, and is safe
// for concurrent use.
type Decoder struct {
	link     pcapfile.LinkType
	first    uint8 // stage the frame starts at
	maxEncap int
	ll       LinkLocal
}

// Stages of the walk.
const (
	stDone uint8 = iota
	stEther
	stIPv4
	stIPv6
	stIPAny // raw IP: the version nibble says which
	stMPLS
	stPPPoE
	stSLL
	stSLL2
	stLoop
)

// NewDecoder returns a decoder for frames of the given link type
// (Ethernet for live ports; capture files may be raw IP, Linux cooked
// (SLL, SLL2) or BSD loopback too). Frames of other link types decode as
// KindOther; Supported says so up front.
func NewDecoder(link pcapfile.LinkType, o Options) *Decoder {
	d := &Decoder{link: link, maxEncap: o.MaxEncap, ll: o.LinkLocal}
	if d.maxEncap <= 0 {
		d.maxEncap = DefaultMaxEncap
	}
	d.maxEncap = min(d.maxEncap, MaxLayers-1)
	if d.ll == 0 {
		d.ll = DefaultLinkLocal
	}
	switch link {
	case pcapfile.LinkTypeEthernet:
		d.first = stEther
	case pcapfile.LinkTypeRaw, pcapfile.LinkType(12): // 12: DLT_RAW on OpenBSD, seen in files
		d.first = stIPAny
	case pcapfile.LinkTypeIPv4:
		d.first = stIPv4
	case pcapfile.LinkTypeIPv6:
		d.first = stIPv6
	case pcapfile.LinkTypeLinuxSLL:
		d.first = stSLL
	case pcapfile.LinkType(276): // LINKTYPE_LINUX_SLL2
		d.first = stSLL2
	case pcapfile.LinkTypeNull, pcapfile.LinkTypeLoop:
		d.first = stLoop
	}
	return d
}

// LinkType is the link type the decoder was built for.
func (d *Decoder) LinkType() pcapfile.LinkType { return d.link }

// Supported reports whether the decoder can decode frames of its link
// type at all.
func (d *Decoder) Supported() bool { return d.first != stDone }

// walk is one frame's decoding state.
type walk struct {
	d         *Decoder
	p         *Packet
	b         []byte
	truncated bool // the capture cut the frame
	depth     int  // encapsulations entered
	via       Encap
	// The Ethernet header the current stage sits in: its start and tag
	// count bound the padding allowed after the packet it carries (-1:
	// not directly in Ethernet, no padding allowed).
	ethStart, ethTags int
	ethDst            [6]byte
	nextOff, nextEnd  int // where a UDP tunnel's payload lies
	// special: the current header's destination is multicast or
	// broadcast, or its source unspecified (only then is linkScoped's
	// work needed).
	special bool
}

// Decode fills p from frame. truncated says the capture cut the frame, so
// headers missing at its end are not a problem.
func (d *Decoder) Decode(frame []byte, truncated bool, p *Packet) {
	if d.first == stEther && plain(frame, truncated, p) {
		return
	}
	d.walkAll(frame, truncated, p)
}

// plain decodes the frame nearly all traffic is, in one straight pass:
// untagged Ethernet, IPv4 without options or fragmentation or IPv6
// without extension headers, from a unicast source to a unicast
// destination, carrying TCP or UDP that is no tunnel, with nothing after
// the datagram but Ethernet's padding. It fills p exactly as walkAll
// would (TestPlainMatchesWalk, FuzzPlain hold it to that); for any other
// frame it reports false and leaves p for walkAll to overwrite.
func plain(b []byte, truncated bool, p *Packet) bool {
	if len(b) < 14+20+8 {
		return false
	}
	l := &p.L[0]
	et := be16(b, 12)
	var off, ipEnd int
	switch et {
	case EtherIPv4:
		// Version 4, no options; no more-fragments flag, offset 0; not
		// from multicast, broadcast or 0.0.0.0, not to multicast or
		// broadcast (those are the link-scoped rules' to judge).
		ipEnd = 14 + int(be16(b, 16))
		if b[14] != 0x45 || ipEnd < 14+20 || ipEnd > len(b) || be16(b, 20)&0x3fff != 0 ||
			b[26] >= 224 || b[30] >= 224 || binary.BigEndian.Uint32(b[26:]) == 0 {
			return false
		}
		// Cleared, then set field by field: a composite literal is built
		// on the stack and copied, which costs more than the decode.
		*l = Layer{}
		l.Src, l.Dst = netip.AddrFrom4([4]byte(b[26:30])), netip.AddrFrom4([4]byte(b[30:34]))
		l.Proto, l.HopLimit, l.L3Off = b[23], b[22], 14
		off = 14 + 20
	case EtherIPv6:
		if len(b) < 14+40+8 || b[14]>>4 != 6 || b[22] == 0xff || b[38] == 0xff ||
			binary.BigEndian.Uint64(b[22:]) == 0 && binary.BigEndian.Uint64(b[30:]) == 0 {
			return false
		}
		ipEnd = 14 + 40 + int(be16(b, 18))
		if ipEnd > len(b) {
			return false
		}
		*l = Layer{}
		l.Src, l.Dst = netip.AddrFrom16([16]byte(b[22:38])), netip.AddrFrom16([16]byte(b[38:54]))
		l.Proto, l.IPv6, l.HopLimit, l.L3Off = b[20], true, b[21], 14
		off = 14 + 40
	default:
		return false
	}
	// Ethernet's minimum-frame padding (and an FCS) may follow, no more.
	if ipEnd < len(b) && len(b) > max(ipEnd, 60)+4 {
		return false
	}
	avail := ipEnd - off
	switch l.Proto {
	case ProtoTCP:
		if avail < 20 {
			return false
		}
		doff := int(b[off+12]>>4) * 4
		if doff < 20 || avail < doff {
			return false
		}
		l.SPort, l.DPort = be16(b, off), be16(b, off+2)
		l.Seq, l.Ack = binary.BigEndian.Uint32(b[off+4:]), binary.BigEndian.Uint32(b[off+8:])
		l.TCPFlags = b[off+13] & 0x1f
		l.Payload = avail - doff
	case ProtoUDP:
		if avail < 8 || int(be16(b, off+4)) != avail {
			return false
		}
		l.SPort, l.DPort = be16(b, off), be16(b, off+2)
		if tunnelPort(l.SPort) || tunnelPort(l.DPort) {
			return false
		}
		l.Payload = avail - 8
	default:
		return false
	}
	l.L4 = true
	p.Kind, p.Problem, p.N, p.Inner, p.Link, p.EtherType = KindIP, ProblemNone, 1, LinkNone, LinkNone, et
	p.Truncated, p.Segments = truncated, 0
	return true
}

// tunnelPort reports a UDP port udpTunnel sees into.
func tunnelPort(port uint16) bool {
	switch port {
	case PortVXLAN, PortVXLANLinux, PortVXLANGPE, PortGeneve, PortGTPU:
		return true
	}
	return false
}

// walkAll decodes any frame, header by header.
func (d *Decoder) walkAll(frame []byte, truncated bool, p *Packet) {
	p.Kind, p.Problem, p.N, p.Inner, p.Link, p.EtherType = 0, ProblemNone, 0, LinkNone, LinkNone, 0
	p.Truncated, p.Segments = truncated, 0
	w := walk{d: d, p: p, b: frame, truncated: truncated, ethStart: -1}
	w.run(d.first, 0, len(frame))
	switch {
	case p.Problem == ProblemUnknown:
		p.Kind = KindOther
	case p.Problem != ProblemNone:
		p.Kind = KindMalformed
	case p.N == 0 && p.Link != LinkNone:
		p.Kind = KindLinkControl
	case p.N == 1 && p.L[0].LinkControl && p.Inner == LinkNone:
		p.Kind = KindLinkControl
		if p.Link == LinkNone {
			p.Link = LinkIP
		}
	case p.N > 0:
		p.Kind = KindIP
	default:
		p.Kind = KindOther
		p.Problem = ProblemUnknown
		if d.first == stDone {
			p.Problem = ProblemNone // the link type says it all
		}
	}
}

func (w *walk) fail(pr Problem) uint8 {
	if w.p.Problem == ProblemNone {
		w.p.Problem = pr
	}
	return stDone
}

// short is the outcome of a header that runs past end: a problem, unless
// the capture cut the frame there (then the walk just stops).
func (w *walk) short(end int) uint8 {
	if w.truncated && end == len(w.b) {
		return stDone
	}
	return w.fail(ProblemTruncated)
}

// enter counts one more encapsulation.
func (w *walk) enter(e Encap) bool {
	w.depth++
	w.via = e
	if w.depth > w.d.maxEncap {
		w.fail(ProblemTooDeep)
		return false
	}
	return true
}

func be16(b []byte, off int) uint16 { return binary.BigEndian.Uint16(b[off:]) }

func (w *walk) run(st uint8, off, end int) {
	for st != stDone {
		switch st {
		case stEther:
			st, off, end = w.ether(off, end)
		case stIPv4:
			st, off, end = w.ipv4(off, end)
		case stIPv6:
			st, off, end = w.ipv6(off, end)
		case stIPAny:
			if off >= end {
				st = w.short(end)
				continue
			}
			switch w.b[off] >> 4 {
			case 4:
				st = stIPv4
			case 6:
				st = stIPv6
			default:
				st = w.fail(ProblemHeader)
			}
		case stMPLS:
			st, off, end = w.mpls(off, end)
		case stPPPoE:
			st, off, end = w.pppoe(off, end)
		case stSLL, stSLL2:
			hl, at := 16, 14
			if st == stSLL2 {
				hl, at = 20, 0
			}
			if end-off < hl {
				st = w.short(end)
				continue
			}
			et := be16(w.b, off+at)
			w.p.EtherType = et
			st, off = w.etherNext(et, off+hl, end)
		case stLoop:
			if end-off < 4 {
				st = w.short(end)
				continue
			}
			// The address family, in the writer's byte order.
			fam := binary.LittleEndian.Uint32(w.b[off:])
			if fam > 0xffff {
				fam = binary.BigEndian.Uint32(w.b[off:])
			}
			off += 4
			switch fam {
			case 2:
				st = stIPv4
			case 24, 28, 30:
				st = stIPv6
			default:
				st = w.fail(ProblemUnknown)
			}
		default:
			st = stDone
		}
	}
}

// Ethernet frames. A link-level frame is at most 4 tags deep.
const maxTags = 4

func (w *walk) ether(off, end int) (uint8, int, int) {
	start := off
	if end-off < 14 {
		return w.short(end), off, end
	}
	copy(w.ethDst[:], w.b[off:off+6])
	et := be16(w.b, off+12)
	off += 14
	tags := 0
	for et == EtherVLAN || et == EtherQinQ || et == EtherQinQOld {
		if tags == maxTags {
			return w.fail(ProblemHeader), off, end
		}
		if end-off < 4 {
			return w.short(end), off, end
		}
		et = be16(w.b, off+2)
		off += 4
		tags++
	}
	w.ethStart, w.ethTags = start, tags
	if w.p.N == 0 && w.depth == 0 {
		w.p.EtherType = et
	}
	if et < 0x0600 {
		return w.llc(et, off, end)
	}
	st, off := w.etherNext(et, off, end)
	return st, off, end
}

// etherNext dispatches on an EtherType.
func (w *walk) etherNext(et uint16, off, end int) (uint8, int) {
	switch et {
	case EtherIPv4:
		return stIPv4, off
	case EtherIPv6:
		return stIPv6, off
	case EtherARP, EtherRARP:
		return w.linkControl(w.arp(et, off, end)), off
	case EtherLLDP:
		return w.linkControl(w.lldp(off, end)), off
	case EtherSlow:
		return w.linkControl(w.slow(off, end)), off
	case EtherMPLS:
		if !w.enter(EncapMPLS) {
			return stDone, off
		}
		return stMPLS, off
	case EtherPPPoE:
		if !w.enter(EncapPPPoE) {
			return stDone, off
		}
		return stPPPoE, off
	}
	if w.reservedGroup() {
		return w.fail(ProblemLinkControl), off
	}
	return w.fail(ProblemUnknown), off
}

// linkControl records a validated link-control frame (lp) or, for
// LinkNone, the failed validation.
func (w *walk) linkControl(lp LinkProto) uint8 {
	if lp == LinkNone {
		return w.fail(ProblemLinkControl)
	}
	if w.p.N == 0 {
		w.p.Link = lp
	} else {
		w.p.Inner = lp // inside a tunnel: its layers are judged
	}
	return stDone
}

// llc handles an 802.3 frame (length, LLC): SNAP with the Ethernet OUI
// goes on by its EtherType, STP BPDUs are validated, the rest is unknown.
func (w *walk) llc(length uint16, off, end int) (uint8, int, int) {
	n := int(length)
	if n > end-off {
		return w.short(end), off, end
	}
	if !w.padOK(off+n, end) {
		return w.fail(ProblemHeader), off, end
	}
	end = off + n
	b := w.b
	switch {
	case n >= 8 && b[off] == 0xaa && b[off+1] == 0xaa && b[off+2] == 0x03 && b[off+3] == 0 && b[off+4] == 0 && b[off+5] == 0:
		et := be16(b, off+6)
		if et < 0x0600 {
			return w.fail(ProblemHeader), off, end
		}
		st, o := w.etherNext(et, off+8, end)
		return st, o, end
	case n >= 3 && b[off] == 0x42 && b[off+1] == 0x42 && b[off+2] == 0x03:
		return w.linkControl(w.stp(off+3, end)), off, end
	}
	if w.reservedGroup() {
		return w.fail(ProblemLinkControl), off, end
	}
	return w.fail(ProblemUnknown), off, end
}

// padOK reports whether the bytes between a packet's end and its frame's
// end are no more than Ethernet's minimum-frame padding (plus an FCS a
// capture file may keep). More would be a covert trailer the receiver's
// stack ignores and a raw socket reads.
func (w *walk) padOK(pktEnd, end int) bool {
	if pktEnd >= end {
		return true
	}
	if w.ethStart < 0 {
		return false
	}
	minFrame := 60 + 4*w.ethTags
	return end-w.ethStart <= max(pktEnd-w.ethStart, minFrame)+4
}

// reservedGroup reports 01:80:c2:00:00:0x, the IEEE 802.1D reserved
// link-local group addresses (STP, LACP, LLDP, 802.1X, ...).
func (w *walk) reservedGroup() bool {
	m := &w.ethDst
	return m[0] == 0x01 && m[1] == 0x80 && m[2] == 0xc2 && m[3] == 0 && m[4] == 0 && m[5]&0xf0 == 0
}

// MPLS: labels until bottom of stack, then IPv4, IPv6 or a pseudowire
// control word and Ethernet.
const maxLabels = 8

func (w *walk) mpls(off, end int) (uint8, int, int) {
	for i := 0; ; i++ {
		if i == maxLabels {
			return w.fail(ProblemHeader), off, end
		}
		if end-off < 4 {
			return w.short(end), off, end
		}
		bottom := w.b[off+2]&1 != 0
		off += 4
		if bottom {
			break
		}
	}
	if off >= end {
		return w.short(end), off, end
	}
	// The payload's type is bound to the label, which only the control
	// plane knows; it is guessed from its first nibble (RFC 4928). A
	// payload that also reads as an Ethernet pseudowire without a control
	// word carrying IP is ambiguous: it is judged by the default.
	if end-off >= 15 {
		et := be16(w.b, off+12)
		if v := w.b[off+14] >> 4; et == EtherIPv4 && v == 4 || et == EtherIPv6 && v == 6 || et == EtherVLAN || et == EtherQinQ {
			return w.fail(ProblemOpaque), off, end
		}
	}
	switch w.b[off] >> 4 {
	case 4, 6:
		if w.b[off]>>4 == 4 {
			return stIPv4, off, end
		}
		return stIPv6, off, end
	case 0: // pseudowire control word (RFC 4385), then an Ethernet frame
		if end-off < 4 {
			return w.short(end), off, end
		}
		return stEther, off + 4, end
	}
	return w.fail(ProblemOpaque), off, end
}

// PPPoE session (RFC 2516) carrying IPv4 or IPv6; PPP control protocols
// are unknown (the policy default).
func (w *walk) pppoe(off, end int) (uint8, int, int) {
	if end-off < 8 {
		return w.short(end), off, end
	}
	b := w.b
	if b[off] != 0x11 || b[off+1] != 0 {
		return w.fail(ProblemHeader), off, end
	}
	n := int(be16(b, off+4))
	if n < 2 {
		return w.fail(ProblemHeader), off, end
	}
	if off+6+n > end {
		return w.short(end), off, end
	}
	if !w.padOK(off+6+n, end) {
		return w.fail(ProblemHeader), off, end
	}
	end = off + 6 + n
	switch be16(b, off+6) {
	case 0x0021:
		return stIPv4, off + 8, end
	case 0x0057:
		return stIPv6, off + 8, end
	}
	return w.fail(ProblemUnknown), off, end
}

// layer starts the next header pair, or fails when the packet holds no
// more.
func (w *walk) layer() *Layer {
	if w.p.N == MaxLayers {
		w.fail(ProblemTooDeep)
		return nil
	}
	l := &w.p.L[w.p.N]
	*l = Layer{Via: w.via}
	w.p.N++
	return l
}

func (w *walk) ipv4(off, end int) (uint8, int, int) {
	b := w.b
	if end-off < 20 {
		return w.short(end), off, end
	}
	if b[off]>>4 != 4 {
		return w.fail(ProblemHeader), off, end
	}
	ihl := int(b[off]&0xf) * 4
	tot := int(be16(b, off+2))
	if ihl < 20 || tot < ihl {
		return w.fail(ProblemHeader), off, end
	}
	ipEnd := off + tot
	if ipEnd > end {
		if !w.truncated || end != len(b) {
			return w.fail(ProblemTruncated), off, end
		}
		ipEnd = end
	} else if !w.padOK(ipEnd, end) {
		return w.fail(ProblemHeader), off, end
	}
	if off+ihl > ipEnd {
		return w.short(ipEnd), off, end
	}
	l := w.layer()
	if l == nil {
		return stDone, off, end
	}
	l.L3Off = off
	l.Src = netip.AddrFrom4([4]byte(b[off+12 : off+16]))
	l.Dst = netip.AddrFrom4([4]byte(b[off+16 : off+20]))
	l.Proto = b[off+9]
	l.HopLimit = b[off+8]
	if b[off+12] >= 224 { // a multicast or broadcast source is never real
		return w.fail(ProblemHeader), off, end
	}
	w.special = b[off+16] >= 224 || binary.BigEndian.Uint32(b[off+12:]) == 0
	ff := be16(b, off+6)
	more, fo := ff&0x2000 != 0, uint32(ff&0x1fff)*8
	if more || fo != 0 {
		l.FragID = uint32(be16(b, off+4))
		if st, ok := w.fragment(l, fo, more, ipEnd-off-ihl); !ok {
			return st, off, end
		}
	}
	return w.upper(l, l.Proto, off+ihl, ipEnd)
}

// fragment records a fragment's place; false when the walk stops there
// (a later fragment carries no headers to walk, or the fragment breaks
// the rules).
func (w *walk) fragment(l *Layer, fo uint32, more bool, n int) (uint8, bool) {
	l.FragOff, l.FragEnd = fo, fo+uint32(n)
	if more && n%8 != 0 || l.FragEnd > 65535 {
		return w.fail(ProblemHeader), false
	}
	if fo == 0 {
		l.Frag = FirstFragment
		return 0, true
	}
	l.Frag = LaterFragment
	// A later fragment that reaches back into the transport header would
	// let it be rewritten after judgement (RFC 1858).
	if fo < uint32(minTransport(l.Proto)) {
		return w.fail(ProblemFragOverlap), false
	}
	return stDone, false
}

// minTransport is the least a first fragment must hold of proto's header.
func minTransport(proto uint8) int {
	switch proto {
	case ProtoTCP:
		return 20
	case ProtoSCTP:
		return 12
	case ProtoUDP, ProtoICMP, ProtoICMPv6, ProtoGRE:
		return 8
	case ProtoAH:
		return 12
	case ProtoEtherIP:
		return 2
	}
	return 0
}

// IPv6 extension header limits: RFC 8200 allows each header once
// (destination options twice); more is an evasion, not a packet.
const (
	maxExtHeaders = 6
	maxExtBytes   = 512
)

func (w *walk) ipv6(off, end int) (uint8, int, int) {
	b := w.b
	if end-off < 40 {
		return w.short(end), off, end
	}
	if b[off]>>4 != 6 {
		return w.fail(ProblemHeader), off, end
	}
	plen := int(be16(b, off+4))
	ipEnd := off + 40 + plen
	if plen == 0 && b[off+6] != ProtoNoNext {
		return w.fail(ProblemHeader), off, end // jumbograms never cross a border link
	}
	if ipEnd > end {
		if !w.truncated || end != len(b) {
			return w.fail(ProblemTruncated), off, end
		}
		ipEnd = end
	} else if !w.padOK(ipEnd, end) {
		return w.fail(ProblemHeader), off, end
	}
	l := w.layer()
	if l == nil {
		return stDone, off, end
	}
	l.IPv6 = true
	l.L3Off = off
	l.Src = netip.AddrFrom16([16]byte(b[off+8 : off+24]))
	l.Dst = netip.AddrFrom16([16]byte(b[off+24 : off+40]))
	l.HopLimit = b[off+7]
	if b[off+8] == 0xff {
		return w.fail(ProblemHeader), off, end
	}
	w.special = b[off+24] == 0xff || binary.BigEndian.Uint64(b[off+8:]) == 0 && binary.BigEndian.Uint64(b[off+16:]) == 0
	next := b[off+6]
	p := off + 40
	var seen, dstOpts, count int
	for {
		switch next {
		case ProtoHopByHop, ProtoDstOpts, ProtoRouting, ProtoFragment:
		case ProtoMobility, ProtoHIP, ProtoShim6, 253, 254:
			return w.fail(ProblemExtHeader), off, end
		default:
			l.Proto = next
			return w.upper(l, next, p, ipEnd)
		}
		count++
		if count > maxExtHeaders || p-off-40 > maxExtBytes {
			return w.fail(ProblemExtHeader), off, end
		}
		if ipEnd-p < 8 {
			if l.Frag == FirstFragment {
				return w.fail(ProblemFragTiny), off, end
			}
			return w.short(ipEnd), off, end
		}
		hdr := next
		next = b[p]
		n := (int(b[p+1]) + 1) * 8
		switch hdr {
		case ProtoHopByHop:
			if count != 1 || seen&1 != 0 {
				return w.fail(ProblemExtHeader), off, end
			}
			seen |= 1
		case ProtoDstOpts:
			dstOpts++
			if dstOpts > 2 {
				return w.fail(ProblemExtHeader), off, end
			}
		case ProtoRouting:
			// A source route still to follow means Dst is not where the
			// packet goes: it is judged by the default.
			if seen&2 != 0 || b[p+3] != 0 {
				return w.fail(ProblemExtHeader), off, end
			}
			seen |= 2
		case ProtoFragment:
			if seen&4 != 0 {
				return w.fail(ProblemExtHeader), off, end
			}
			seen |= 4
			n = 8
			fo := uint32(be16(b, p+2) &^ 7)
			more := b[p+3]&1 != 0
			if fo != 0 || more { // else an atomic fragment (RFC 6946): a whole packet
				l.FragID = binary.BigEndian.Uint32(b[p+4:])
				// A later fragment's headers belong to its first fragment:
				// Proto is the one the fragment header names.
				l.Proto = next
				if st, ok := w.fragment(l, fo, more, ipEnd-(p+8)); !ok {
					return st, off, end
				}
			}
		}
		if p+n > ipEnd {
			if l.Frag == FirstFragment {
				return w.fail(ProblemFragTiny), off, end
			}
			return w.short(ipEnd), off, end
		}
		p += n
	}
}

// upper decodes what follows an IP header: the transport header, or the
// next encapsulation.
func (w *walk) upper(l *Layer, proto uint8, off, end int) (uint8, int, int) {
	b := w.b
	avail := end - off
	need := minTransport(proto)
	if avail < need {
		if l.Frag == FirstFragment {
			return w.fail(ProblemFragTiny), off, end
		}
		return w.short(end), off, end
	}
	switch proto {
	case ProtoTCP:
		doff := int(b[off+12]>>4) * 4
		if doff < 20 {
			return w.fail(ProblemHeader), off, end
		}
		if avail < doff {
			if l.Frag == FirstFragment {
				return w.fail(ProblemFragTiny), off, end
			}
			if st := w.short(end); st == stDone && w.p.Problem != ProblemNone {
				return st, off, end
			}
		}
		l.L4 = true
		l.SPort, l.DPort = be16(b, off), be16(b, off+2)
		l.Seq, l.Ack = binary.BigEndian.Uint32(b[off+4:]), binary.BigEndian.Uint32(b[off+8:])
		l.TCPFlags = b[off+13] & 0x1f
		l.Payload = max(avail-doff, 0)
	case ProtoUDP:
		l.L4 = true
		l.SPort, l.DPort = be16(b, off), be16(b, off+2)
		ulen := int(be16(b, off+4))
		if l.Frag == NotFragment && ulen != avail && !(w.truncated && end == len(b) && ulen > avail) {
			// A UDP length short of the IP payload hides a trailer.
			return w.fail(ProblemHeader), off, end
		}
		l.Payload = max(ulen-8, 0)
		w.linkScoped(l, b[off+8:end])
		if l.LinkControl {
			return stDone, off, end
		}
		if st, ok := w.udpTunnel(l, l.DPort, off+8, end); ok {
			return st, w.nextOff, w.nextEnd
		}
		if st, ok := w.udpTunnel(l, l.SPort, off+8, end); ok {
			return st, w.nextOff, w.nextEnd
		}
		return stDone, off, end
	case ProtoSCTP:
		l.L4 = true
		l.SPort, l.DPort = be16(b, off), be16(b, off+2)
	case ProtoICMP:
		l.L4 = true
		l.ICMPType, l.ICMPCode = b[off], b[off+1]
		switch l.ICMPType {
		case 0, 8, 13, 14: // echo, timestamp: the identifier stands in for ports
			id := be16(b, off+4)
			l.SPort, l.DPort = id, id
		}
	case ProtoICMPv6:
		l.L4 = true
		l.ICMPType, l.ICMPCode = b[off], b[off+1]
		switch t := l.ICMPType; {
		case t == 128 || t == 129:
			id := be16(b, off+4)
			l.SPort, l.DPort = id, id
		case t >= icmp6RouterSol && t <= icmp6Redirect:
			if !validND(l, b[off:end]) {
				return w.fail(ProblemLinkControl), off, end
			}
			l.LinkControl = true
			if w.p.N == 1 {
				w.p.Link = LinkND
			}
			return stDone, off, end
		case t == icmp6MLDQuery || t == icmp6MLDReport || t == icmp6MLDDone || t == icmp6MLDv2Report:
			if w.d.ll&LinkLocalMLD != 0 {
				if !validMLD(l, end-off) {
					return w.fail(ProblemLinkControl), off, end
				}
				l.LinkControl = true
				return stDone, off, end
			}
		}
	case ProtoIPIP:
		e := EncapIPIP
		if l.IPv6 {
			e = Encap4in6
		}
		if !w.enter(e) {
			return stDone, off, end
		}
		w.ethStart = -1
		return stIPv4, off, end
	case ProtoIPv6:
		e := Encap6in4
		if l.IPv6 {
			e = Encap6in6
		}
		if !w.enter(e) {
			return stDone, off, end
		}
		w.ethStart = -1
		return stIPv6, off, end
	case ProtoGRE:
		return w.gre(l, off, end)
	case ProtoAH:
		// Authentication only: the header is skipped and what it protects
		// judged (RFC 4302).
		n := (int(b[off+1]) + 2) * 4
		if avail < n {
			if l.Frag == FirstFragment {
				return w.fail(ProblemFragTiny), off, end
			}
			return w.short(end), off, end
		}
		l.Proto = b[off]
		if l.Proto == ProtoAH {
			return w.fail(ProblemHeader), off, end
		}
		return w.upper(l, l.Proto, off+n, end)
	case ProtoEtherIP:
		// RFC 3378: a version nibble of 3, then an Ethernet frame.
		if b[off]>>4 != 3 {
			return w.fail(ProblemOpaque), off, end
		}
		if !w.enter(EncapEtherIP) {
			return stDone, off, end
		}
		w.ethStart = -1
		return stEther, off + 2, end
	}
	w.linkScoped(l, b[off:end])
	return stDone, off, end
}

// udpTunnel dispatches a UDP payload to the tunnel port names. Both ports
// are tried, destination first, as gopacket does: a kernel only listens on
// the destination, but the adversary's own receiver may read either, so
// a tunnel to a source port is seen into too (and a non-tunnel payload
// from one of these ports is judged by the default).
func (w *walk) udpTunnel(l *Layer, port uint16, off, end int) (uint8, bool) {
	var st uint8
	switch port {
	case PortVXLAN, PortVXLANLinux:
		st, w.nextOff, w.nextEnd = w.vxlan(l, off, end)
	case PortVXLANGPE:
		st, w.nextOff, w.nextEnd = w.vxlanGPE(l, off, end)
	case PortGeneve:
		st, w.nextOff, w.nextEnd = w.geneve(l, off, end)
	case PortGTPU:
		st, w.nextOff, w.nextEnd = w.gtpu(l, off, end)
	default:
		return 0, false
	}
	return st, true
}

// GRE (RFC 2784, RFC 2890). Version 1 (PPTP), source routing and the
// reserved bits are encapsulations the decoder cannot see into.
func (w *walk) gre(l *Layer, off, end int) (uint8, int, int) {
	b := w.b
	flags := be16(b, off)
	if flags&0x4ff8 != 0 || flags&7 != 0 {
		return w.fail(ProblemOpaque), off, end
	}
	n := 4
	for _, bit := range [...]uint16{0x8000, 0x2000, 0x1000} { // checksum, key, sequence
		if flags&bit != 0 {
			n += 4
		}
	}
	if end-off < n {
		if l.Frag == FirstFragment {
			return w.fail(ProblemFragTiny), off, end
		}
		return w.short(end), off, end
	}
	et := be16(b, off+2)
	if !w.enter(EncapGRE) {
		return stDone, off, end
	}
	off += n
	w.ethStart = -1
	switch et {
	case EtherIPv4:
		return stIPv4, off, end
	case EtherIPv6:
		return stIPv6, off, end
	case EtherTEB:
		return stEther, off, end
	case EtherMPLS:
		return stMPLS, off, end
	}
	return w.fail(ProblemOpaque), off, end
}

// tunnelHeader checks that a UDP tunnel's header of n bytes is there.
func (w *walk) tunnelHeader(l *Layer, off, end, n int, e Encap) bool {
	if end-off < n {
		if l.Frag == FirstFragment {
			w.fail(ProblemFragTiny)
		} else {
			w.short(end)
		}
		return false
	}
	if !w.enter(e) {
		return false
	}
	w.ethStart = -1
	return true
}

// VXLAN (RFC 7348): the I flag must be set, as receivers require.
func (w *walk) vxlan(l *Layer, off, end int) (uint8, int, int) {
	if !w.tunnelHeader(l, off, end, 8, EncapVXLAN) {
		return stDone, off, end
	}
	if w.b[off]&0x08 == 0 {
		return w.fail(ProblemOpaque), off, end
	}
	return stEther, off + 8, end
}

// VXLAN-GPE: the next-protocol field says what follows.
func (w *walk) vxlanGPE(l *Layer, off, end int) (uint8, int, int) {
	if !w.tunnelHeader(l, off, end, 8, EncapVXLANGPE) {
		return stDone, off, end
	}
	if w.b[off]&0x04 == 0 {
		return stEther, off + 8, end
	}
	switch w.b[off+3] {
	case 1:
		return stIPv4, off + 8, end
	case 2:
		return stIPv6, off + 8, end
	case 3:
		return stEther, off + 8, end
	case 5:
		return stMPLS, off + 8, end
	}
	return w.fail(ProblemOpaque), off, end
}

// Geneve (RFC 8926): version 0, options skipped by their length.
func (w *walk) geneve(l *Layer, off, end int) (uint8, int, int) {
	if !w.tunnelHeader(l, off, end, 8, EncapGeneve) {
		return stDone, off, end
	}
	b := w.b
	if b[off]>>6 != 0 {
		return w.fail(ProblemOpaque), off, end
	}
	n := 8 + int(b[off]&0x3f)*4
	if end-off < n {
		if l.Frag == FirstFragment {
			return w.fail(ProblemFragTiny), off, end
		}
		return w.short(end), off, end
	}
	switch be16(b, off+2) {
	case EtherTEB:
		return stEther, off + n, end
	case EtherIPv4:
		return stIPv4, off + n, end
	case EtherIPv6:
		return stIPv6, off + n, end
	}
	return w.fail(ProblemOpaque), off, end
}

// GTP-U (3GPP TS 29.281): a G-PDU carries an IPv4 or IPv6 packet after
// the header, its optional fields and extension headers; other messages
// (echo, error indication) carry none.
func (w *walk) gtpu(l *Layer, off, end int) (uint8, int, int) {
	if !w.tunnelHeader(l, off, end, 8, EncapGTPU) {
		return stDone, off, end
	}
	b := w.b
	if b[off]>>5 != 1 || b[off]&0x10 == 0 {
		return w.fail(ProblemOpaque), off, end
	}
	p := off + 8
	if b[off]&0x07 != 0 { // sequence, N-PDU, extension: 4 more bytes
		if end-p < 4 {
			return w.short(end), off, end
		}
		next := b[p+3]
		p += 4
		for i := 0; next != 0; i++ {
			if i == 8 || end-p < 4 {
				return w.fail(ProblemOpaque), off, end
			}
			n := int(b[p]) * 4
			if n == 0 || p+n > end {
				return w.fail(ProblemOpaque), off, end
			}
			next = b[p+n-1]
			p += n
		}
	}
	if b[off+1] != 0xff { // not a G-PDU: signalling, nothing inside
		return stDone, off, end
	}
	if p >= end {
		return w.short(end), off, end
	}
	switch b[p] >> 4 {
	case 4:
		return stIPv4, p, end
	case 6:
		return stIPv6, p, end
	}
	return w.fail(ProblemOpaque), off, end
}
