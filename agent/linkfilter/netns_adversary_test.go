package linkfilter_test

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/linkfilter"
	"linkguard.dev/linkguard/agent/linkfilter/redteam"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/hal/capture"
	"linkguard.dev/linkguard/policy/match"
)

// The adversary controls a host on each side of the border link. These
// tests play it live, through the real bridge between namespaces: the
// kernel's own VXLAN devices where this kernel has them, and the red-team
// corpus's crafted frames, sent with a raw socket from the endpoint
// namespaces, for the tunnels it has no devices for (GRE, IPIP, sit,
// Geneve, ip6tnl) and for forged handshakes.

// webOnly is the end-to-end policy with LA-1 cut to tcp/443.
func webOnly(t testing.TB) *match.Matcher {
	return matcherOf(t, fmt.Sprintf(e2ePolicy, 1)+"    services: [tcp/443]\n")
}

// corpusFrames are the frames of the named red-team cases, in order, with
// each frame's case and index for messages. Tagged frames are left out:
// a packet socket receives them with the tag taken off (it travels in
// auxiliary data), so they cannot be compared byte for byte.
func corpusFrames(t testing.TB, names ...string) (frames []redteam.Frame, labels []string) {
	t.Helper()
	byName := map[string]redteam.Case{}
	for _, c := range redteam.Cases() {
		byName[c.Name] = c
	}
	for _, n := range names {
		c, ok := byName[n]
		if !ok {
			t.Fatalf("no red-team case %q", n)
		}
		for i, f := range c.Frames {
			if et := uint16(f.Data[12])<<8 | uint16(f.Data[13]); et == 0x8100 || et == 0x88a8 {
				continue
			}
			frames = append(frames, f)
			labels = append(labels, fmt.Sprintf("%s[%d] %s", n, i, f.Note))
		}
	}
	return frames, labels
}

// ifaceMAC is the hardware address of dev in namespace ns.
func ifaceMAC(t testing.TB, ns, dev string) net.HardwareAddr {
	t.Helper()
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal([]byte(run(t, "ip", "-j", "-n", ns, "link", "show", "dev", dev)), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip link show %s in %s: %v", dev, ns, err)
	}
	mac, err := net.ParseMAC(links[0].Address)
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

// frameCounter is a count helper at one end: how many copies of each
// frame of a capture file arrived there.
type frameCounter struct {
	h    *helperProc
	mu   sync.Mutex
	got  map[int]int
	done chan struct{}
}

func startCounter(t testing.TB, ns, dev, file string) *frameCounter {
	t.Helper()
	c := &frameCounter{h: startHelper(t, ns, "count", dev, "-", file), got: map[int]int{}, done: make(chan struct{})}
	c.h.expect(t, "ready")
	go func() {
		defer close(c.done)
		for {
			line, err := c.h.out.ReadString('\n')
			if err != nil {
				return
			}
			if i, ok := strings.CutPrefix(strings.TrimSpace(line), "got "); ok {
				n, _ := strconv.Atoi(i)
				c.mu.Lock()
				c.got[n]++
				c.mu.Unlock()
			}
		}
	}()
	return c
}

func (c *frameCounter) count(i int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got[i]
}

// stop ends the helper and waits for its last report.
func (c *frameCounter) stop() { _ = c.h.in.Close(); <-c.done }

// cross sends frames through the bridge, each from the namespace of the
// side it arrives on and addressed from that end's MAC to the other's, in
// order, and returns how many copies of each arrived at the far end. A
// run of frames from one side goes in one write; before the other side
// sends, the frames the corpus wants passed have arrived (or a second has
// gone by), so a reply never overtakes what it answers.
func (tp *topo) cross(t *testing.T, frames []redteam.Frame) []int {
	t.Helper()
	mac := map[redteam.Side]net.HardwareAddr{redteam.Inside: ifaceMAC(t, tp.cust, "c0"), redteam.Outside: ifaceMAC(t, tp.bord, "b0")}
	far := map[redteam.Side]redteam.Side{redteam.Inside: redteam.Outside, redteam.Outside: redteam.Inside}
	fs := make([]redteam.Frame, len(frames))
	for i, f := range frames {
		f.Data = slices.Clone(f.Data)
		if f.Data[0]&1 == 0 { // unicast: to the far end
			copy(f.Data[0:6], mac[far[f.Side]])
		}
		copy(f.Data[6:12], mac[f.Side])
		fs[i] = f
	}
	dir := t.TempDir()
	all := filepath.Join(dir, "all.pcap")
	if err := redteam.WritePcap(all, fs); err != nil {
		t.Fatal(err)
	}
	// Frames sent from one end are counted at the other.
	counter := map[redteam.Side]*frameCounter{
		redteam.Inside:  startCounter(t, tp.bord, "b0", all),
		redteam.Outside: startCounter(t, tp.cust, "c0", all),
	}
	inject := map[redteam.Side]*helperProc{
		redteam.Inside:  startHelper(t, tp.cust, "inject", "c0", "pcap", "-"),
		redteam.Outside: startHelper(t, tp.bord, "inject", "b0", "pcap", "-"),
	}
	for i := 0; i < len(fs); {
		side, j := fs[i].Side, i
		for j < len(fs) && fs[j].Side == side {
			j++
		}
		path := filepath.Join(dir, fmt.Sprintf("run%d.pcap", i))
		if err := redteam.WritePcap(path, fs[i:j]); err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Fprintln(inject[side].in, path); err != nil {
			t.Fatal(err)
		}
		inject[side].expect(t, fmt.Sprintf("sent %d", j-i))
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			waiting := false
			for k := i; k < j; k++ {
				waiting = waiting || fs[k].Want == redteam.Pass && counter[side].count(k) == 0
			}
			if !waiting {
				break
			}
		}
		time.Sleep(20 * time.Millisecond) // what drops has had its chance to leak
		i = j
	}
	time.Sleep(200 * time.Millisecond)
	arrived := make([]int, len(fs))
	for _, c := range counter {
		c.stop()
	}
	for i, f := range fs {
		arrived[i] = counter[f.Side].count(i)
	}
	return arrived
}

// checkCrossing fails the test for each frame that crossed against the
// corpus's verdict, and says how many did what.
func checkCrossing(t *testing.T, frames []redteam.Frame, labels []string, arrived []int) {
	t.Helper()
	var passed, leaked, lost, drops int
	for i, f := range frames {
		switch {
		case f.Want == redteam.Drop && arrived[i] > 0:
			leaked++
			t.Errorf("crossed, must drop (from %v): %s", f.Side, labels[i])
		case f.Want == redteam.Pass && arrived[i] == 0:
			lost++
			t.Errorf("dropped, must pass (from %v): %s", f.Side, labels[i])
		case f.Want == redteam.Pass:
			passed++
		}
		if f.Want == redteam.Drop {
			drops++
		}
	}
	t.Logf("%d frames through the bridge: %d of %d must-drop crossed, %d of %d must-pass crossed",
		len(frames), leaked, drops, passed, passed+lost)
}

// TestNetnsCraftedTunnels: tunnels this kernel has no device for, crafted
// and sent from each side: every frame that hides an unapproved flow
// inside a domestic or approved outer header (or an approved flow inside
// an unapproved outer one, or nests too deep, or cannot be seen into)
// drops; the same encapsulations carrying approved or domestic flows
// cross, both ways where the far end may answer.
func TestNetnsCraftedTunnels(t *testing.T) {
	tp := newTopo(t)
	f := tp.filterInline(t, linkfilter.Options{Site: redteam.Site}, matcherOf(t, redteam.PolicyYAML))

	tunnelled := regexp.MustCompile(`ipip|ip6ip6|ip4in6|6in4|gre|vxlan|geneve|mpls|pppoe|tunnels`)
	var controls, attacks []string
	for _, c := range redteam.Cases() {
		switch {
		case c.Technique == "legit" && tunnelled.MatchString(c.Name):
			controls = append(controls, c.Name)
		case c.Technique == "tunnel" || c.Technique == "opaque-tunnel" || c.Technique == "too-deep":
			attacks = append(attacks, c.Name)
		}
	}
	// Controls first: a filter that held a tunnel's outer flow guilty of
	// what it once carried would still be right to drop the attacks.
	frames, labels := corpusFrames(t, append(controls, attacks...)...)
	fromOutside := 0
	for _, f := range frames {
		if f.Side == redteam.Outside && f.Want == redteam.Drop {
			fromOutside++
		}
	}
	if len(controls) < 5 || len(attacks) < 20 || fromOutside < 10 {
		t.Fatalf("corpus: %d control and %d attack cases, %d attack frames from the outside", len(controls), len(attacks), fromOutside)
	}
	checkCrossing(t, frames, labels, tp.cross(t, frames))
	s := f.Snapshot()
	t.Logf("filter: passed %d denied %d; techniques %v", s.Passed, s.Denied, s.Techniques)
}

// TestNetnsForgedSynAck: the approval covers tcp/443 only (webOnly). The customer
// forges a SYN-ACK from its own port 443 to the approved host's port 22,
// sends data, then a SYN from port 443 to port 22 and data; the foreign
// host plays the same trick from its side. Nothing of it reaches the far
// end — within the pickup grace after start too — while a real
// connection to port 443 works.
func TestNetnsForgedSynAck(t *testing.T) {
	tp := newTopo(t)
	f := tp.filterInline(t, linkfilter.Options{Site: "s1"}, webOnly(t))
	serveOn(t, tp.bord, "443", "5443")

	frames, labels := corpusFrames(t, "forged-synack-from-443", "forged-synack-from-443-ipv6", "forged-synack-from-outside")
	checkCrossing(t, frames, labels, tp.cross(t, frames))
	for _, addr := range []string{"198.51.100.7", "2001:db8:aa::7"} {
		if !probe(t, tp.cust, "tcp", hostPort(addr, "443"), 3*time.Second) {
			t.Errorf("the approved service %s is blocked", hostPort(addr, "443"))
		}
	}
	if s := f.Snapshot(); s.Techniques["tcp-no-syn"] == 0 {
		t.Errorf("no segment reported as tcp-no-syn: %+v", s)
	}
}

// TestNetnsSpoofStrict: under strict ingress (the default) a domestic
// source arriving from the outside, or a foreign one from the inside, is
// dropped, while approved traffic crosses both ways; loose ingress lets
// domestic traffic arrive from the outside.
func TestNetnsSpoofStrict(t *testing.T) {
	domestic := []struct{ kind, addr string }{
		{"tcp-from-10.1.0.3", hostPort("10.1.0.2", tcpPort)},
		{"tcp-from-fd00:1::3", hostPort("fd00:1::2", tcpPort)},
	}
	t.Run("strict", func(t *testing.T) {
		tp := newTopo(t)
		f := tp.filterInline(t, linkfilter.Options{Site: "s1"}, e2eMatcher(t, 1, ""))
		serve(t, tp.cust)
		serve(t, tp.bord)
		for _, c := range domestic {
			if probe(t, tp.bord, c.kind, c.addr, time.Second) {
				t.Errorf("%s to %s from the outside passed under strict ingress", c.kind, c.addr)
			}
		}
		frames, labels := corpusFrames(t, "spoof-domestic-from-outside", "spoof-foreign-from-inside", "spoof-approved-remote-from-inside")
		checkCrossing(t, frames, labels, tp.cross(t, frames))
		if !probe(t, tp.cust, "tcp", hostPort("198.51.100.7", tcpPort), 3*time.Second) ||
			!probe(t, tp.bord, "tcp-from-198.51.100.7", hostPort("10.1.0.2", tcpPort), 3*time.Second) {
			t.Error("approved traffic blocked under strict ingress")
		}
		if s := f.Snapshot(); s.Spoofed == 0 {
			t.Errorf("no frame counted as spoofed: %+v", s)
		}
	})
	t.Run("loose", func(t *testing.T) {
		tp := newTopo(t)
		tp.filterInline(t, linkfilter.Options{Site: "s1", Ingress: linkfilter.IngressLoose}, e2eMatcher(t, 1, ""))
		serve(t, tp.cust)
		for _, c := range domestic {
			if !probe(t, tp.bord, c.kind, c.addr, 3*time.Second) {
				t.Errorf("%s to %s from the outside blocked under loose ingress", c.kind, c.addr)
			}
		}
	})
}

// vxlanTopo adds kernel VXLAN devices (VNI 42, udp/4789) to the topology:
// the customer's outer end is 10.1.0.2, the border's 198.51.100.7 (LA-1
// approves every service of it); inside the tunnel the customer is
// 10.1.5.2/24 and reaches 198.51.100.77 (approved) and 203.0.113.77 (not)
// through it, both of them the border's.
func vxlanTopo(t *testing.T) *topo {
	tp := newTopo(t)
	ends := []struct{ ns, local, remote string }{{tp.cust, "10.1.0.2", "198.51.100.7"}, {tp.bord, "198.51.100.7", "10.1.0.2"}}
	for _, e := range ends {
		lower := "c0"
		if e.ns == tp.bord {
			lower = "b0"
		}
		run(t, "ip", "-n", e.ns, "link", "add", "vx0", "type", "vxlan", "id", "42", "remote", e.remote, "local", e.local, "dstport", "4789", "dev", lower)
		run(t, "ip", "netns", "exec", e.ns, "sysctl", "-q", "-w", "net.ipv6.conf.vx0.disable_ipv6=1")
		run(t, "ip", "netns", "exec", e.ns, "ethtool", "-K", "vx0", "tx", "off", "tso", "off", "gso", "off")
		run(t, "ip", "-n", e.ns, "link", "set", "vx0", "up")
	}
	ipn := func(ns string, args ...string) { t.Helper(); run(t, "ip", append([]string{"-n", ns}, args...)...) }
	ipn(tp.cust, "addr", "add", "10.1.5.2/24", "dev", "vx0")
	for _, a := range []string{"198.51.100.77", "203.0.113.77"} {
		ipn(tp.cust, "route", "add", a+"/32", "dev", "vx0")
		ipn(tp.bord, "addr", "add", a+"/32", "dev", "vx0")
	}
	ipn(tp.bord, "route", "add", "10.1.5.0/24", "dev", "vx0")
	return tp
}

// TestNetnsVXLAN: a tunnel made with the kernel's own VXLAN devices
// between a host on each side, its outer header approved: inline, the
// approved address inside it is reached and the unapproved one is not;
// in monitor mode the unapproved flow is reported with its inner
// endpoints, as a tunnel.
func TestNetnsVXLAN(t *testing.T) {
	t.Run("inline", func(t *testing.T) {
		tp := vxlanTopo(t)
		tp.filterInline(t, linkfilter.Options{Site: "s1"}, e2eMatcher(t, 1, ""))
		serve(t, tp.bord)
		if !probe(t, tp.cust, "tcp", hostPort("198.51.100.77", tcpPort), 3*time.Second) {
			t.Error("approved address inside the VXLAN tunnel blocked")
		}
		if probe(t, tp.cust, "tcp", hostPort("203.0.113.77", tcpPort), time.Second) {
			t.Error("unapproved address inside the VXLAN tunnel reached")
		}
	})
	t.Run("monitor", func(t *testing.T) {
		tp := vxlanTopo(t)
		tp.kernelBridge(t)
		rec := &report.Recorder{}
		f := linkfilter.New(linkfilter.Options{Site: "s1", Events: rec, Mode: linkfilter.ModeMonitor})
		f.SetMatcher(e2eMatcher(t, 1, ""))
		tp.startMonitor(t, f, capture.LiveOptions{PollInterval: 50 * time.Millisecond})
		serve(t, tp.bord)
		if !probe(t, tp.cust, "tcp", hostPort("198.51.100.77", tcpPort), 3*time.Second) {
			t.Error("approved address inside the VXLAN tunnel blocked in monitor mode")
		}
		// A tap stops nothing: the connection may well succeed.
		probe(t, tp.cust, "tcp", hostPort("203.0.113.77", tcpPort), time.Second)
		var found report.Fields
		for deadline := time.Now().Add(3 * time.Second); found == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			for _, e := range rec.Events() {
				if e.Type != report.LinkDenied {
					continue
				}
				if e.Fields["dst"] == "198.51.100.77" || e.Fields["src"] == "198.51.100.77" {
					t.Errorf("the approved flow inside the tunnel was reported: %v", e.Fields)
				}
				if e.Fields["dst"] == "203.0.113.77" {
					found = e.Fields
				}
			}
		}
		switch {
		case found == nil:
			t.Fatalf("no denied-flow event names 203.0.113.77: %+v", rec.Events())
		case found["technique"] != "tunnel" || found["src"] != "10.1.5.2" ||
			!strings.Contains(strings.ToLower(fmt.Sprint(found["via"])), "vxlan"):
			t.Errorf("event does not report a tunnel from 10.1.5.2 via vxlan: %v", found)
		}
		t.Logf("event: %v", found)
	})
}
