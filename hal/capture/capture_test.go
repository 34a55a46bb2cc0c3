package capture_test

import (
	"bytes"
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
	ns := capturetest.Namespace(t, "lgt-cap-")
	for _, args := range [][]string{
		{"link", "add", "va", "type", "veth", "peer", "name", "vb"},
		{"link", "set", "va", "up"}, {"link", "set", "vb", "up"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
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
