package linkfilter

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"linkguard.dev/linkguard/hal/capture"
	"linkguard.dev/linkguard/hal/capture/capturetest"
	"linkguard.dev/linkguard/hal/capture/pcapfile"
)

func TestBridgeForwardsAllowedOnly(t *testing.T) {
	ev, err := OpenEvidence(t.TempDir(), 1<<20, pcapfile.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	f := New(Options{Site: "s1", Evidence: ev})
	f.SetMatcher(testMatcher(t, testPolicy))
	in, out := capturetest.NewPort(64, 10*time.Millisecond), capturetest.NewPort(64, 10*time.Millisecond)
	br := NewBridge(f, in, out)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- br.Run(ctx) }()

	approved := tcp4(t, "10.1.0.5", "198.51.100.7", 40000, 22, true, false, nil)
	denied := tcp4(t, "10.1.0.5", "8.8.8.8", 40000, 443, true, false, nil)
	reply := tcp4(t, "198.51.100.7", "10.1.0.5", 22, 40000, true, true, nil)
	arp := arpRequest(t)
	in.Inject(denied)
	in.Inject(approved)
	in.Inject(arp)
	out.Inject(reply)
	got := out.WaitSent(2, 2*time.Second)
	back := in.WaitSent(1, 2*time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !bytes.Equal(got[0], approved) || !bytes.Equal(got[1], arp) {
		t.Errorf("outside got %d frames", len(got))
	}
	if len(back) != 1 || !bytes.Equal(back[0], reply) {
		t.Errorf("inside got %d frames", len(back))
	}
	if err := ev.Close(); err != nil {
		t.Fatal(err)
	}
	// The denied frame is the evidence.
	files, _ := filepath.Glob(filepath.Join(ev.dir, "evidence-*.pcap"))
	if len(files) != 1 {
		t.Fatalf("evidence files %v", files)
	}
	src, err := capture.OpenFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	buf := make([]byte, 2048)
	info, err := src.ReadFrame(buf)
	if err != nil || !bytes.Equal(buf[:info.CaptureLength], denied) {
		t.Fatalf("evidence frame: %v", err)
	}
}

func TestEvidenceRingBounded(t *testing.T) {
	dir := t.TempDir()
	const maxBytes = 256 << 10
	ev, err := OpenEvidence(dir, maxBytes, pcapfile.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	fr := make([]byte, 1514)
	for i := range 2000 { // ~3 MB through a 256 KiB ring
		if err := ev.Write(time.Unix(0, t0+int64(i)), fr, len(fr)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ev.Close(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	var total int64
	for _, e := range ents {
		fi, _ := e.Info()
		total += fi.Size()
	}
	if total > maxBytes || len(ents) < 4 {
		t.Fatalf("%d files, %d bytes on disk, ring of %d", len(ents), total, maxBytes)
	}
	// Reopening counts what is there.
	ev2, err := OpenEvidence(dir, maxBytes, pcapfile.LinkTypeEthernet)
	if err != nil || ev2.Bytes() != total {
		t.Fatalf("reopen: %v, %d bytes, want %d", err, ev2.Bytes(), total)
	}
}

// TestBridgeBatches: with ports that batch, frames that arrived together
// leave in one flush, and a frame is not held once its source has nothing
// more waiting.
func TestBridgeBatches(t *testing.T) {
	f := New(Options{Site: "s1"})
	f.SetMatcher(testMatcher(t, testPolicy))
	in := capturetest.NewPort(64, 10*time.Millisecond)
	out := capturetest.NewPort(64, 10*time.Millisecond)
	var want [][]byte
	for i := range 5 {
		fr := tcp4(t, "10.1.0.5", "198.51.100.7", uint16(40000+i), 22, true, false, nil)
		want = append(want, fr)
		in.Inject(fr)
	}
	in.Inject(tcp4(t, "10.1.0.5", "8.8.8.8", 40000, 443, true, false, nil)) // denied
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- NewBridge(f, in, out).Run(ctx) }()
	got := out.WaitSent(5, 2*time.Second)
	late := tcp4(t, "10.1.0.5", "198.51.100.7", 41000, 22, true, false, nil)
	in.Inject(late)
	got = append(got, out.WaitSent(1, 2*time.Second)...)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want = append(want, late)
	if len(got) != len(want) {
		t.Fatalf("outside got %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("frame %d differs", i)
		}
	}
	if n := out.Flushes(); n != 2 {
		t.Errorf("%d flushes, want 2 (the five waiting frames together, then the late one)", n)
	}
}

// TestBridgeOffloads: a super-frame passes with its offload metadata; one
// whose metadata does not describe its packet (a tunnel the NIC merged) is
// dropped and counted, not forwarded to be segmented wrongly.
func TestBridgeOffloads(t *testing.T) {
	f := New(Options{Site: "s1"})
	f.SetMatcher(testMatcher(t, testPolicy))
	in := capturetest.NewPort(64, 10*time.Millisecond)
	out := capturetest.NewPort(64, 10*time.Millisecond)
	in.Offloads, out.Offloads = true, true
	payload := make([]byte, 8000)
	super := tcp4(t, "10.1.0.5", "198.51.100.7", 40000, 22, false, true, payload)
	tcpGSO := capture.OffloadInfo{Flags: capture.GSONeedsCsum, Type: capture.GSOTCPv4, HdrLen: 54, Size: 1448, CsumStart: 34, CsumOffset: 16}
	in.InjectOffload(super, tcpGSO)
	udpGSO := tcpGSO
	udpGSO.Type, udpGSO.CsumOffset = capture.GSOUDPL4, 6
	in.InjectOffload(super, udpGSO) // TCP packet, UDP metadata
	plain := tcp4(t, "10.1.0.5", "198.51.100.7", 40001, 22, true, false, nil)
	in.Inject(plain)
	ctx, cancel := context.WithCancel(context.Background())
	br := NewBridge(f, in, out)
	done := make(chan error)
	go func() { done <- br.Run(ctx) }()
	got := out.WaitSent(2, 2*time.Second)
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !bytes.Equal(got[0], super) || !bytes.Equal(got[1], plain) {
		t.Fatalf("outside got %d frames", len(got))
	}
	if g := out.SentOffloads(); len(g) != 2 || g[0] != tcpGSO || g[1] != (capture.OffloadInfo{}) {
		t.Errorf("offload metadata sent: %+v", g)
	}
	if n := br.OffloadMismatches(); n != 1 {
		t.Errorf("%d mismatches counted, want 1", n)
	}
	s := f.Snapshot()
	if want := uint64(2*tcpGSO.Segments(len(super)) + 1); s.SuperFrames != 2 || s.Passed != want {
		t.Errorf("super-frames %d, passed %d, want 2 and %d", s.SuperFrames, s.Passed, want)
	}
}
