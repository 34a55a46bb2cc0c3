package capture

import (
	"encoding/binary"
	"hash/crc32"
	"math/bits"
)

// A sender with checksum offload (a veth peer by default, a virtio guest, a
// tap) leaves its TCP and UDP checksums to the hardware: the frame carries
// only the pseudo-header sum in the checksum field (CHECKSUM_PARTIAL), and
// the metadata says where the sum starts and where it goes. A port that
// forwards such a frame to a wire must fill the checksum in, as the NIC
// would have; CompleteChecksum does.

// CompleteChecksum fills in, in place, the checksum the sender of frame
// left to offload hardware, g being the frame's offload metadata
// (Info.GSO) with GSONeedsCsum: the sum from g.CsumStart to the end of the
// IP packet, stored at CsumStart+CsumOffset. An SCTP checksum is the
// packet's CRC32c; every other the Internet checksum (RFC 1071), a zero
// sum sent as 0xffff as the kernel does (UDP over IPv4 reads 0 as "no
// checksum" and over IPv6 refuses it; for TCP the two are the same
// number). It reports false, leaving frame as it is, when g asks for no
// checksum, describes a super-frame (its segments' checksums are the
// segmenter's to fill in) or does not fit frame.
func CompleteChecksum(frame []byte, g OffloadInfo) bool {
	if g.Flags&GSONeedsCsum == 0 || g.Type&^GSOECN != GSONone {
		return false
	}
	start, field := int(g.CsumStart), int(g.CsumStart)+int(g.CsumOffset)
	end, proto := ipExtent(frame, start)
	if start >= end || field+2 > end {
		return false
	}
	if proto == protoSCTP && g.CsumOffset == sctpCsumOffset {
		if field+4 > end {
			return false
		}
		clear(frame[field : field+4])
		binary.LittleEndian.PutUint32(frame[field:], crc32.Checksum(frame[start:end], castagnoli))
		return true
	}
	c := ^onesSum(frame[start:end])
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(frame[field:], c)
	return true
}

// inetChecksum reports whether the partial checksum g describes in frame
// is an Internet checksum, which a virtio_net_hdr can hand to the kernel or
// a NIC to fill in; an SCTP CRC32c it cannot (the kernel would store an
// Internet checksum in its place).
func inetChecksum(frame []byte, g OffloadInfo) bool {
	_, proto := ipExtent(frame, int(g.CsumStart))
	return proto != protoSCTP || g.CsumOffset != sctpCsumOffset
}

// partialChecksum is the metadata of a frame the kernel marks as carrying
// a partial checksum (TP_STATUS_CSUMNOTREADY) on a port whose kernel gives
// no virtio_net_hdr (before Linux 5.8): the sum starts at the TCP, UDP or
// SCTP header behind the IP header, where a stack that offloads puts it.
func partialChecksum(frame []byte) (OffloadInfo, bool) {
	at, proto := transport(frame)
	var off uint16
	switch proto {
	case protoTCP:
		off = 16
	case protoUDP, protoUDPLite:
		off = 6
	case protoSCTP:
		off = sctpCsumOffset
	default:
		return OffloadInfo{}, false
	}
	if at <= 0 || at+int(off)+2 > len(frame) {
		return OffloadInfo{}, false
	}
	return OffloadInfo{Flags: GSONeedsCsum, CsumStart: uint16(at), CsumOffset: off}, true
}

// Header values the walk to the transport header knows.
const (
	etherIPv4 = 0x0800
	etherIPv6 = 0x86dd
	etherVLAN = 0x8100 // 802.1Q
	etherQinQ = 0x88a8 // 802.1ad

	protoHopOpts  = 0
	protoTCP      = 6
	protoUDP      = 17
	protoRouting  = 43
	protoFragment = 44
	protoAH       = 51
	protoDstOpts  = 60
	protoSCTP     = 132
	protoUDPLite  = 136

	sctpCsumOffset = 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ipExtent returns where the IP packet in frame ends (frame's end when
// frame is not IP behind Ethernet and VLAN tags, or gives no length, as a
// 64 KB+ IPv6 jumbogram or an IPv4 BIG TCP packet does) and the protocol
// of the transport header when it starts at at (0 otherwise). Bounding
// the sum by the IP length keeps Ethernet padding out of it.
func ipExtent(frame []byte, at int) (end int, proto uint8) {
	end = len(frame)
	ip, ether := linkHeader(frame)
	switch ether {
	case etherIPv4:
		if ip+20 > len(frame) {
			return end, 0
		}
		if n := int(binary.BigEndian.Uint16(frame[ip+2:])); n >= 20 && ip+n < end {
			end = ip + n
		}
	case etherIPv6:
		if ip+40 > len(frame) {
			return end, 0
		}
		if n := int(binary.BigEndian.Uint16(frame[ip+4:])); n > 0 && ip+40+n < end {
			end = ip + 40 + n
		}
	default:
		return end, 0
	}
	if l4, p := transport(frame); l4 == at {
		proto = p
	}
	return end, proto
}

// linkHeader skips Ethernet and up to four VLAN tags: it returns where the
// network header starts and its EtherType (0 when frame is too short).
func linkHeader(frame []byte) (off int, ether uint16) {
	off = 12
	for range 5 {
		if off+2 > len(frame) {
			return 0, 0
		}
		ether = binary.BigEndian.Uint16(frame[off:])
		if ether != etherVLAN && ether != etherQinQ {
			return off + 2, ether
		}
		off += 4
	}
	return 0, 0
}

// transport returns where the first header after the IP header (and
// IPv6's extension headers) starts in frame and its protocol number;
// 0, 0 when frame is not IPv4 or IPv6 or is a fragment past the first.
func transport(frame []byte) (int, uint8) {
	ip, ether := linkHeader(frame)
	switch ether {
	case etherIPv4:
		if ip+20 > len(frame) || frame[ip]>>4 != 4 || frame[ip]&0x0f < 5 {
			return 0, 0
		}
		if binary.BigEndian.Uint16(frame[ip+6:])&0x1fff != 0 {
			return 0, 0 // a later fragment: no transport header
		}
		return ip + int(frame[ip]&0x0f)*4, frame[ip+9]
	case etherIPv6:
		if ip+40 > len(frame) || frame[ip]>>4 != 6 {
			return 0, 0
		}
		next, off := frame[ip+6], ip+40
		for range 8 {
			if off+8 > len(frame) {
				return 0, 0
			}
			switch next {
			case protoHopOpts, protoRouting, protoDstOpts:
				next, off = frame[off], off+(int(frame[off+1])+1)*8
			case protoAH:
				next, off = frame[off], off+(int(frame[off+1])+2)*4
			case protoFragment:
				if binary.BigEndian.Uint16(frame[off+2:])&0xfff8 != 0 {
					return 0, 0
				}
				next, off = frame[off], off+8
			default:
				return off, next
			}
		}
	}
	return 0, 0
}

// onesSum is the ones-complement sum of b as big-endian 16-bit words (an
// odd last byte padded with zero), folded to 16 bits and not complemented.
// It adds 64-bit words with end-around carry, which sums every 16-bit lane
// at once; the words are read little-endian, a plain load on the usual
// CPUs, and the sum swapped back at the end (the ones-complement sum does
// not depend on byte order, RFC 1071 §2(B)).
func onesSum(b []byte) uint16 {
	var s, c uint64
	for len(b) >= 32 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[8:]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[16:]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[24:]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b), c)
		b = b[8:]
	}
	if len(b) >= 4 {
		s, c = bits.Add64(s, uint64(binary.LittleEndian.Uint32(b)), c)
		b = b[4:]
	}
	if len(b) >= 2 {
		s, c = bits.Add64(s, uint64(binary.LittleEndian.Uint16(b)), c)
		b = b[2:]
	}
	if len(b) == 1 {
		s, c = bits.Add64(s, uint64(b[0]), c)
	}
	s, c = bits.Add64(s, c, 0)
	s += c
	// Fold 64 -> 32 -> 16 bits, each with its end-around carry.
	s = s>>32 + s&0xffffffff
	s = s>>32 + s&0xffffffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return bits.ReverseBytes16(uint16(s))
}
