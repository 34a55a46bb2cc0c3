package capture_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
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
	"linkguard.dev/linkguard/hal/capture/pcapfile"
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
		link pcapfile.LinkType
	}{{"a.pcap", pb.Bytes(), pcapfile.LinkTypeRaw}, {"a.pcapng", nb.Bytes(), pcapfile.LinkTypeEthernet}} {
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
	_, a, b = vethPortsIn(t, o)
	return a, b
}

// vethPortsIn is vethPorts that also names the namespace, for a test that
// changes the links.
func vethPortsIn(t *testing.T, o capture.LiveOptions) (ns string, a, b *capture.Live) {
	t.Helper()
	ns = vethNamespace(t)
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
	return ns, a, b
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
	// Many batches, wrapping the two-block ring (80 slots of 1,632 bytes,
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
// super-frame leave before it; a port without Offloads sends one on too
// (the kernel segments it where it must), one without offload metadata
// refuses it.
func TestLiveOffloads(t *testing.T) {
	ns := vethNamespace(t)
	var a, b, plain, bare *capture.Live
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
			return
		}
		if bare, err = capture.OpenLiveWithoutMetadata("va", capture.LiveOptions{PollInterval: 20 * time.Millisecond}); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	t.Cleanup(func() { a.Close(); b.Close(); plain.Close(); bare.Close() })

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
	if err := plain.Queue(frame, gso); err != nil {
		t.Errorf("super-frame on a port without Offloads: %v", err)
	}
	var whole []byte
	for deadline := time.Now().Add(2 * time.Second); whole == nil && time.Now().Before(deadline); {
		_ = b.Wait(20 * time.Millisecond)
		b.Drain(16, func(f []byte, _ capture.Info) {
			if len(f) > 1000 {
				whole = bytes.Clone(f)
			}
		})
	}
	if !bytes.Equal(whole, frame) {
		t.Errorf("super-frame from a port without Offloads: got %d bytes, want %d", len(whole), len(frame))
	}
	if err := bare.Queue(frame, gso); !errors.Is(err, capture.ErrUnsupported) {
		t.Errorf("super-frame on a port without offload metadata: %v", err)
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

// TestLivePartialChecksums: a port whose own offloads are off still sees
// the partial checksums a veth peer with its default offloads sends
// (NeedsCsum in Info.GSO, through PACKET_VNET_HDR, or from the ring's
// status and the headers on a kernel without it), and Queue on a port
// without Offloads sends them filled in, counted; a port with Offloads
// passes them on for the kernel to fill in.
func TestLivePartialChecksums(t *testing.T) {
	ns := vethNamespace(t)
	var a, carry, b, old *capture.Live
	capturetest.InNetns(t, ns, func() {
		// va is the peer: it keeps veth's defaults and sends from its stack.
		for _, args := range [][]string{
			{"addr", "add", "10.77.0.1/24", "dev", "va"},
			{"addr", "add", "fd00:77::1/64", "dev", "va", "nodad"},
			{"neigh", "add", "10.77.0.2", "lladdr", "02:00:00:00:77:02", "dev", "va"},
			{"neigh", "add", "fd00:77::2", "lladdr", "02:00:00:00:77:02", "dev", "va"},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				t.Errorf("ip %v: %v %s", args, err, out)
			}
		}
		if on, err := capture.OffloadEnabled("va", capture.TxSum); err != nil || !on {
			t.Errorf("va: tx checksumming on %v (%v), want veth's default (on)", on, err)
		}
		if err := capture.DisableOffloads("vb"); err != nil {
			t.Error(err)
		}
		o := capture.LiveOptions{PollInterval: 20 * time.Millisecond}
		var err error
		if b, err = capture.OpenLive("vb", o); err != nil {
			t.Error(err)
			return
		}
		if old, err = capture.OpenLiveWithoutMetadata("vb", o); err != nil {
			t.Error(err)
			return
		}
		if a, err = capture.OpenLive("va", o); err != nil {
			t.Error(err)
			return
		}
		o.Offloads = true
		if carry, err = capture.OpenLive("va", o); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	t.Cleanup(func() { a.Close(); carry.Close(); b.Close(); old.Close() })
	if !b.Metadata() || old.Metadata() {
		t.Fatalf("metadata: %v, %v without", b.Metadata(), old.Metadata())
	}

	// The peer's stack sends UDP of odd and even sizes and TCP SYNs, over
	// IPv4 and IPv6; nothing answers.
	send := func() {
		capturetest.InNetns(t, ns, func() {
			for _, dst := range []string{"10.77.0.2", "fd00:77::2"} {
				for _, n := range []int{1, 2, 99, 1000, 1401} {
					c, err := net.Dial("udp", net.JoinHostPort(dst, "5202"))
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = c.Write(bytes.Repeat([]byte{byte(n)}, n))
					c.Close()
				}
				if c, err := net.DialTimeout("tcp", net.JoinHostPort(dst, "5201"), 50*time.Millisecond); err == nil {
					c.Close()
				}
			}
		})
	}
	type got struct {
		f []byte
		g capture.OffloadInfo
	}
	// read collects the IP frames that arrive on p until it is quiet.
	read := func(p *capture.Live) []got {
		var out []got
		for {
			if err := p.Wait(200 * time.Millisecond); err != nil {
				t.Fatal(err)
			}
			if p.Drain(64, func(f []byte, i capture.Info) {
				if isProbe(f) {
					out = append(out, got{bytes.Clone(f), i.GSO})
				}
			}) == 0 {
				return out
			}
		}
	}
	send()
	sent := read(b)
	seenOld := read(old)
	if len(sent) < 12 || len(seenOld) != len(sent) {
		t.Fatalf("%d frames from the peer, %d on the port without metadata", len(sent), len(seenOld))
	}
	for i, s := range sent {
		if s.g.Flags&capture.GSONeedsCsum == 0 || s.g.Type != capture.GSONone {
			t.Fatalf("frame %d (%d bytes): metadata %+v, want a partial checksum", i, len(s.f), s.g)
		}
		if o := seenOld[i]; !bytes.Equal(o.f, s.f) || o.g.Flags != capture.GSONeedsCsum || o.g.CsumStart != s.g.CsumStart || o.g.CsumOffset != s.g.CsumOffset {
			t.Errorf("frame %d: without metadata %+v, with %+v", i, o.g, s.g)
		}
		if verified(t, s.f) {
			t.Errorf("frame %d: the peer's checksum is already complete", i)
		}
	}

	// Sent on by a port without Offloads: filled in, counted.
	for _, s := range sent {
		if err := a.Queue(s.f, s.g); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	back := read(b)
	if len(back) != len(sent) || a.ChecksumsCompleted() != uint64(len(sent)) {
		t.Fatalf("%d frames back of %d sent, %d checksums completed", len(back), len(sent), a.ChecksumsCompleted())
	}
	for i, r := range back {
		if r.g.Flags&capture.GSONeedsCsum != 0 || !verified(t, r.f) || len(r.f) != len(sent[i].f) {
			t.Errorf("frame %d: sent on with metadata %+v, checksum verified %v", i, r.g, verified(t, r.f))
		}
	}
	_ = read(old)

	// Sent on by a port with Offloads: still partial, for the kernel.
	for _, s := range sent {
		if err := carry.Queue(s.f, s.g); err != nil {
			t.Fatal(err)
		}
	}
	if err := carry.Flush(); err != nil {
		t.Fatal(err)
	}
	back = read(b)
	if len(back) != len(sent) || carry.ChecksumsCompleted() != 0 {
		t.Fatalf("%d frames back of %d, %d completed by the carrying port", len(back), len(sent), carry.ChecksumsCompleted())
	}
	for i, r := range back {
		if r.g != sent[i].g || !bytes.Equal(r.f, sent[i].f) {
			t.Errorf("frame %d: carried with %+v, want %+v as sent", i, r.g, sent[i].g)
		}
	}
}

// verified reports whether frame's TCP or UDP checksum is right: gopacket
// computes it afresh from the decoded layers.
func verified(t *testing.T, frame []byte) bool {
	t.Helper()
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	var nl gopacket.NetworkLayer
	if l := pkt.NetworkLayer(); l != nil {
		nl = l
	}
	var ls []gopacket.SerializableLayer
	for _, l := range pkt.Layers() {
		switch l := l.(type) {
		case *layers.TCP:
			_ = l.SetNetworkLayerForChecksum(nl)
		case *layers.UDP:
			_ = l.SetNetworkLayerForChecksum(nl)
		}
		if s, ok := l.(gopacket.SerializableLayer); ok {
			ls = append(ls, s)
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	// gopacket pads a frame shorter than 60 bytes.
	return len(buf.Bytes()) >= len(frame) && bytes.Equal(buf.Bytes()[:len(frame)], frame)
}

// isProbe reports whether f is IPv4 or IPv6 TCP or UDP to port 5201 or
// 5202 (what TestLivePartialChecksums sends; not the kernel's own ND).
func isProbe(f []byte) bool {
	pkt := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	switch l := pkt.TransportLayer().(type) {
	case *layers.TCP:
		return l.DstPort == 5201
	case *layers.UDP:
		return l.DstPort == 5202
	}
	return false
}

// TestLiveTxRefused: the kernel keeps a transmit-ring frame its driver
// refuses at the ring's head and retries it at every send, so one frame
// the port can never send would stop the ring for good. A super-frame small
// enough for a slot, on a port without offloads (the qdisc-bypassing ring
// cannot segment it), goes out segmented like any other; a frame the peer
// refuses every time (longer than the peer's MTU) is dropped after the
// poll interval, counted, and the frames behind it leave in order.
func TestLiveTxRefused(t *testing.T) {
	ns, a, b := vethPortsIn(t, capture.LiveOptions{PollInterval: 20 * time.Millisecond, TxRingFrames: 64, TxBatch: 8})
	collect := func(want int, keep func([]byte) bool) [][]byte {
		var got [][]byte
		for deadline := time.Now().Add(2 * time.Second); len(got) < want && time.Now().Before(deadline); {
			_ = b.Wait(20 * time.Millisecond)
			b.Drain(16, func(f []byte, _ capture.Info) {
				if keep(f) {
					got = append(got, bytes.Clone(f))
				}
			})
		}
		return got
	}

	// Two 600-byte segments: 1,254 bytes, a slot's worth.
	small, gso := tcpSuperFrame(1200, 600, 0)
	for i := range 3 {
		if err := a.Queue(small, gso); err != nil {
			t.Fatal(i, err)
		}
		if err := a.Queue(testFrame(100, 0, i), capture.OffloadInfo{}); err != nil {
			t.Fatal(i, err)
		}
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	got := collect(9, func(f []byte) bool { return isTestFrame(f) || len(f) > 600 })
	segs, frames := 0, 0
	for _, f := range got {
		if isTestFrame(f) {
			frames++
		} else if len(f) == 14+40+600 {
			segs++
		}
	}
	if segs != 6 || frames != 3 {
		t.Errorf("small super-frames: %d segments and %d frames arrived, want 6 and 3", segs, frames)
	}

	// The peer goes down: without carrier the driver refuses every frame,
	// and the one at the ring's head is dropped once a poll interval has
	// passed; what is queued behind it waits its turn, and once the peer
	// is back up the frames sent leave in order.
	link := func(state string) {
		t.Helper()
		if out, err := exec.Command("ip", "-n", ns, "link", "set", "vb", state).CombinedOutput(); err != nil {
			t.Fatalf("ip link set vb %s: %v %s", state, err, out)
		}
	}
	link("down")
	if err := a.WriteFrame(testFrame(200, 0, 1000)); err != nil {
		t.Fatal(err)
	}
	for i := 0; a.TxDropped() == 0 && i < 2000; i++ {
		if err := a.WriteFrame(testFrame(200, 0, 2000+i)); err != nil && !errors.Is(err, capture.ErrTxBusy) {
			t.Fatal(i, err)
		}
		time.Sleep(time.Millisecond)
	}
	if a.TxDropped() == 0 {
		t.Fatal("no frame dropped in 2,000 sends without carrier")
	}
	link("up")
	// Once a probe gets through again, twenty frames follow in order
	// (frames from before the outage may still arrive: they are not
	// among the twenty).
	probe := testFrame(200, 0, 3000)
	seen, last := false, 0
	for deadline := time.Now().Add(5 * time.Second); !seen && time.Now().Before(deadline); {
		if err := a.WriteFrame(probe); err != nil && !errors.Is(err, capture.ErrTxBusy) {
			t.Fatal(err)
		}
		_ = b.Wait(10 * time.Millisecond)
		b.Drain(64, func(f []byte, _ capture.Info) {
			seen = seen || bytes.Equal(f, probe)
			// Frames queued during the outage that were not dropped
			// arrive intact and in order: dropping one moves the rest up.
			if seq := int(f[14])<<8 | int(f[15]); isTestFrame(f) && seq >= 2000 && seq < 3000 {
				if !bytes.Equal(f, testFrame(200, 0, seq)) || seq <= last {
					t.Errorf("frame %d from the outage changed or out of order (after %d)", seq, last)
				}
				last = seq
			}
		})
	}
	if !seen {
		t.Fatalf("nothing got through once the peer was back up (dropped %d)", a.TxDropped())
	}
	var want [][]byte
	for i := range 20 {
		want = append(want, testFrame(200, 0, i))
		if err := a.WriteFrame(want[i]); err != nil {
			t.Fatal(i, err)
		}
	}
	got = collect(len(want), func(f []byte) bool { return isTestFrame(f) && len(f) == 200 && int(f[14])<<8|int(f[15]) < 20 })
	if len(got) != len(want) {
		t.Fatalf("after the outage %d of %d frames arrived", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d out of order or changed", i)
		}
	}
}
