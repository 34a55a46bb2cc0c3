package capture_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"linkguard.dev/linkguard/hal/capture"
	"linkguard.dev/linkguard/hal/capture/capturetest"
)

var frames = [][]byte{
	bytes.Repeat([]byte{0xaa}, 60),
	bytes.Repeat([]byte{0xbb}, 1514),
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	ts := time.Unix(1700000000, 123456789)
	// pcap
	var pb bytes.Buffer
	w := pcapgo.NewWriterNanos(&pb)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	// pcapng
	var nb bytes.Buffer
	nw, err := pcapgo.NewNgWriter(&nb, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(f), Length: len(f) + 10}
		if err := w.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
		ci.InterfaceIndex = 0
		if err := nw.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := nw.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		data []byte
		link layers.LinkType
	}{{"a.pcap", pb.Bytes(), layers.LinkTypeRaw}, {"a.pcapng", nb.Bytes(), layers.LinkTypeEthernet}} {
		path := filepath.Join(dir, c.name)
		if err := os.WriteFile(path, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := capture.OpenFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if capture.LinkTypeOf(f) != c.link {
			t.Errorf("%s: link %v", c.name, capture.LinkTypeOf(f))
		}
		buf := make([]byte, 2048)
		for i, want := range frames {
			info, err := f.ReadFrame(buf)
			if err != nil {
				t.Fatalf("%s frame %d: %v", c.name, i, err)
			}
			if !bytes.Equal(buf[:info.CaptureLength], want) || info.Length != len(want)+10 || !info.Truncated() || !info.Timestamp.Equal(ts) {
				t.Errorf("%s frame %d: %+v", c.name, i, info)
			}
		}
		// A buffer smaller than the frame gets its head.
		if _, err := f.ReadFrame(buf); !errors.Is(err, io.EOF) {
			t.Errorf("%s: at end: %v", c.name, err)
		}
		f.Close()
	}
	if _, err := capture.NewFileReader(bytes.NewReader([]byte("not a capture at all"))); err == nil {
		t.Error("garbage accepted as a capture")
	}
}

func TestFakePort(t *testing.T) {
	p := capturetest.NewPort(1, 10*time.Millisecond)
	var _ capture.Port = p
	buf := make([]byte, 100)
	if _, err := p.ReadFrame(buf); !errors.Is(err, capture.ErrTimeout) {
		t.Fatal(err)
	}
	p.Inject(frames[0])
	p.Inject(frames[0]) // queue of 1: dropped, as a full ring drops
	if info, err := p.ReadFrame(buf); err != nil || info.CaptureLength != 60 {
		t.Fatal(info, err)
	}
	if p.Dropped != 1 {
		t.Fatal(p.Dropped)
	}
	_ = p.WriteFrame(frames[1])
	if got := p.WaitSent(1, time.Second); len(got) != 1 {
		t.Fatal(got)
	}
	p.Close()
	if _, err := p.ReadFrame(buf); !errors.Is(err, capture.ErrClosed) {
		t.Fatal(err)
	}
}

// TestLive runs over a veth pair in a fresh namespace: frames written on
// one end arrive at the other whole; the writer does not read its own
// frames back; offloads go off; MTU mismatch is caught.
func TestLive(t *testing.T) {
	ns := vethNamespace(t)
	capturetest.InNetns(t, ns, func() {
		if err := capture.DisableOffloads("va"); err != nil {
			t.Error(err)
		}
		for _, o := range []capture.Offload{capture.GRO, capture.TSO, capture.GSO, capture.TxSum} {
			if on, err := capture.OffloadEnabled("va", o); err != nil || on {
				t.Errorf("%v still on (%v)", o, err)
			}
		}
		if mtu, err := capture.CheckMTU("va", "vb"); err != nil || mtu != 1500 {
			t.Error(mtu, err)
		}
		if err := exec.Command("ip", "link", "set", "vb", "mtu", "1400").Run(); err != nil {
			t.Error(err)
		}
		if _, err := capture.CheckMTU("va", "vb"); !errors.Is(err, capture.ErrMTUMismatch) {
			t.Errorf("mtu mismatch not caught: %v", err)
		}
		_ = exec.Command("ip", "link", "set", "vb", "mtu", "1500").Run()
		a, err := capture.OpenLive("va", capture.LiveOptions{PollInterval: 20 * time.Millisecond})
		if err != nil {
			t.Error(err)
			return
		}
		defer a.Close()
		b, err := capture.OpenLive("vb", capture.LiveOptions{PollInterval: 20 * time.Millisecond})
		if err != nil {
			t.Error(err)
			return
		}
		defer b.Close()
		frame := make([]byte, 1514)
		copy(frame, []byte{0x02, 0, 0, 0, 0, 0xb, 0x02, 0, 0, 0, 0, 0xa, 0x88, 0xb5}) // local experimental ethertype
		frame[100] = 0x42
		if err := a.WriteFrame(frame); err != nil {
			t.Error(err)
			return
		}
		buf := make([]byte, 4096)
		got := false
		for range 50 {
			info, err := b.ReadFrame(buf)
			if errors.Is(err, capture.ErrTimeout) {
				break
			}
			if err != nil {
				t.Error(err)
				return
			}
			if bytes.Equal(buf[:info.CaptureLength], frame) {
				got = true
			}
		}
		if !got {
			t.Error("frame written on va did not arrive whole on vb")
		}
		// va must not read back the frame it sent.
		for {
			info, err := a.ReadFrame(buf)
			if errors.Is(err, capture.ErrTimeout) {
				break
			}
			if err != nil {
				t.Error(err)
				return
			}
			if bytes.Equal(buf[:info.CaptureLength], frame) {
				t.Error("va re-read its own frame")
			}
		}
		if _, _, err := b.Stats(); err != nil {
			t.Error(err)
		}
		a.Close()
		if _, err := a.ReadFrame(buf); !errors.Is(err, capture.ErrClosed) {
			t.Errorf("read after close: %v", err)
		}
	})
}

// vethNamespace is a fresh namespace holding the veth pair va-vb, up.
func vethNamespace(t *testing.T) string {
	t.Helper()
	return capturetest.VethNamespace(t, "lgt-cap-", "va", "vb")
}

// vethPorts opens both ends of a veth pair in a fresh namespace, offloads
// off, closed when the test ends.
func vethPorts(t *testing.T, o capture.LiveOptions) (a, b *capture.Live) {
	t.Helper()
	ns := vethNamespace(t)
	capturetest.InNetns(t, ns, func() {
		for _, p := range []string{"va", "vb"} {
			if err := capture.DisableOffloads(p); err != nil {
				t.Error(err)
			}
		}
		var err error
		if a, err = capture.OpenLive("va", o); err != nil {
			t.Error(err)
			return
		}
		if b, err = capture.OpenLive("vb", o); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// testFrame is a frame of n bytes with the local experimental ethertype
// (behind an 802.1Q tag for VLAN id vid when vid > 0) and seq in its
// payload.
func testFrame(n, vid, seq int) []byte {
	f := make([]byte, n)
	copy(f, []byte{0x02, 0, 0, 0, 0, 0xb, 0x02, 0, 0, 0, 0, 0xa})
	p := 12
	if vid > 0 {
		f[12], f[13], f[14], f[15] = 0x81, 0x00, byte(vid>>8), byte(vid)
		p = 16
	}
	f[p], f[p+1] = 0x88, 0xb5
	f[p+2], f[p+3] = byte(seq>>8), byte(seq)
	return f
}

// readAll reads test frames from p until it has been quiet for one poll
// interval. Other frames — the kernel's own IPv6 neighbour discovery and
// MLD on a link just brought up — are passed over.
func readAll(t *testing.T, p *capture.Live) [][]byte {
	t.Helper()
	var got [][]byte
	buf := make([]byte, 4096)
	for {
		info, err := p.ReadFrame(buf)
		if errors.Is(err, capture.ErrTimeout) {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		if f := buf[:info.CaptureLength]; isTestFrame(f) {
			got = append(got, bytes.Clone(f))
		}
	}
}

// isTestFrame reports whether f carries testFrame's ethertype, tagged or not.
func isTestFrame(f []byte) bool {
	switch {
	case len(f) >= 14 && f[12] == 0x88 && f[13] == 0xb5:
		return true
	case len(f) >= 18 && f[12] == 0x81 && f[13] == 0x00:
		return f[16] == 0x88 && f[17] == 0xb5
	}
	return false
}

// TestLiveTxRing: queued frames stay in the transmit ring until Flush (or
// a full batch), then arrive whole and in order, across ring wrap-arounds;
// VLAN tags the kernel strips on receive are put back; frames the kernel
// would refuse are refused at once; the read/queue/flush and the in-place
// drain/queue paths allocate nothing.
func TestLiveTxRing(t *testing.T) {
	a, b := vethPorts(t, capture.LiveOptions{PollInterval: 20 * time.Millisecond, TxRingFrames: 64, TxBatch: 8})

	// Below a batch: nothing leaves before Flush.
	for i := range 3 {
		if err := a.Queue(testFrame(100, 0, i), capture.OffloadInfo{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := readAll(t, b); len(got) != 0 {
		t.Fatalf("%d queued frames left before Flush", len(got))
	}
	if n := b.Drain(8, func([]byte, capture.Info) {}); n != 0 {
		t.Fatalf("drained %d frames with nothing sent", n)
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	// Many batches, wrapping the two-block ring (80 slots of 1,616 bytes,
	// 40 to a 64 KB block, a gap at each block's end) twice, sizes up to
	// the MTU, some tagged.
	var want [][]byte
	for i := range 3 {
		want = append(want, testFrame(100, 0, i))
	}
	for i := 3; i < 200; i++ {
		f := testFrame(60+(i*97)%1455, 0, i)
		if i%5 == 0 {
			f = testFrame(64+(i*97)%1455, 100+i, i)
		}
		want = append(want, f)
		if err := a.Queue(f, capture.OffloadInfo{}); err != nil {
			t.Fatal(i, err)
		}
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, b)
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d: got % x..., want % x...", i, got[i][:min(20, len(got[i]))], want[i][:20])
		}
	}
	// What the kernel refuses (longer than MTU + header, one tag allowed
	// on top) is refused by Queue and WriteFrame, and the ring goes on.
	if err := a.Queue(testFrame(1515, 0, 0), capture.OffloadInfo{}); !errors.Is(err, unix.EMSGSIZE) {
		t.Errorf("1515-byte untagged frame: %v", err)
	}
	if err := a.WriteFrame(testFrame(20, 0, 0)[:13]); !errors.Is(err, unix.EMSGSIZE) {
		t.Errorf("13-byte frame: %v", err)
	}
	if err := a.WriteFrame(testFrame(1518, 7, 1)); err != nil {
		t.Errorf("1518-byte tagged frame: %v", err)
	}
	if got := readAll(t, b); len(got) != 1 || !bytes.Equal(got[0], testFrame(1518, 7, 1)) {
		t.Errorf("after refusals got %d frames", len(got))
	}

	// No allocation per frame: queue, flush, ready, read.
	f := testFrame(1514, 0, 0)
	buf := make([]byte, 4096)
	allocs := testing.AllocsPerRun(200, func() {
		if err := a.Queue(f, capture.OffloadInfo{}); err != nil {
			t.Fatal(err)
		}
		if err := a.Flush(); err != nil {
			t.Fatal(err)
		}
		if _, err := b.ReadFrame(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per frame", allocs)
	}
	// In place: b's frames go back to a without being copied out.
	back := func(frame []byte, _ capture.Info) {
		if err := a.Queue(frame, capture.OffloadInfo{}); err != nil {
			t.Fatal(err)
		}
	}
	allocs = testing.AllocsPerRun(200, func() {
		if err := a.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
		if err := b.Wait(time.Second); err != nil {
			t.Fatal(err)
		}
		for b.Drain(8, back) == 0 {
		}
		_ = a.Flush()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per drained frame", allocs)
	}
}

// TestLiveOffloads: ports opened with Offloads carry a TCP super-frame
// whole, with its offload metadata, across a veth pair (which passes it on
// unsegmented): written on its own, read whole off the socket queue; the
// kernel's checksum-pending frame keeps its flag; a VLAN tag restored
// moves the checksum start with it; frames queued on the ring before a
// super-frame leave before it; a port without Offloads refuses metadata.
func TestLiveOffloads(t *testing.T) {
	ns := vethNamespace(t)
	var a, b, plain *capture.Live
	capturetest.InNetns(t, ns, func() {
		for _, p := range []string{"va", "vb"} {
			if err := capture.EnableOffloads(p); err != nil {
				t.Error(err)
			}
		}
		var err error
		o := capture.LiveOptions{PollInterval: 20 * time.Millisecond, Offloads: true}
		if a, err = capture.OpenLive("va", o); err != nil {
			t.Error(err)
			return
		}
		if b, err = capture.OpenLive("vb", o); err != nil {
			t.Error(err)
			return
		}
		if plain, err = capture.OpenLive("va", capture.LiveOptions{PollInterval: 20 * time.Millisecond}); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	t.Cleanup(func() { a.Close(); b.Close(); plain.Close() })

	for _, vid := range []int{0, 42} {
		frame, gso := tcpSuperFrame(20000, 1448, vid)
		if err := a.Queue(frame, gso); err != nil {
			t.Fatal(err)
		}
		if err := a.Flush(); err != nil {
			t.Fatal(err)
		}
		var got []byte
		var info capture.Info
		deadline := time.Now().Add(2 * time.Second)
		for got == nil && time.Now().Before(deadline) {
			_ = b.Wait(20 * time.Millisecond)
			b.Drain(16, func(f []byte, i capture.Info) {
				if len(f) > 1000 {
					got, info = bytes.Clone(f), i
				}
			})
		}
		if !bytes.Equal(got, frame) {
			t.Fatalf("vid %d: super-frame not carried whole: got %d bytes, want %d", vid, len(got), len(frame))
		}
		g := info.GSO
		if g.Type != capture.GSOTCPv4 || g.Size != 1448 || g.Flags&capture.GSONeedsCsum == 0 || g.CsumStart != gso.CsumStart || g.CsumOffset != 16 {
			t.Errorf("vid %d: offload metadata %+v, sent %+v", vid, g, gso)
		}
		if n := g.Segments(len(got)); n != 14 {
			t.Errorf("vid %d: %d segments, want 14", vid, n)
		}
	}
	// Order holds between frames queued on the ring and a super-frame
	// written on its own: queued ones leave first.
	frame, gso := tcpSuperFrame(30000, 1448, 0)
	var want [][]byte
	for i := range 5 {
		if i == 3 {
			want = append(want, frame)
			if err := a.Queue(frame, gso); err != nil {
				t.Fatal(err)
			}
		}
		f := testFrame(200, 0, i)
		want = append(want, f)
		if err := a.Queue(f, capture.OffloadInfo{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	deadline := time.Now().Add(2 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		_ = b.Wait(20 * time.Millisecond)
		b.Drain(16, func(f []byte, _ capture.Info) {
			if isTestFrame(f) || len(f) > 1000 {
				got = append(got, bytes.Clone(f))
			}
		})
	}
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("frame %d out of order or changed (%d bytes, want %d)", i, len(got[i]), len(want[i]))
		}
	}
	if err := plain.Queue(frame, gso); !errors.Is(err, capture.ErrUnsupported) {
		t.Errorf("metadata on a port without Offloads: %v", err)
	}
	// A super-frame's way, out and in, allocates nothing either.
	seen := 0
	count := func(f []byte, _ capture.Info) {
		if len(f) > 1000 {
			seen++
		}
	}
	allocs := testing.AllocsPerRun(50, func() {
		if err := a.Queue(frame, gso); err != nil {
			t.Fatal(err)
		}
		for start := seen; seen == start; {
			if err := b.Wait(time.Second); err != nil {
				t.Fatal(err)
			}
			b.Drain(16, count)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per super-frame", allocs)
	}
}

// tcpSuperFrame is an Ethernet/IPv4/TCP frame with payload bytes of
// payload (behind an 802.1Q tag for vid > 0), its checksum left to the
// kernel as a TSO sender's is (pseudo-header sum only), and the metadata
// to send it as segments of mss.
func tcpSuperFrame(payload, mss, vid int) ([]byte, capture.OffloadInfo) {
	l2 := 14
	if vid > 0 {
		l2 = 18
	}
	f := make([]byte, l2+20+20+payload)
	copy(f, []byte{0x02, 0, 0, 0, 0, 0xb, 0x02, 0, 0, 0, 0, 0xa})
	if vid > 0 {
		f[12], f[13], f[14], f[15] = 0x81, 0x00, byte(vid>>8), byte(vid)
	}
	f[l2-2], f[l2-1] = 0x08, 0x00
	ip := f[l2:]
	ip[0], ip[8], ip[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(ip[2:], uint16(20+20+payload))
	copy(ip[12:], []byte{10, 1, 0, 2, 198, 51, 100, 7})
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	tcp[12], tcp[13] = 5<<4, 0x18 // PSH ACK
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	for i := range payload {
		tcp[20+i] = byte(i * 7)
	}
	// Pseudo-header sum, as the stack leaves it for the hardware.
	sum = 0
	for i := 12; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	sum += 6 + uint32(20+payload)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(tcp[16:], uint16(sum))
	return f, capture.OffloadInfo{
		Flags: capture.GSONeedsCsum, Type: capture.GSOTCPv4, HdrLen: uint16(l2 + 40), Size: uint16(mss),
		CsumStart: uint16(l2 + 20), CsumOffset: 16,
	}
}
