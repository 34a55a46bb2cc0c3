package linkfilter_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"linkguard.dev/linkguard/agent/linkfilter"
	"linkguard.dev/linkguard/agent/linkfilter/redteam"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/hal/capture"
	"linkguard.dev/linkguard/hal/capture/capturetest"
	"linkguard.dev/linkguard/hal/envtest"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/match"
	"linkguard.dev/linkguard/policy/policytest"
)

// The kernel fast path (links.enforce: nftables) on the same topology as
// the inline bridge: lgin and lgout joined by a kernel bridge that the
// ruleset compiled from the policy filters, in the same cases.

// nsFD is a file descriptor of namespace ns, closed when the test ends.
func nsFD(t testing.TB, ns string) int {
	t.Helper()
	f, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

// kernelPath installs m in the LinkGuard namespace's kernel, bridges the
// ports and checks the ruleset every 100 ms until the test ends.
func (tp *topo) kernelPath(t testing.TB, o linkfilter.KernelOptions, m *match.Matcher) *linkfilter.Kernel {
	t.Helper()
	envtest.Command(t, "nft")
	o.Inside, o.Outside, o.NetNS = "lgin", "lgout", nsFD(t, tp.lg)
	if o.CheckEvery == 0 {
		o.CheckEvery = 100 * time.Millisecond
	}
	if o.Logger == nil && !testing.Verbose() {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	k, err := linkfilter.OpenKernel(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.SetMatcher(m); err != nil {
		t.Fatal(err)
	}
	if err := k.Attach(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = k.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; k.Close() })
	return k
}

// TestNetnsNftInline: the inline bridge's cases through the kernel path,
// with the pcap monitor watching the same ports for denied-flow events.
func TestNetnsNftInline(t *testing.T) {
	tp := newTopo(t)
	rec := &report.Recorder{}
	// Loose ingress, as TestNetnsInline: the border answers from 10.1.0.3
	// and fd00:1::3, domestic addresses on the outside.
	k := tp.kernelPath(t, linkfilter.KernelOptions{Site: "s1", Ingress: linkfilter.IngressLoose, Events: rec}, e2eMatcher(t, 1, ""))
	mon := linkfilter.New(linkfilter.Options{Site: "s1", Events: rec, Mode: linkfilter.ModeMonitor, Ingress: linkfilter.IngressLoose})
	mon.SetMatcher(e2eMatcher(t, 1, ""))
	tp.startMonitor(t, mon, capture.LiveOptions{PollInterval: 50 * time.Millisecond})
	serve(t, tp.bord)
	serve(t, tp.cust)

	for _, c := range []struct {
		from, kind, addr string
		pass             bool
	}{
		{tp.cust, "tcp", hostPort("198.51.100.7", tcpPort), true},
		{tp.bord, "tcp-from-198.51.100.7", hostPort("10.1.0.2", tcpPort), true},
		{tp.cust, "udp", hostPort("198.51.100.7", udpPort), true},
		{tp.cust, "ping", "198.51.100.7", true},
		{tp.cust, "tcp", hostPort("2001:db8:aa::7", tcpPort), true},
		{tp.cust, "udp", hostPort("2001:db8:aa::7", udpPort), true},
		{tp.cust, "tcp", hostPort("10.1.0.3", tcpPort), true},
		{tp.cust, "tcp", hostPort("fd00:1::3", tcpPort), true},
		{tp.cust, "tcp", hostPort("203.0.113.7", tcpPort), false},
		{tp.cust, "udp", hostPort("203.0.113.7", udpPort), false},
		{tp.cust, "ping", "203.0.113.7", false},
		{tp.cust, "tcp", hostPort("2001:db8:bb::7", tcpPort), false},
		{tp.bord, "tcp-from-203.0.113.7", hostPort("10.1.0.2", tcpPort), false},
	} {
		timeout := 3 * time.Second
		if !c.pass {
			timeout = time.Second
		}
		if got := probe(t, c.from, c.kind, c.addr, timeout); got != c.pass {
			t.Errorf("%s %s from %s: passed=%v, want %v", c.kind, c.addr, c.from, got, c.pass)
		}
	}
	// The pcap path still reports what the kernel dropped.
	denied := map[string]bool{}
	for _, e := range rec.Events() {
		if e.Type == report.LinkDenied {
			denied[fmt.Sprint(e.Fields["dst"])] = true
			denied[fmt.Sprint(e.Fields["src"])] = true
		}
	}
	for _, a := range []string{"203.0.113.7", "2001:db8:bb::7"} {
		if !denied[a] {
			t.Errorf("the monitor reported no denied flow naming %s: %+v", a, rec.Events())
		}
	}
	ks, err := k.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	c := ks.Counters
	if len(ks.Approvals) != 1 || ks.Approvals[0].ID != "LA-1" || ks.Approvals[0].Packets == 0 || c.Denied.Packets == 0 || c.Domestic.Packets == 0 || c.LinkControl.Packets == 0 {
		t.Fatalf("kernel counters: %+v", ks)
	}
	// The telemetry snapshot in nftables mode: the monitor's, with the
	// kernel's per-approval counts and denials.
	s := mon.Snapshot()
	if err := k.Fill(&s); err != nil || len(s.Approvals) != 1 || len(ks.Approvals) != 1 || s.Approvals[0] != ks.Approvals[0] || s.Denied < c.Denied.Packets {
		t.Errorf("filled snapshot %+v (%v)", s, err)
	}
	t.Logf("kernel: LA-1 %d packets %d bytes, denied %d, domestic %d, link control %d; ruleset %d elements %d rules, installed in %v",
		ks.Approvals[0].Packets, ks.Approvals[0].Bytes, c.Denied.Packets, c.Domestic.Packets, c.LinkControl.Packets,
		ks.Stats.Elements, ks.Stats.Rules, ks.Stats.LastApply)

	// A newly approved address opens without a restart.
	if err := k.SetMatcher(e2eMatcher(t, 2, e2eSecond)); err != nil {
		t.Fatal(err)
	}
	if !probe(t, tp.cust, "tcp", hostPort("203.0.113.7", tcpPort), 3*time.Second) {
		t.Error("newly approved address still blocked")
	}
}

// TestNetnsNftStrictIngress: strict ingress (the default) drops the
// domestic addresses the border answers from as spoofs, in both families,
// and lets approved traffic by.
func TestNetnsNftStrictIngress(t *testing.T) {
	tp := newTopo(t)
	k := tp.kernelPath(t, linkfilter.KernelOptions{Site: "s1"}, e2eMatcher(t, 1, ""))
	serve(t, tp.bord)
	for _, c := range []struct {
		addr string
		pass bool
	}{
		{hostPort("198.51.100.7", tcpPort), true},
		{hostPort("2001:db8:aa::7", tcpPort), true},
		{hostPort("10.1.0.3", tcpPort), false},
		{hostPort("fd00:1::3", tcpPort), false},
	} {
		if got := probe(t, tp.cust, "tcp", c.addr, 2*time.Second); got != c.pass {
			t.Errorf("tcp %s: passed=%v, want %v", c.addr, got, c.pass)
		}
	}
	ks, _ := k.Snapshot()
	if ks.Counters.Spoofed.Packets == 0 {
		t.Errorf("no spoofs counted: %+v", ks.Counters)
	}
}

// TestNetnsNftRevocationCutsLiveStream: a live TCP stream through an
// approval stops within 100 ms of the policy swap that revokes it, with
// the test's policy and with 100,000 prefixes more in force.
func TestNetnsNftRevocationCutsLiveStream(t *testing.T) {
	for _, c := range []struct {
		name   string
		policy func(tb testing.TB, serial int, extra string) *match.Matcher
	}{{"small", e2eMatcher}, {"100k", bigMatcher}} {
		t.Run(c.name, func(t *testing.T) {
			tp := newTopo(t)
			k := tp.kernelPath(t, linkfilter.KernelOptions{Site: "s1"}, c.policy(t, 1, e2eSecond))
			revoked := c.policy(t, 2, "") // LA-2 revoked
			serve(t, tp.bord)
			lastRx, rx := streamEchoes(t, tp.cust, hostPort("203.0.113.7", tcpPort))
			for deadline := time.Now().Add(5 * time.Second); rx.Load() < 50; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("stream did not start (%d echoes)", rx.Load())
				}
			}
			revokedAt := time.Now()
			if err := k.SetMatcher(revoked); err != nil {
				t.Fatal(err)
			}
			swapped := time.Since(revokedAt)
			time.Sleep(time.Second)
			before := rx.Load()
			lat := time.Unix(0, lastRx.Load()).Sub(revokedAt)
			t.Logf("revocation: the swap returned after %v; last echo received %v after it began", swapped, lat)
			if lat > 100*time.Millisecond {
				t.Errorf("stream still flowing %v after revocation", lat)
			}
			time.Sleep(500 * time.Millisecond)
			if after := rx.Load(); after != before {
				t.Errorf("%d echoes after the cut", after-before)
			}
		})
	}
}

// streamEchoes runs the stream helper from ns to addr and returns when
// its last echo came (Unix nanoseconds) and how many have.
func streamEchoes(t testing.TB, ns, addr string) (last, n *atomic.Int64) {
	t.Helper()
	cmd := helper(t, ns, "stream", addr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	last, n = new(atomic.Int64), new(atomic.Int64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ns int64
			if _, err := fmt.Sscanf(sc.Text(), "rx %d", &ns); err == nil {
				last.Store(ns)
				n.Add(1)
			}
		}
	}()
	return last, n
}

// synFlood sends TCP SYNs with valid checksums from 10.1.0.2, each to a
// new address in 8.0.0.0/8 (unapproved), out of dev in ns for d, and
// returns how many it sent. (The inject helper's SYNs carry no checksum:
// br_netfilter would drop them before the ruleset saw them.)
func synFlood(t testing.TB, ns, dev string, d time.Duration) int {
	t.Helper()
	sent := 0
	capturetest.InNetns(t, ns, func() {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			t.Error(err)
			return
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Ifindex: ifi.Index}
		f := make([]byte, 14+20+20)
		copy(f[0:6], []byte{0x02, 0, 0, 0, 0, 0x99}) // unknown: the bridge floods it
		copy(f[6:12], ifi.HardwareAddr)
		binary.BigEndian.PutUint16(f[12:], unix.ETH_P_IP)
		ip, tcp := f[14:34], f[34:]
		ip[0], ip[8], ip[9] = 0x45, 64, unix.IPPROTO_TCP
		binary.BigEndian.PutUint16(ip[2:], 40)
		copy(ip[12:16], []byte{10, 1, 0, 2})
		binary.BigEndian.PutUint16(tcp[2:], 443)
		tcp[12], tcp[13] = 5<<4, 0x02
		binary.BigEndian.PutUint16(tcp[14:], 64240)
		r := rand.New(rand.NewPCG(3, 4))
		for end := time.Now().Add(d); time.Now().Before(end); {
			binary.BigEndian.PutUint32(ip[16:], 0x08000000|r.Uint32()&0x00ffffff)
			binary.BigEndian.PutUint16(tcp[0:], uint16(1024+sent%60000))
			binary.BigEndian.PutUint32(tcp[4:], r.Uint32())
			ip[10], ip[11], tcp[16], tcp[17] = 0, 0, 0, 0
			binary.BigEndian.PutUint16(ip[10:], checksum(ip, 0))
			pseudo := uint32(binary.BigEndian.Uint16(ip[12:])) + uint32(binary.BigEndian.Uint16(ip[14:])) +
				uint32(binary.BigEndian.Uint16(ip[16:])) + uint32(binary.BigEndian.Uint16(ip[18:])) + unix.IPPROTO_TCP + 20
			binary.BigEndian.PutUint16(tcp[16:], checksum(tcp, pseudo))
			if err := unix.Sendto(fd, f, 0, to); err == nil {
				sent++
			}
		}
	})
	return sent
}

func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// TestNetnsNftSYNFlood: denied SYNs at full speed are judged and dropped,
// none reaches the border, they leave nothing in conntrack (an entry is
// kept only for a packet that passes), and approved traffic still flows.
func TestNetnsNftSYNFlood(t *testing.T) {
	secs := "3"
	if v := os.Getenv("LG_FLOOD_SECONDS"); v != "" {
		secs = v
	}
	d, err := time.ParseDuration(secs + "s")
	if err != nil {
		t.Fatal(err)
	}
	tp := newTopo(t)
	k := tp.kernelPath(t, linkfilter.KernelOptions{Site: "s1"}, e2eMatcher(t, 1, ""))
	serve(t, tp.bord)
	cnt := helper(t, tp.bord, "count", "b0", (d + time.Second).String())
	stdout, _ := cnt.StdoutPipe()
	if err := cnt.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, _ := stdout.Read(buf) // ready
	if !strings.Contains(string(buf[:n]), "ready") {
		t.Fatalf("count helper: %q", buf[:n])
	}
	before, _ := k.Snapshot()
	sent := synFlood(t, tp.cust, "c0", d)
	out, _ := readAll(stdout)
	_ = cnt.Wait()
	leaked := -1
	fmt.Sscanf(strings.TrimSpace(out), "leaked %d", &leaked)
	after, _ := k.Snapshot()
	conntrack := strings.TrimSpace(run(t, "ip", "netns", "exec", tp.lg, "cat", "/proc/sys/net/netfilter/nf_conntrack_count"))
	denied := after.Counters.Denied.Packets - before.Counters.Denied.Packets
	t.Logf("%v flood: %d SYNs sent, %d denied by the kernel, %d leaked; conntrack entries after: %s", d, sent, denied, leaked, conntrack)
	if leaked != 0 {
		t.Errorf("%d frames of denied flows reached the border", leaked)
	}
	if denied < uint64(sent)*9/10 {
		t.Errorf("only %d of %d SYNs judged and denied", denied, sent)
	}
	if n, err := strconv.Atoi(conntrack); err != nil || n > 100 {
		t.Errorf("conntrack holds %s entries after a flood of denied SYNs", conntrack)
	}
	if !probe(t, tp.cust, "tcp", hostPort("198.51.100.7", tcpPort), 3*time.Second) {
		t.Error("approved traffic blocked after the flood")
	}
}

func readAll(r interface{ Read([]byte) (int, error) }) (string, error) {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String(), nil
		}
	}
}

// TestNetnsNftTunnels: the red-team corpus's crafted tunnels against the
// kernel path. The kernel cannot look inside a tunnel: every tunnel to or
// between endpoints no approval names as a tunnel is dropped, whatever it
// carries; tunnels to the endpoints the policy names (LA-VX udp/4789,
// LA-IPIP ip/4, ip/41, gre) pass whatever they carry — the difference
// from the inline filter, which judges the inner flows, and what the
// monitor on the same ports reports.
func TestNetnsNftTunnels(t *testing.T) {
	tp := newTopo(t)
	k := tp.kernelPath(t, linkfilter.KernelOptions{Site: redteam.Site}, matcherOf(t, redteam.PolicyYAML))
	var names []string
	for _, c := range redteam.Cases() {
		if c.Technique == "tunnel" || c.Technique == "opaque-tunnel" || c.Technique == "too-deep" {
			names = append(names, c.Name)
		}
	}
	frames, labels := corpusFrames(t, names...)
	arrived := tp.cross(t, frames)
	named := map[netip.Addr]bool{netip.MustParseAddr("192.0.2.10"): true, netip.MustParseAddr("192.0.2.20"): true}
	var leaked, viaNamed, drops int
	for i, f := range frames {
		if f.Want != redteam.Drop {
			continue
		}
		drops++
		outer := outerIPv4(f.Data)
		switch {
		case arrived[i] == 0:
		case named[outer[0]] || named[outer[1]]:
			viaNamed++
		default:
			leaked++
			t.Errorf("crossed the kernel, must drop (from %v): %s", f.Side, labels[i])
		}
	}
	ks, _ := k.Snapshot()
	t.Logf("%d must-drop tunnel frames: %d crossed through endpoints the policy names as tunnels (the kernel's blind spot), %d leaked otherwise; kernel counted %d tunnel packets",
		drops, viaNamed, leaked, ks.Counters.Tunnel.Packets)
	if ks.Counters.Tunnel.Packets == 0 {
		t.Error("no tunnel packets counted")
	}
}

// outerIPv4 is an untagged IPv4 frame's source and destination.
func outerIPv4(f []byte) [2]netip.Addr {
	if len(f) < 34 || binary.BigEndian.Uint16(f[12:]) != unix.ETH_P_IP {
		return [2]netip.Addr{}
	}
	return [2]netip.Addr{netip.AddrFrom4([4]byte(f[26:30])), netip.AddrFrom4([4]byte(f[30:34]))}
}

// TestNetnsNftFlushReasserted: someone runs `nft flush ruleset`. While the
// ruleset is gone the guard table keeps the link shut; within a check
// interval it is installed again, with an event, and traffic is judged as
// before.
func TestNetnsNftFlushReasserted(t *testing.T) {
	tp := newTopo(t)
	rec := &report.Recorder{}
	k := tp.kernelPath(t, linkfilter.KernelOptions{Site: "s1", Events: rec}, e2eMatcher(t, 1, ""))
	serve(t, tp.bord)
	if !probe(t, tp.cust, "tcp", hostPort("198.51.100.7", tcpPort), 3*time.Second) {
		t.Fatal("approved flow blocked before the flush")
	}
	var wg sync.WaitGroup
	var unapproved atomic.Bool
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // an unapproved flow keeps trying all along
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if probe(t, tp.cust, "tcp", hostPort("203.0.113.7", tcpPort), 300*time.Millisecond) {
				unapproved.Store(true)
			}
		}
	}()
	flushed := time.Now()
	run(t, "ip", "netns", "exec", tp.lg, "nft", "flush", "ruleset")
	var back time.Duration
	for deadline := time.Now().Add(5 * time.Second); ; {
		if probe(t, tp.cust, "tcp", hostPort("198.51.100.7", tcpPort), 200*time.Millisecond) {
			back = time.Since(flushed)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("approved traffic did not come back after the flush")
		}
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if unapproved.Load() {
		t.Error("an unapproved flow passed while the ruleset was flushed")
	}
	var ev *report.Recorded
	for _, e := range rec.Events() {
		if e.Type == linkfilter.EventRulesetReasserted {
			ev = &e
		}
	}
	if ev == nil {
		t.Fatalf("no %s event: %+v", linkfilter.EventRulesetReasserted, rec.Events())
	}
	ks, _ := k.Snapshot()
	t.Logf("flush to approved traffic back: %v; event %v; re-assertions %d", back, ev.Fields, ks.Stats.Reassertions)
	if ks.Stats.Reassertions != 1 {
		t.Errorf("re-assertions %d", ks.Stats.Reassertions)
	}
}

// TestKernelRuleset: the policy's share at a site, ICMP covering ICMPv6.
func TestKernelRuleset(t *testing.T) {
	p := policytest.Synthetic(300, 1)
	p.Default = policy.DefaultMonitor
	p.Approvals[1].Sites = []string{"elsewhere"}
	p.Approvals[2].Services = []policy.Service{{Proto: policy.ProtoICMP}}
	rs := linkfilter.KernelRuleset(p, "s1")
	if !rs.Monitor || len(rs.Approvals) != 2 || rs.Approvals[1].ID != p.Approvals[2].ID || len(rs.Approvals[1].Services) != 2 ||
		rs.Approvals[1].Services[1].Proto != policy.ProtoICMPv6 || rs.Serial != p.Serial {
		t.Errorf("kernel ruleset %+v", rs)
	}
}
