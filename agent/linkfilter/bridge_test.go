package linkfilter

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"linkguard.dev/linkguard/hal/capture"
	"linkguard.dev/linkguard/hal/capture/capturetest"
)

func TestBridgeForwardsAllowedOnly(t *testing.T) {
	ev, err := OpenEvidence(t.TempDir(), 1<<20, layers.LinkTypeEthernet)
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
	arp := append(frame(t, &layers.Ethernet{SrcMAC: macA, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}), make([]byte, 28)...)
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
	ev, err := OpenEvidence(dir, maxBytes, layers.LinkTypeEthernet)
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
	ev2, err := OpenEvidence(dir, maxBytes, layers.LinkTypeEthernet)
	if err != nil || ev2.Bytes() != total {
		t.Fatalf("reopen: %v, %d bytes, want %d", err, ev2.Bytes(), total)
	}
}
