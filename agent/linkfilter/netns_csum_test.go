package linkfilter_test

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"linkguard.dev/linkguard/agent/linkfilter"
	"linkguard.dev/linkguard/hal/capture"
	"linkguard.dev/linkguard/hal/capture/capturetest"
)

// TestNetnsChecksum is issue 14's partial checksums: endpoints LEFT AT
// veth's default offloads (transmit checksumming, TSO and GSO on, so their
// frames carry only the pseudo-header sum and their bulk data leaves as 64
// KB super-frames) talk through the inline bridge with its ports' offloads
// off, as links.offloads false runs it. Approved TCP connects both ways,
// IPv4 and IPv6; a few MiB each way through the echo server arrive intact;
// the endpoints' stacks count no checksum errors; the bridge counts the
// checksums it filled in and says once per side why; unapproved is still
// dropped.
func TestNetnsChecksum(t *testing.T) {
	tp := newTopoEnds(t, false)
	for _, end := range [][2]string{{tp.cust, "c0"}, {tp.bord, "b0"}} {
		capturetest.InNetns(t, end[0], func() {
			for _, o := range []capture.Offload{capture.TxSum, capture.TSO} {
				if on, err := capture.OffloadEnabled(end[1], o); err != nil || !on {
					t.Errorf("%s: %v on %v (%v), want veth's default (on)", end[1], o, on, err)
				}
			}
		})
	}
	logs := &lockedBuffer{}
	f := linkfilter.New(linkfilter.Options{Site: "s1", Logger: slog.New(slog.NewTextHandler(logs, nil))})
	f.SetMatcher(e2eMatcher(t, 1, ""))
	br := tp.startBridgeWith(t, f, capture.LiveOptions{PollInterval: 50 * time.Millisecond})
	serve(t, tp.bord)
	serve(t, tp.cust)
	before := map[string]csumErrors{tp.cust: readCsumErrors(t, tp.cust), tp.bord: readCsumErrors(t, tp.bord)}

	for _, c := range []struct {
		from, kind, addr string
		pass             bool
	}{
		{tp.cust, "tcp", hostPort("198.51.100.7", tcpPort), true},
		{tp.cust, "tcp", hostPort("2001:db8:aa::7", tcpPort), true},
		{tp.bord, "tcp-from-198.51.100.7", hostPort("10.1.0.2", tcpPort), true},
		{tp.bord, "tcp-from-2001:db8:aa::7", hostPort("fd00:1::2", tcpPort), true},
		{tp.cust, "udp", hostPort("198.51.100.7", udpPort), true},
		{tp.cust, "udp", hostPort("2001:db8:aa::7", udpPort), true},
		{tp.cust, "tcp", hostPort("203.0.113.7", tcpPort), false},
	} {
		timeout := 3 * time.Second
		if !c.pass {
			timeout = time.Second
		}
		if got := probe(t, c.from, c.kind, c.addr, timeout); got != c.pass {
			t.Errorf("%s %s from %s: passed=%v, want %v", c.kind, c.addr, c.from, got, c.pass)
		}
	}
	const n = 4 << 20
	for _, addr := range []string{hostPort("198.51.100.7", tcpPort), hostPort("2001:db8:aa::7", tcpPort)} {
		start := time.Now()
		if out, err := helper(t, tp.cust, "bulk", addr, strconv.Itoa(n)).CombinedOutput(); err != nil {
			s := f.Snapshot()
			t.Fatalf("bulk %s: %v %s\nsuper-frames %d, truncated %d, write errors %d, offload mismatches %d, checksums completed %d\n%s",
				addr, err, out, s.SuperFrames, s.Truncated, br.WriteErrors(), br.OffloadMismatches(), br.ChecksumsCompleted(), logs)
		}
		t.Logf("bulk %s: %d MiB each way in %v", addr, n>>20, time.Since(start).Round(time.Millisecond))
	}

	s := f.Snapshot()
	done := br.ChecksumsCompleted()
	t.Logf("checksums completed %d; frames passed %d (super-frames %d), truncated %d, write errors %d; LA-1 %d packets, %d bytes",
		done, s.Passed, s.SuperFrames, s.Truncated, br.WriteErrors(), s.Approvals[0].Packets, s.Approvals[0].Bytes)
	if done == 0 || s.SuperFrames == 0 || s.Truncated != 0 || br.WriteErrors() != 0 || s.Approvals[0].Bytes < 4*n {
		t.Errorf("checksums completed %d, super-frames %d, truncated %d, write errors %d, LA-1 %d bytes (want > 0, > 0, 0, 0, >= %d)",
			done, s.SuperFrames, s.Truncated, br.WriteErrors(), s.Approvals[0].Bytes, 4*n)
	}
	for ns, b := range before {
		if a := readCsumErrors(t, ns); a != b {
			t.Errorf("%s: checksum errors %+v, %+v before the traffic", ns, a, b)
		}
	}
	// Said once per side, not per frame.
	if got := strings.Count(logs.String(), "partial checksums"); got != 2 {
		t.Errorf("%d log lines about partial checksums, want one per side:\n%s", got, logs)
	}
}

// TestBridgeChecksum: the bridge hands a frame's partial checksum to the
// port it leaves by; a port without offloads fills it in (counted), one
// with passes it on; a super-frame keeps its metadata for the kernel to
// segment either way. Ports that are not rings (pump) get it filled in by
// the bridge.
func TestBridgeChecksum(t *testing.T) {
	partial, want, g := partialTCP(t)
	for _, carry := range []bool{false, true} {
		f := linkfilter.New(linkfilter.Options{Site: "s1"})
		f.SetMatcher(e2eMatcher(t, 1, ""))
		in, out := capturetest.NewPort(16, 10*time.Millisecond), capturetest.NewPort(16, 10*time.Millisecond)
		in.Offloads, out.Offloads = carry, carry
		br := linkfilter.NewBridge(f, in, out)
		stop := runBridge(t, br)
		in.InjectOffload(partial, g)
		sent := out.WaitSent(1, 2*time.Second)
		stop()
		if len(sent) != 1 {
			t.Fatalf("carry %v: %d frames forwarded", carry, len(sent))
		}
		meta := out.SentOffloads()
		switch {
		case !carry && (!bytes.Equal(sent[0], want) || meta[0] != capture.OffloadInfo{} || br.ChecksumsCompleted() != 1):
			t.Errorf("without offloads: checksum % x (want % x), metadata %+v, counted %d",
				sent[0][g.CsumStart+16:g.CsumStart+18], want[g.CsumStart+16:g.CsumStart+18], meta[0], br.ChecksumsCompleted())
		case carry && (!bytes.Equal(sent[0], partial) || meta[0] != g || br.ChecksumsCompleted() != 0):
			t.Errorf("with offloads: metadata %+v (want %+v), frame changed %v, counted %d", meta[0], g, !bytes.Equal(sent[0], partial), br.ChecksumsCompleted())
		}
	}
	// The pump path: plain ports, which take no metadata.
	f := linkfilter.New(linkfilter.Options{Site: "s1"})
	f.SetMatcher(e2eMatcher(t, 1, ""))
	in, out := capturetest.NewPort(16, 10*time.Millisecond), capturetest.NewPort(16, 10*time.Millisecond)
	br := linkfilter.NewBridge(f, plainPort{in}, plainPort{out})
	stop := runBridge(t, br)
	in.InjectOffload(partial, g)
	sent := out.WaitSent(1, 2*time.Second)
	stop()
	if len(sent) != 1 || !bytes.Equal(sent[0], want) || br.ChecksumsCompleted() != 1 {
		t.Errorf("pump: %d frames, completed %v, counted %d", len(sent), len(sent) == 1 && bytes.Equal(sent[0], want), br.ChecksumsCompleted())
	}
}

// plainPort hides capturetest.Port's ring methods, so the bridge pumps.
type plainPort struct{ p *capturetest.Port }

func (p plainPort) ReadFrame(b []byte) (capture.Info, error) { return p.p.ReadFrame(b) }
func (p plainPort) WriteFrame(b []byte) error                { return p.p.WriteFrame(b) }
func (p plainPort) Close() error                             { return p.p.Close() }

// runBridge runs br until the returned stop.
func runBridge(t *testing.T, br *linkfilter.Bridge) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { defer close(done); _ = br.Run(ctx) }()
	return func() { cancel(); <-done }
}

// partialTCP is an approved outbound TCP frame (customer to LA-1) as a
// sender with checksum offload hands it over, the same frame with its
// checksum computed (gopacket), and its offload metadata.
func partialTCP(t *testing.T) (partial, want []byte, g capture.OffloadInfo) {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: []byte{10, 1, 0, 2}, DstIP: []byte{198, 51, 100, 7}}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 5201, Seq: 1, SYN: true, Window: 512}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, tcp, gopacket.Payload("partial checksum, odd length")); err != nil {
		t.Fatal(err)
	}
	want = bytes.Clone(buf.Bytes())
	partial = bytes.Clone(want)
	// The pseudo-header sum: addresses, protocol, TCP length.
	l4 := len(want) - 34
	var sum uint32
	for i := 26; i < 34; i += 2 {
		sum += uint32(want[i])<<8 | uint32(want[i+1])
	}
	sum += uint32(layers.IPProtocolTCP) + uint32(l4)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	partial[34+16], partial[34+17] = byte(sum>>8), byte(sum)
	return partial, want, capture.OffloadInfo{Flags: capture.GSONeedsCsum, CsumStart: 34, CsumOffset: 16}
}

// csumErrors are a namespace's stack counters of segments and datagrams
// dropped for a bad checksum.
type csumErrors struct{ tcp, udp, udp6 int }

// readCsumErrors reads them from /proc/net/snmp and snmp6 inside ns.
func readCsumErrors(t *testing.T, ns string) csumErrors {
	t.Helper()
	var e csumErrors
	snmp := run(t, "ip", "netns", "exec", ns, "cat", "/proc/net/snmp")
	// Pairs of lines: "Tcp: names..." then "Tcp: values...".
	sc := bufio.NewScanner(strings.NewReader(snmp))
	var names []string
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if names == nil || names[0] != fields[0] {
			names = fields
			continue
		}
		for i, name := range names {
			if name == "InCsumErrors" && i < len(fields) {
				v, _ := strconv.Atoi(fields[i])
				switch fields[0] {
				case "Tcp:":
					e.tcp = v
				case "Udp:":
					e.udp = v
				}
			}
		}
		names = nil
	}
	for _, line := range strings.Split(run(t, "ip", "netns", "exec", ns, "cat", "/proc/net/snmp6"), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "Udp6InCsumErrors" {
			e.udp6, _ = strconv.Atoi(f[1])
		}
	}
	return e
}

// lockedBuffer is a log sink the bridge's goroutines may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
