package linkfilter

import (
	"net/netip"
	"runtime"
	"runtime/debug"
	"slices"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"linkguard.dev/linkguard/agent/linkfilter/packet"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/hal/capture"
	"linkguard.dev/linkguard/hal/capture/capturetest"
	"linkguard.dev/linkguard/hal/capture/pcapfile"
	"linkguard.dev/linkguard/policy/match"
	"linkguard.dev/linkguard/policy/policytest"
)

// bigPolicy is the national-size policy of the figures: 100,000 prefixes.
func bigPolicy(b *testing.B) (*match.Matcher, netip.Addr) {
	p := policytest.Synthetic(100_000, 1)
	var remote netip.Addr
	for _, pfx := range p.Approvals[0].Remote {
		if pfx.Addr().Is4() {
			remote = pfx.Addr().Next()
			break
		}
	}
	return match.Compile(p), remote
}

// BenchmarkDecide: decode + flow lookup + verdict on a 64-byte TCP frame
// against a 100,000-prefix policy; cached flow and new flow.
func BenchmarkDecide(b *testing.B) {
	m, remote := bigPolicy(b)
	fr := tcp4(b, "103.1.0.5", remote.String(), 40000, 443, false, true, nil)
	syn := tcp4(b, "103.1.0.5", remote.String(), 40000, 443, true, false, nil)
	if len(fr) != 64 {
		b.Fatalf("frame of %d bytes", len(fr))
	}
	b.Run("cached-flow", func(b *testing.B) {
		f := New(Options{Site: "s1"})
		f.SetMatcher(m)
		d := f.NewDecoder(pcapfile.LinkTypeEthernet)
		var p packet.Packet
		now := t0
		d.Decode(syn, false, &p)
		if r := f.Judge(&p, SideInside, syn, len(syn), now); r.Verdict != match.Approved {
			b.Fatalf("%+v", r)
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(fr)))
		for b.Loop() {
			now++
			d.Decode(fr, false, &p)
			f.Judge(&p, SideInside, fr, len(fr), now)
		}
	})
	// The same flow inside a VXLAN tunnel between domestic hosts: two header
	// pairs decoded, two flows judged.
	vx := func(syn bool) []byte {
		return frame(b, eth(layers.EthernetTypeIPv4), ip4("103.1.0.5", "103.1.0.6", layers.IPProtocolUDP),
			&layers.UDP{SrcPort: 50000, DstPort: 4789}, &layers.VXLAN{ValidIDFlag: true, VNI: 7},
			eth(layers.EthernetTypeIPv4), ip4("103.1.0.5", remote.String(), layers.IPProtocolTCP),
			&layers.TCP{SrcPort: 40000, DstPort: 443, SYN: syn, ACK: !syn, Seq: 1, Window: 100})
	}
	b.Run("cached-flow-vxlan", func(b *testing.B) {
		f := New(Options{Site: "s1"})
		f.SetMatcher(m)
		d := f.NewDecoder(pcapfile.LinkTypeEthernet)
		var p packet.Packet
		now := t0
		open, seg := vx(true), vx(false)
		d.Decode(open, false, &p)
		if r := f.Judge(&p, SideInside, open, len(open), now); r.Verdict != match.Approved || p.N != 2 {
			b.Fatalf("%d layers, %+v", p.N, r)
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(seg)))
		for b.Loop() {
			now++
			d.Decode(seg, false, &p)
			f.Judge(&p, SideInside, seg, len(seg), now)
		}
	})
	b.Run("new-flow", func(b *testing.B) {
		fr := syn
		f := New(Options{Site: "s1"})
		f.SetMatcher(m)
		d := f.NewDecoder(pcapfile.LinkTypeEthernet)
		var p packet.Packet
		now := t0
		b.ReportAllocs()
		b.SetBytes(int64(len(fr)))
		i := uint32(0)
		for b.Loop() {
			now++
			i++
			// A new source port and address every frame: a new flow, a
			// matcher decision, and (once the table is full) an eviction.
			fr[34], fr[35] = byte(i>>8), byte(i) // source port
			fr[28], fr[29] = byte(i>>16), byte(i>>24)
			d.Decode(fr, false, &p)
			if r := f.Judge(&p, SideInside, fr, len(fr), now); r.Verdict != match.Approved || !r.NewFlow {
				b.Fatalf("%+v", r)
			}
		}
		b.ReportMetric(float64(f.Snapshot().FlowsEvicted), "evicted")
	})
	// The checks the plain frame does not pay for, each on its own row:
	// IPv6, a fragmented datagram (first fragment, then a later one
	// following its verdict), link control under its rate limit, and a
	// tunnel between domestic hosts to an unapproved host (cut, with its
	// technique), all against the same policy.
	frag := func(off uint16, more bool) []byte {
		ip := ip4("103.1.0.5", remote.String(), layers.IPProtocolUDP)
		ip.Id, ip.FragOffset = 4242, off
		if more {
			ip.Flags = layers.IPv4MoreFragments
		}
		pl := make([]byte, 64)
		if off == 0 {
			pl = append([]byte{0x13, 0x88, 0x13, 0xc4, 0, 72, 0, 0}, pl...) // udp/5060, as approved
		}
		return frame(b, eth(layers.EthernetTypeIPv4), ip, gopacket.Payload(pl))
	}
	var remote6 netip.Addr
	for _, a := range m.Policy().Approvals {
		for _, pfx := range a.Remote {
			if pfx.Addr().Is6() && !remote6.IsValid() {
				remote6 = pfx.Addr().Next()
			}
		}
	}
	tcp6 := func(syn bool) []byte {
		return frame(b, eth(layers.EthernetTypeIPv6), ip6("2001:db8:100::5", remote6.String(), layers.IPProtocolTCP),
			&layers.TCP{SrcPort: 40000, DstPort: 443, SYN: syn, ACK: !syn, Seq: 1, Window: 100})
	}
	tunnelDenied := frame(b, eth(layers.EthernetTypeIPv4), ip4("103.1.0.5", "103.1.0.6", layers.IPProtocolIPv4),
		ip4("103.1.0.5", "203.0.113.9", layers.IPProtocolTCP), &layers.TCP{SrcPort: 40000, DstPort: 22, ACK: true, Seq: 1, Window: 100})
	for _, c := range []struct {
		name   string
		open   []byte // judged once before timing (nil: none)
		frames [][]byte
		want   Action
	}{
		{"cached-flow-tcp6", tcp6(true), [][]byte{tcp6(false)}, Pass},
		{"fragments-first-later", nil, [][]byte{frag(0, true), frag(9, false)}, Pass},
		{"link-control-arp", nil, [][]byte{arpRequest(b)}, Pass},
		{"tunnel-denied-ipip", nil, [][]byte{tunnelDenied}, Drop},
	} {
		b.Run(c.name, func(b *testing.B) {
			f := New(Options{Site: "s1"})
			f.SetMatcher(m)
			d := f.NewDecoder(pcapfile.LinkTypeEthernet)
			var p packet.Packet
			now := t0
			if c.open != nil {
				d.Decode(c.open, false, &p)
				f.Judge(&p, SideInside, c.open, len(c.open), now)
			}
			// The loop rewrites IP IDs: each run (-count) starts from copies.
			frames := make([][]byte, len(c.frames))
			for i, fr := range c.frames {
				frames[i] = slices.Clone(fr)
			}
			for _, fr := range frames {
				d.Decode(fr, false, &p)
				if r := f.Judge(&p, SideInside, fr, len(fr), now); r.Action != c.want {
					b.Fatalf("%+v", r)
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				// 10 ms apart, under every rate limit the frames meet.
				now += 10_000_000
				fr := frames[i%len(frames)]
				if fr[12] == 0x08 && fr[13] == 0 {
					// Each datagram (each pair of fragments) its own IP ID.
					fr[18], fr[19] = byte(i>>9), byte(i>>1)
				}
				i++
				d.Decode(fr, false, &p)
				f.Judge(&p, SideInside, fr, len(fr), now)
			}
		})
	}
	b.Run("decode-only", func(b *testing.B) {
		d := packet.NewDecoder(pcapfile.LinkTypeEthernet, packet.Options{})
		var p packet.Packet
		b.ReportAllocs()
		for b.Loop() {
			d.Decode(fr, false, &p)
		}
	})
}

// BenchmarkMemory100k reports the process's resident memory with the
// 100,000-prefix policy compiled and a full default flow table (65,536
// flows). Run it alone: `go test -run '^$' -bench Memory100k`.
func BenchmarkMemory100k(b *testing.B) {
	for b.Loop() {
		runtime.GC()
		debug.FreeOSMemory()
		b.ReportMetric(float64(report.RSS())/(1<<20), "RSS-before-MB")
		f := filled100k(b)
		b.ReportMetric(float64(report.RSS())/(1<<20), "RSS-MB")
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
		b.ReportMetric(float64(f.Snapshot().Flows), "flows")
		runtime.KeepAlive(f)
	}
}

// filled100k is a filter with the 100,000-prefix policy and a full table
// of 65,536 flows, after a GC.
func filled100k(b *testing.B) *Filter {
	m, remote := bigPolicy(b)
	f := New(Options{Site: "s1"})
	f.SetMatcher(m)
	d := f.NewDecoder(pcapfile.LinkTypeEthernet)
	fr := tcp4(b, "103.1.0.5", remote.String(), 40000, 443, true, false, nil)
	var p packet.Packet
	d.Decode(fr, false, &p)
	for i := range 100_000 {
		p.L[0].SPort = uint16(i)
		p.L[0].Src = netip.AddrFrom4([4]byte{103, 1, byte(i >> 8), byte(i)})
		f.Judge(&p, SideInside, fr, len(fr), t0+int64(i))
	}
	runtime.GC()
	debug.FreeOSMemory()
	return f
}

// BenchmarkMemory100kPorts is BenchmarkMemory100k plus what an inline
// agent adds: both bridge ports open, their rings mapped (and so
// resident), without and with offloads. Root (a veth pair in a namespace).
func BenchmarkMemory100kPorts(b *testing.B) {
	ns := capturetest.VethNamespace(b, "lgt-mem-", "va", "vb")
	for b.Loop() {
		runtime.GC()
		debug.FreeOSMemory()
		f := filled100k(b)
		b.ReportMetric(float64(report.RSS())/(1<<20), "RSS-filter-MB")
		for _, offloads := range []bool{false, true} {
			var ports []*capture.Live
			capturetest.InNetns(b, ns, func() {
				for _, name := range []string{"va", "vb"} {
					l, err := capture.OpenLive(name, capture.LiveOptions{Offloads: offloads})
					if err != nil {
						b.Error(err)
						return
					}
					ports = append(ports, l)
				}
			})
			if b.Failed() {
				b.FailNow()
			}
			unit := "RSS-ports-MB"
			if offloads {
				unit = "RSS-offload-ports-MB"
			}
			b.ReportMetric(float64(report.RSS())/(1<<20), unit)
			for _, l := range ports {
				l.Close()
			}
		}
		runtime.KeepAlive(f)
	}
}
