package linkfilter

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"linkguard.dev/linkguard/agent/linkfilter/packet"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/match"
)

const testPolicy = `serial: 7
issued: 2026-01-01T00:00:00Z
expires: 2030-01-01T00:00:00Z
default: deny
domestic: [10.1.0.0/16, "fd00:1::/48"]
approvals:
  - id: A1
    holder: Test carrier
    remote: [198.51.100.0/24, "2001:db8:aa::/48"]
  - id: A2
    holder: Web only
    remote: [192.0.2.0/24]
    services: [tcp/443]
`

func testMatcher(tb testing.TB, yaml string) *match.Matcher {
	tb.Helper()
	p, err := policy.Parse([]byte(yaml))
	if err != nil {
		tb.Fatal(err)
	}
	return match.Compile(p)
}

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
	t0   = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano()
)

// frame serializes layers into an Ethernet frame, computing lengths and
// checksums.
func frame(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	for _, l := range ls {
		if t, ok := l.(*layers.TCP); ok {
			for _, n := range ls {
				if nl, ok := n.(gopacket.NetworkLayer); ok {
					t.SetNetworkLayerForChecksum(nl)
				}
			}
		}
		if u, ok := l.(*layers.ICMPv6); ok {
			for _, n := range ls {
				if nl, ok := n.(gopacket.NetworkLayer); ok {
					u.SetNetworkLayerForChecksum(nl)
				}
			}
		}
		if u, ok := l.(*layers.UDP); ok {
			for _, n := range ls {
				if nl, ok := n.(gopacket.NetworkLayer); ok {
					u.SetNetworkLayerForChecksum(nl)
				}
			}
		}
	}
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func eth(t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: t}
}

func ip4(src, dst string, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
}

func ip6(src, dst string, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
}

// tcp4 is a TCP segment between IPv4 addresses, padded to 64 bytes.
func tcp4(tb testing.TB, src, dst string, sport, dport uint16, syn, ack bool, payload []byte) []byte {
	t := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: syn, ACK: ack, Seq: 1000, Ack: 2000, Window: 64240}
	f := frame(tb, eth(layers.EthernetTypeIPv4), ip4(src, dst, layers.IPProtocolTCP), t, gopacket.Payload(payload))
	for len(f) < 64 {
		f = append(f, 0)
	}
	return f
}

func udp6(tb testing.TB, src, dst string, sport, dport uint16) []byte {
	return frame(tb, eth(layers.EthernetTypeIPv6), ip6(src, dst, layers.IPProtocolUDP),
		&layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}, gopacket.Payload("hello"))
}

func judge(f *Filter, d *packet.Decoder, fr []byte, now int64) (packet.Packet, Result) {
	return judgeOn(f, d, SideUnknown, fr, now)
}

// judgeOn judges fr as arriving on side.
func judgeOn(f *Filter, d *packet.Decoder, side Side, fr []byte, now int64) (packet.Packet, Result) {
	var p packet.Packet
	d.Decode(fr, false, &p)
	return p, f.Judge(&p, side, fr, len(fr), now)
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func timeAt(ns int64) time.Time { return time.Unix(0, ns) }

func compileSynthetic(p *policy.Policy) *match.Matcher { return match.Compile(p) }

// arpRequest is a well-formed ARP request, padded as on the wire.
func arpRequest(tb testing.TB) []byte {
	return frame(tb, &layers.Ethernet{SrcMAC: macA, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: 1, SourceHwAddress: macA, SourceProtAddress: []byte{10, 1, 0, 1}, DstHwAddress: make([]byte, 6), DstProtAddress: []byte{10, 1, 0, 2}})
}
