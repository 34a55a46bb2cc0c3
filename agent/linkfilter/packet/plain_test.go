package packet

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"linkguard.dev/linkguard/hal/capture/pcapfile"
)

// plainFrames are frames plain must take: TCP and UDP over IPv4 and IPv6,
// bare and padded to Ethernet's minimum.
func plainFrames() [][]byte {
	ether := func(et uint16) []byte {
		b := []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0, 0}
		binary.BigEndian.PutUint16(b[12:], et)
		return b
	}
	tcp := []byte{0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 2, 0x50, 0x12, 0xff, 0xff, 0, 0, 0, 0}
	udp := func(n int) []byte {
		b := make([]byte, 8+n)
		binary.BigEndian.PutUint16(b, 5000)
		binary.BigEndian.PutUint16(b[2:], 53)
		binary.BigEndian.PutUint16(b[4:], uint16(8+n))
		return b
	}
	v4 := func(proto byte, l4 []byte) []byte {
		h := []byte{0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0, 10, 1, 0, 5, 198, 51, 100, 7}
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
		return append(append(ether(EtherIPv4), h...), l4...)
	}
	v6 := func(proto byte, l4 []byte) []byte {
		h := make([]byte, 40)
		h[0], h[6], h[7] = 0x60, proto, 64
		binary.BigEndian.PutUint16(h[4:], uint16(len(l4)))
		copy(h[8:], []byte{0xfd, 0, 0, 1, 15: 5})
		copy(h[24:], []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0xaa, 15: 1})
		return append(append(ether(EtherIPv6), h...), l4...)
	}
	pad := func(b []byte) []byte { return append(b, make([]byte, max(0, 60-len(b)))...) }
	return [][]byte{
		v4(ProtoTCP, tcp), pad(v4(ProtoUDP, udp(0))), v4(ProtoUDP, udp(30)),
		v6(ProtoTCP, tcp), v6(ProtoUDP, udp(4)), pad(v4(ProtoTCP, tcp)),
	}
}

// stale is a Packet as a previous frame leaves it, every field set, so
// a field plain forgets to clear shows.
var stale = func() Packet {
	l := Layer{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("2001:db8::1"), Proto: 99, Via: EncapGRE,
		IPv6: true, HopLimit: 3, L4: true, TCPFlags: 0xff, SPort: 1, DPort: 2, ICMPType: 3, ICMPCode: 4,
		LinkControl: true, LinkScoped: true, Frag: LaterFragment, FragID: 5, FragOff: 6, FragEnd: 7,
		Seq: 8, Ack: 9, Payload: 10, L3Off: 11}
	p := Packet{Kind: KindMalformed, Problem: ProblemOpaque, N: 3, Inner: LinkARP, Link: LinkLLDP,
		EtherType: 0x88cc, Truncated: true, Segments: 4}
	for i := range p.L {
		p.L[i] = l
	}
	return p
}()

// checkPlain fails t if plain takes b and fills p other than walkAll.
func checkPlain(t *testing.T, d *Decoder, b []byte, truncated bool) bool {
	fast, full := stale, stale
	if !plain(b, truncated, &fast) {
		return false
	}
	d.walkAll(b, truncated, &full)
	if fast != full {
		t.Fatalf("% x (truncated %v):\nplain %+v\nwalk  %+v", b, truncated, fast, full)
	}
	return true
}

// TestPlainMatchesWalk holds the straight decode of the common frame to
// the full walk: every frame, every byte of it set to every value, and cut
// or padded to every length around its own.
func TestPlainMatchesWalk(t *testing.T) {
	d := NewDecoder(pcapfile.LinkTypeEthernet, Options{})
	taken := 0
	for _, fr := range plainFrames() {
		if !checkPlain(t, d, fr, false) {
			t.Fatalf("plain refused % x", fr)
		}
		for i := range fr {
			for v := range 256 {
				b := append([]byte(nil), fr...)
				b[i] = byte(v)
				for _, tr := range []bool{false, true} {
					if checkPlain(t, d, b, tr) {
						taken++
					}
				}
			}
		}
		for n := range len(fr) + 24 {
			b := make([]byte, n)
			copy(b, fr)
			for _, tr := range []bool{false, true} {
				checkPlain(t, d, b, tr)
			}
		}
	}
	if taken == 0 {
		t.Fatal("plain took no mutated frame")
	}
}

// FuzzPlain: whatever plain takes, it decodes as walkAll does.
func FuzzPlain(f *testing.F) {
	for _, fr := range plainFrames() {
		f.Add(fr, false)
	}
	d := NewDecoder(pcapfile.LinkTypeEthernet, Options{})
	f.Fuzz(func(t *testing.T, b []byte, truncated bool) {
		checkPlain(t, d, b, truncated)
	})
}
