package linkfilter

import (
	"encoding/binary"

	"linkguard.dev/linkguard/agent/linkfilter/packet"
)

// rstMax bounds an RST frame: link header with two tags, IPv6, TCP.
const rstMax = 14 + 8 + 40 + 20

// BuildRST writes into dst an RST answering the TCP segment p (decoded from
// frame) and returns its length, 0 if it cannot be built. toSender: the RST
// goes back to p's sender, as if from its peer (MACs swapped); otherwise it
// goes on to p's receiver, as if from the sender (MACs kept). Sequence
// numbers are the ones the receiving stack expects, so it accepts the RST.
func BuildRST(dst []byte, frame []byte, pk *packet.Packet, toSender bool) int {
	p := pk.Outer()
	if pk.N != 1 || !p.L4 || p.Proto != packet.ProtoTCP || p.Frag != packet.NotFragment || p.L3Off > 22 || p.L3Off < 14 {
		return 0 // only a plain TCP segment on Ethernet can be answered
	}
	l2 := p.L3Off
	ipLen := 20
	if p.IPv6 {
		ipLen = 40
	}
	n := l2 + ipLen + 20
	if len(dst) < n || len(frame) < l2 {
		return 0
	}
	copy(dst, frame[:l2])
	if toSender && l2 >= 12 {
		copy(dst[0:6], frame[6:12])
		copy(dst[6:12], frame[0:6])
	}
	src, dstA := p.Src, p.Dst
	sport, dport := p.SPort, p.DPort
	seqLen := uint32(p.Payload)
	if p.TCPFlags&packet.TCPSyn != 0 {
		seqLen++
	}
	if p.TCPFlags&packet.TCPFin != 0 {
		seqLen++
	}
	var seq, ack uint32
	flags := byte(0x04) // RST
	if toSender {
		src, dstA, sport, dport = dstA, src, dport, sport
		ack = p.Seq + seqLen
		flags |= 0x10 // ACK: makes the RST acceptable whatever our seq
		if p.TCPFlags&packet.TCPAck != 0 {
			seq = p.Ack
		}
	} else {
		seq = p.Seq + seqLen
		if p.TCPFlags&packet.TCPAck != 0 {
			ack = p.Ack
			flags |= 0x10
		}
	}
	ip := dst[l2 : l2+ipLen]
	tcp := dst[l2+ipLen : n]
	if p.IPv6 {
		ip[0], ip[1], ip[2], ip[3] = 0x60, 0, 0, 0
		binary.BigEndian.PutUint16(ip[4:], 20)
		ip[6], ip[7] = 6, 64
		s, d := src.As16(), dstA.As16()
		copy(ip[8:24], s[:])
		copy(ip[24:40], d[:])
	} else {
		ip[0], ip[1] = 0x45, 0
		binary.BigEndian.PutUint16(ip[2:], 40)
		binary.BigEndian.PutUint16(ip[4:], 0)
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		ip[8], ip[9] = 64, 6
		ip[10], ip[11] = 0, 0
		s, d := src.As4(), dstA.As4()
		copy(ip[12:16], s[:])
		copy(ip[16:20], d[:])
		binary.BigEndian.PutUint16(ip[10:], ^fold(sum(ip, 0)))
	}
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], ack)
	tcp[12], tcp[13] = 5<<4, flags
	binary.BigEndian.PutUint16(tcp[14:], 0) // window
	binary.BigEndian.PutUint16(tcp[16:], 0) // checksum, below
	binary.BigEndian.PutUint16(tcp[18:], 0)
	var ps uint32
	if p.IPv6 {
		ps = sum(ip[8:40], 0) + 6 + 20
	} else {
		ps = sum(ip[12:20], 0) + 6 + 20
	}
	binary.BigEndian.PutUint16(tcp[16:], ^fold(sum(tcp, ps)))
	return n
}

func sum(b []byte, acc uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		acc += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		acc += uint32(b[len(b)-1]) << 8
	}
	return acc
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
