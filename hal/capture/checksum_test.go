package capture

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// csumCase is a frame built by gopacket with its checksums computed, and
// the same frame as a sender with checksum offload hands it over: the
// transport checksum holds only the pseudo-header sum.
type csumCase struct {
	name          string
	want, partial []byte
	g             OffloadInfo
}

// buildCsum builds an Ethernet frame (behind the given VLAN tags) carrying
// IPv4 or IPv6 and TCP, UDP or SCTP with n payload bytes; adjust, if
// given, changes the payload before the checksums are computed. Extension
// headers go before the transport when ext is set (IPv6).
func buildCsum(t testing.TB, v6 bool, proto layers.IPProtocol, tags []layers.EthernetType, n int, ext bool, adjust func(payload []byte)) csumCase {
	t.Helper()
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(i*7 + 3)
	}
	if adjust != nil {
		adjust(payload)
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
	ls := []gopacket.SerializableLayer{eth}
	next := &eth.EthernetType
	for i, tpid := range tags {
		*next = tpid
		q := &layers.Dot1Q{VLANIdentifier: uint16(10 + i)}
		ls = append(ls, q)
		next = &q.Type
	}
	var net gopacket.NetworkLayer
	if v6 {
		*next = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto,
			SrcIP: mustIP("2001:db8:aa::7"), DstIP: mustIP("fd00:1::2")}
		ls = append(ls, ip)
		if ext {
			ip.NextHeader = layers.IPProtocolIPv6HopByHop
			hbh := &layers.IPv6HopByHop{}
			hbh.NextHeader = proto
			hbh.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
			ls = append(ls, hbh)
		}
		net = ip
	} else {
		*next = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, Flags: layers.IPv4DontFragment,
			SrcIP: mustIP("198.51.100.7").To4(), DstIP: mustIP("10.1.0.2").To4()}
		ls = append(ls, ip)
		net = ip
	}
	var off uint16
	switch proto {
	case layers.IPProtocolTCP:
		tcp := &layers.TCP{SrcPort: 5201, DstPort: 40000, Seq: 1, Ack: 2, ACK: true, PSH: true, Window: 512}
		_ = tcp.SetNetworkLayerForChecksum(net)
		ls, off = append(ls, tcp), 16
	case layers.IPProtocolUDP:
		udp := &layers.UDP{SrcPort: 5202, DstPort: 40000}
		_ = udp.SetNetworkLayerForChecksum(net)
		ls, off = append(ls, udp), 6
	case layers.IPProtocolSCTP:
		// The chunk carries the payload (padded to 4 bytes).
		ls, off = append(ls, &layers.SCTP{SrcPort: 9, DstPort: 9, VerificationTag: 0x01020304},
			&layers.SCTPData{SCTPChunk: layers.SCTPChunk{Type: layers.SCTPChunkTypeData, Length: uint16(16 + n)},
				BeginFragment: true, EndFragment: true, TSN: 1, Payload: payload}), 8
	}
	if proto != layers.IPProtocolSCTP {
		ls = append(ls, gopacket.Payload(payload))
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(buf.Bytes())
	at, p := transport(want)
	if p != uint8(proto) || at == 0 {
		t.Fatalf("walk found protocol %d at %d", p, at)
	}
	partial := bytes.Clone(want)
	field := partial[at+int(off):]
	if proto == layers.IPProtocolSCTP {
		clear(field[:4])
	} else {
		binary.BigEndian.PutUint16(field, pseudoSum(partial, at, v6, uint8(proto)))
	}
	name := fmt.Sprintf("%s/%s/tags%d/%dB", map[bool]string{false: "v4", true: "v6"}[v6], proto, len(tags), n)
	if ext {
		name += "/ext"
	}
	return csumCase{name: name, want: want, partial: partial, g: OffloadInfo{Flags: GSONeedsCsum, CsumStart: uint16(at), CsumOffset: off}}
}

func mustIP(s string) net.IP {
	ip := net.ParseIP(s)
	if ip == nil {
		panic(s)
	}
	return ip
}

// pseudoSum is what a stack that offloads leaves in the checksum field:
// the folded sum of the pseudo-header (RFC 793, RFC 8200 §8.1), computed
// here by a plain 16-bit loop independent of onesSum.
func pseudoSum(frame []byte, at int, v6 bool, proto uint8) uint16 {
	var ph []byte
	end, _ := ipExtent(frame, at) // gopacket pads short frames to 60 bytes
	l4 := end - at
	if v6 {
		ip, _ := linkHeader(frame)
		ph = append(ph, frame[ip+8:ip+40]...)
		ph = binary.BigEndian.AppendUint32(ph, uint32(l4))
		ph = append(ph, 0, 0, 0, proto)
	} else {
		ip, _ := linkHeader(frame)
		ph = append(ph, frame[ip+12:ip+20]...)
		ph = append(ph, 0, proto)
		ph = binary.BigEndian.AppendUint16(ph, uint16(l4))
	}
	return naiveSum(ph)
}

// naiveSum is the RFC 1071 sum, 16 bits at a time.
func naiveSum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// TestCompleteChecksum: a partial checksum completed in place comes out as
// gopacket computes it, for IPv4 and IPv6, TCP, UDP and SCTP, behind no,
// one or two VLAN tags, odd and even lengths, IPv6 extension headers.
func TestCompleteChecksum(t *testing.T) {
	var cases []csumCase
	for _, v6 := range []bool{false, true} {
		for _, proto := range []layers.IPProtocol{layers.IPProtocolTCP, layers.IPProtocolUDP} {
			for _, tags := range [][]layers.EthernetType{nil, {layers.EthernetTypeDot1Q}, {layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q}} {
				for _, n := range []int{0, 1, 2, 3, 7, 31, 33, 100, 1001, 1400, 1418} {
					cases = append(cases, buildCsum(t, v6, proto, tags, n, false, nil))
				}
			}
			cases = append(cases, buildCsum(t, v6, proto, nil, 513, v6, nil))
		}
		cases = append(cases, buildCsum(t, v6, layers.IPProtocolSCTP, nil, 101, false, nil),
			buildCsum(t, v6, layers.IPProtocolSCTP, []layers.EthernetType{layers.EthernetTypeDot1Q}, 64, false, nil))
	}
	for _, c := range cases {
		got := bytes.Clone(c.partial)
		if !CompleteChecksum(got, c.g) {
			t.Errorf("%s: not completed", c.name)
			continue
		}
		if !bytes.Equal(got, c.want) {
			at := int(c.g.CsumStart + c.g.CsumOffset)
			t.Errorf("%s: checksum % x, gopacket's % x", c.name, got[at:at+2], c.want[at:at+2])
		}
		if bytes.Equal(c.partial, c.want) {
			t.Errorf("%s: the partial frame already had its checksum", c.name)
		}
	}
	t.Logf("%d frames", len(cases))
}

// TestCompleteChecksumZero: a sum of zero goes out as 0xffff. For UDP it
// must, over IPv4 (0 would say "no checksum") and IPv6 (0 is refused), and
// gopacket agrees; for TCP 0xffff and 0 are the same number (gopacket
// writes 0, the kernel and this 0xffff) and the segment verifies.
func TestCompleteChecksumZero(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, proto := range []layers.IPProtocol{layers.IPProtocolUDP, layers.IPProtocolTCP} {
			// A payload word equal to the checksum computed without it
			// brings the sum to 0xffff, so the checksum to zero.
			b0 := buildCsum(t, v6, proto, nil, 40, false, func(p []byte) { binary.BigEndian.PutUint16(p[10:], 0) })
			at := int(b0.g.CsumStart + b0.g.CsumOffset)
			c0 := binary.BigEndian.Uint16(b0.want[at:])
			zero := buildCsum(t, v6, proto, nil, 40, false, func(p []byte) { binary.BigEndian.PutUint16(p[10:], c0) })
			got := bytes.Clone(zero.partial)
			if !CompleteChecksum(got, zero.g) {
				t.Fatalf("%s: not completed", zero.name)
			}
			if c := binary.BigEndian.Uint16(got[at:]); c != 0xffff {
				t.Errorf("%s: zero sum sent as %#04x, want 0xffff", zero.name, c)
			}
			ref := binary.BigEndian.Uint16(zero.want[at:])
			switch proto {
			case layers.IPProtocolUDP:
				if ref != 0xffff {
					t.Errorf("%s: gopacket wrote %#04x", zero.name, ref)
				}
			case layers.IPProtocolTCP:
				if ref != 0 {
					t.Errorf("%s: test frame's checksum is %#04x, not zero", zero.name, ref)
				}
			}
			// It verifies: pseudo-header and segment sum to 0xffff.
			seg := got[zero.g.CsumStart:]
			var ph [2]byte
			binary.BigEndian.PutUint16(ph[:], pseudoSum(got, int(zero.g.CsumStart), v6, uint8(proto)))
			if s := naiveSum(append(ph[:], seg...)); s != 0xffff {
				t.Errorf("%s: does not verify (sum %#04x)", zero.name, s)
			}
		}
	}
}

// TestCompleteChecksumBounds: Ethernet padding after the IP packet is left
// out of the sum; metadata that does not fit the frame, or a frame with
// nothing to complete, is left alone.
func TestCompleteChecksumBounds(t *testing.T) {
	c := buildCsum(t, false, layers.IPProtocolUDP, nil, 3, false, nil)
	end, _ := ipExtent(c.partial, int(c.g.CsumStart))
	if len(c.partial) != 60 || end != 14+20+8+3 {
		t.Fatalf("frame of %d bytes, IP packet ends at %d: not padded", len(c.partial), end)
	}
	padded := bytes.Clone(c.partial)
	for i := end; i < len(padded); i++ {
		padded[i] = 0xa5
	}
	if !CompleteChecksum(padded, c.g) || !bytes.Equal(padded[:end], c.want[:end]) {
		t.Errorf("padding summed in: % x, want % x", padded[:end], c.want[:end])
	}
	for name, g := range map[string]OffloadInfo{
		"no flag":          {CsumStart: c.g.CsumStart, CsumOffset: 6},
		"super-frame":      {Flags: GSONeedsCsum, Type: GSOUDPL4, CsumStart: c.g.CsumStart, CsumOffset: 6},
		"start past end":   {Flags: GSONeedsCsum, CsumStart: uint16(end), CsumOffset: 0},
		"field past end":   {Flags: GSONeedsCsum, CsumStart: c.g.CsumStart, CsumOffset: 10},
		"field in padding": {Flags: GSONeedsCsum, CsumStart: uint16(end - 2), CsumOffset: 2},
	} {
		f := bytes.Clone(padded)
		before := bytes.Clone(f)
		if CompleteChecksum(f, g) || !bytes.Equal(f, before) {
			t.Errorf("%s: frame changed", name)
		}
	}
	if CompleteChecksum(nil, c.g) || CompleteChecksum(c.partial[:10], c.g) {
		t.Error("short frame completed")
	}
}

// TestOnesSum against the 16-bit loop, every length and alignment up to
// 300 bytes, random contents, and all-ones words (the carries).
func TestOnesSum(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 301)
	for round := range 3 {
		for i := range b {
			switch round {
			case 0:
				b[i] = byte(r.Uint32())
			case 1:
				b[i] = 0xff
			case 2:
				b[i] = byte(0xfe + i%2)
			}
		}
		for start := range 2 {
			for n := 0; start+n <= len(b); n++ {
				if got, want := onesSum(b[start:start+n]), naiveSum(b[start:start+n]); got != want {
					t.Fatalf("round %d, %d bytes at %d: %#04x, want %#04x", round, n, start, got, want)
				}
			}
		}
	}
}

// TestPartialChecksum: where a kernel without a virtio_net_hdr leaves the
// checksum is found from the headers; SCTP's is not an Internet checksum.
func TestPartialChecksum(t *testing.T) {
	for _, c := range []csumCase{
		buildCsum(t, false, layers.IPProtocolTCP, nil, 10, false, nil),
		buildCsum(t, true, layers.IPProtocolUDP, []layers.EthernetType{layers.EthernetTypeDot1Q}, 11, true, nil),
		buildCsum(t, true, layers.IPProtocolSCTP, nil, 12, false, nil),
	} {
		g, ok := partialChecksum(c.partial)
		if !ok || g != c.g {
			t.Errorf("%s: %+v %v, want %+v", c.name, g, ok, c.g)
		}
		if sctp := c.g.CsumOffset == sctpCsumOffset; inetChecksum(c.partial, c.g) == sctp {
			t.Errorf("%s: inet checksum %v", c.name, !sctp)
		}
	}
	// A later fragment and ICMP carry no partial checksum.
	c := buildCsum(t, false, layers.IPProtocolUDP, nil, 10, false, nil)
	frag := bytes.Clone(c.partial)
	binary.BigEndian.PutUint16(frag[14+6:], 100)
	icmp := bytes.Clone(c.partial)
	icmp[14+9] = 1
	for name, f := range map[string][]byte{"fragment": frag, "icmp": icmp, "arp": append([]byte(nil), make([]byte, 12)...), "short": c.partial[:20]} {
		if g, ok := partialChecksum(f); ok {
			t.Errorf("%s: %+v", name, g)
		}
	}
}

// TestCompleteChecksumNoAllocs: the hot path allocates nothing.
func TestCompleteChecksumNoAllocs(t *testing.T) {
	for _, c := range []csumCase{
		buildCsum(t, false, layers.IPProtocolTCP, nil, 1446, false, nil),
		buildCsum(t, true, layers.IPProtocolSCTP, nil, 100, false, nil),
	} {
		f := bytes.Clone(c.partial)
		if n := testing.AllocsPerRun(100, func() {
			copy(f, c.partial)
			if !CompleteChecksum(f, c.g) {
				t.Fatal("not completed")
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations", c.name, n)
		}
	}
}

// BenchmarkChecksumComplete: a 1,500-byte IPv4 TCP packet (a 1,514-byte
// frame), completed in place.
func BenchmarkChecksumComplete(b *testing.B) {
	c := buildCsum(b, false, layers.IPProtocolTCP, nil, 1460, false, nil)
	f := bytes.Clone(c.partial)
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	for b.Loop() {
		binary.BigEndian.PutUint16(f[c.g.CsumStart+c.g.CsumOffset:], 0x1234)
		CompleteChecksum(f, c.g)
	}
}
