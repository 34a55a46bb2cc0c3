package linkfilter_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/linkfilter"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/hal/capture"
	"linkguard.dev/linkguard/hal/envtest"
)

func benchSeconds() int {
	if v, err := strconv.Atoi(os.Getenv("LG_BENCH_SECONDS")); err == nil && v > 0 {
		return v
	}
	return 5
}

// iperf runs an iperf3 client from the customer namespace and returns TCP
// bits/s, or UDP datagrams/s received.
func iperf(b *testing.B, tp *topo, udp bool) float64 {
	b.Helper()
	args := []string{"netns", "exec", tp.cust, "iperf3", "-c", "198.51.100.7", "-t", strconv.Itoa(benchSeconds()), "-J"}
	if udp {
		// 18-byte payloads: 14 + 20 + 8 + 18 = 60 bytes, a 64-byte frame
		// on the wire with its FCS.
		args = append(args, "-u", "-b", "0", "-l", "18")
	}
	out, err := exec.Command("ip", args...).Output()
	if err != nil {
		b.Fatalf("iperf3: %v %s", err, out)
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
			Sum struct {
				Seconds     float64 `json:"seconds"`
				Packets     float64 `json:"packets"`
				LostPackets float64 `json:"lost_packets"`
			} `json:"sum"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		b.Fatalf("iperf3 output: %v", err)
	}
	if udp {
		s := res.End.Sum
		if s.Seconds == 0 {
			b.Fatalf("iperf3 udp: %s", out)
		}
		return (s.Packets - s.LostPackets) / s.Seconds
	}
	return res.End.SumReceived.BitsPerSecond
}

// BenchmarkBridge measures, in one run on the same veth topology, the inline
// bridge against a Linux kernel bridge: iperf3 TCP throughput and 64-byte
// UDP packets per second, with offloads off everywhere (endpoint veths:
// tx/tso/gso off, as a wire; bridge ports: the agent turns theirs off). It
// then floods denied SYNs through the inline bridge and counts any that
// reach the border (must be 0). `make bench-bridge`; LG_BENCH_SECONDS sets
// each iperf3 run (default 5).
func BenchmarkBridge(b *testing.B) { benchBridge(b, offloadsOff) }

// BenchmarkBridgeGRO: the endpoints send wire-sized frames as before, but
// both bridges' ports merge them (GRO) and send super-frames on (TSO/GSO),
// as on NICs with their offloads on: the inline bridge carries them
// through (LiveOptions.Offloads), the kernel bridge runs on the same ports
// with the same offloads.
func BenchmarkBridgeGRO(b *testing.B) { benchBridge(b, offloadsPorts) }

// BenchmarkBridgeOffloads, the stretch: offloads on everywhere.
// The endpoints keep veth's defaults (64 KB TSO frames, checksums left to
// "hardware"), the inline bridge's ports carry super-frames, and the
// kernel bridge runs with veth's default offloads.
func BenchmarkBridgeOffloads(b *testing.B) { benchBridge(b, offloadsAll) }

const (
	offloadsOff   = iota // endpoints and bridge ports
	offloadsPorts        // bridge ports only
	offloadsAll          // endpoints too
)

func benchBridge(b *testing.B, offloads int) {
	envtest.Command(b, "iperf3")
	for range b.N {
		tp := newTopoEnds(b, offloads != offloadsAll)
		// Bound to the approved address: a wildcard UDP server would answer
		// from the interface's primary (domestic) address.
		srv := exec.Command("ip", "netns", "exec", tp.bord, "iperf3", "-s", "-B", "198.51.100.7")
		if err := srv.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
		time.Sleep(300 * time.Millisecond)

		// Inline bridge.
		f := linkfilter.New(linkfilter.Options{Site: "s1"})
		f.SetMatcher(e2eMatcher(b, 1, ""))
		in, out := tp.openPorts(b, capture.LiveOptions{Offloads: offloads != offloadsOff})
		br := linkfilter.NewBridge(f, in, out)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); _ = br.Run(ctx) }()
		inTCP := iperf(b, tp, false)
		inUDP := iperf(b, tp, true)
		// This process with both ports' rings mapped and used (the rings
		// are most of it: the test's policy is tiny).
		runtime.GC()
		debug.FreeOSMemory()
		rss := float64(report.RSS()) / (1 << 20)

		// Leak check: denied SYNs at full speed; the border counts what
		// arrives for the flood's destinations.
		cnt := helper(b, tp.bord, "count", "b0", "3s")
		stdout, _ := cnt.StdoutPipe()
		if err := cnt.Start(); err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		sc.Scan() // ready
		flood, err := helper(b, tp.cust, "inject", "c0", "synflood", "2s").CombinedOutput()
		if err != nil {
			b.Fatalf("flood: %v %s", err, flood)
		}
		leaked := -1
		for sc.Scan() {
			fmt.Sscanf(sc.Text(), "leaked %d", &leaked)
		}
		_ = cnt.Wait()
		cancel()
		wg.Wait()
		in.Close()
		out.Close()
		s := f.Snapshot()

		// Kernel bridge on the same ports: offloads as the inline bridge
		// had them (off, or GRO/TSO/GSO on), or veth's defaults.
		if offloads == offloadsAll {
			for _, p := range []string{"lgin", "lgout"} {
				run(b, "ip", "netns", "exec", tp.lg, "ethtool", "-K", p, "gro", "off", "tx", "on", "tso", "on", "gso", "on")
			}
		}
		for _, args := range [][]string{
			{"link", "add", "br0", "type", "bridge"}, {"link", "set", "lgin", "master", "br0"},
			{"link", "set", "lgout", "master", "br0"}, {"link", "set", "br0", "up"},
		} {
			run(b, "ip", append([]string{"-n", tp.lg}, args...)...)
		}
		time.Sleep(200 * time.Millisecond)
		kTCP := iperf(b, tp, false)
		kUDP := iperf(b, tp, true)

		b.ReportMetric(inTCP/1e9, "inline-Gbit/s")
		b.ReportMetric(kTCP/1e9, "kernel-Gbit/s")
		b.ReportMetric(inTCP/kTCP, "tcp-ratio")
		b.ReportMetric(inUDP/1e3, "inline-kpps")
		b.ReportMetric(kUDP/1e3, "kernel-kpps")
		b.ReportMetric(inUDP/kUDP, "pps-ratio")
		b.ReportMetric(float64(leaked), "leaked-frames")
		b.ReportMetric(rss, "inline-RSS-MB")
		b.Logf("flood: %s; denied %d, write errors %d, super-frames %d", strings.TrimSpace(string(flood)), s.Denied, br.WriteErrors(), s.SuperFrames)
		if leaked != 0 {
			b.Errorf("%d frames of denied flows reached the border", leaked)
		}
	}
}

// BenchmarkRevocationToDrop measures the time from a policy swap revoking
// an approval to the first dropped frame of a live flow under it (a UDP
// stream at one datagram per 200 µs through the inline bridge), over 20
// revocations.
func BenchmarkRevocationToDrop(b *testing.B) {
	for range b.N {
		tp := newTopo(b)
		rec := &report.Recorder{}
		f := linkfilter.New(linkfilter.Options{Site: "s1", Events: rec, EventsPerSecond: 1e4, EventBurst: 1e4})
		approved, revoked := e2eMatcher(b, 1, e2eSecond), e2eMatcher(b, 2, "")
		f.SetMatcher(approved)
		tp.startBridge(b, f)
		serve(b, tp.bord)
		cmd := helper(b, tp.cust, "udpstream", hostPort("203.0.113.7", udpPort), "200us")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		time.Sleep(300 * time.Millisecond)
		var lat []float64
		for i := range 20 {
			n := len(rec.Events())
			f.SetMatcher(revoked)
			deadline := time.Now().Add(time.Second)
			for len(lat) == i && time.Now().Before(deadline) {
				for _, e := range rec.Events()[n:] {
					if v, ok := e.Fields["after_swap_ms"].(float64); ok && e.Fields["revoked"] == true {
						lat = append(lat, v)
						break
					}
				}
				time.Sleep(time.Millisecond)
			}
			if len(lat) == i {
				b.Fatalf("revocation %d: no drop within 1 s: %+v %+v", i, f.Snapshot(), rec.Events())
			}
			f.SetMatcher(approved)
			time.Sleep(20 * time.Millisecond)
		}
		sum, worst := 0.0, 0.0
		for _, v := range lat {
			sum += v
			worst = max(worst, v)
		}
		b.ReportMetric(sum/float64(len(lat)), "mean-ms")
		b.ReportMetric(worst, "max-ms")
	}
}
