package packet_test

import (
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"linkguard.dev/linkguard/agent/linkfilter/packet"
	"linkguard.dev/linkguard/hal/capture/pcapfile"
)

func benchFrames(b *testing.B) map[string][]byte {
	return map[string][]byte{
		"plain-tcp4": ser(b, eth(layers.EthernetTypeIPv4), v4("10.1.0.2", "198.51.100.7", layers.IPProtocolTCP), syn(40000, 443)),
		"plain-tcp6": ser(b, eth(layers.EthernetTypeIPv6), v6("fd00::2", "2001:db8:aa::7", layers.IPProtocolTCP), syn(40000, 443)),
		"vxlan": ser(b, eth(layers.EthernetTypeIPv4), v4("10.1.0.2", "192.0.2.10", layers.IPProtocolUDP),
			&layers.UDP{SrcPort: 50000, DstPort: 4789}, &layers.VXLAN{ValidIDFlag: true, VNI: 42},
			eth(layers.EthernetTypeIPv4), v4("10.1.0.2", "198.51.100.7", layers.IPProtocolTCP), syn(40000, 443)),
		"gre": ser(b, eth(layers.EthernetTypeIPv4), v4("10.1.0.2", "192.0.2.20", layers.IPProtocolGRE),
			&layers.GRE{KeyPresent: true, Key: 1, Protocol: layers.EthernetTypeIPv4},
			v4("10.1.0.2", "198.51.100.7", layers.IPProtocolTCP), syn(40000, 443)),
	}
}

// BenchmarkDecode is the packet path's decode, per frame shape.
func BenchmarkDecode(b *testing.B) {
	for _, name := range []string{"plain-tcp4", "plain-tcp6", "vxlan", "gre"} {
		fr := benchFrames(b)[name]
		b.Run(name, func(b *testing.B) {
			d := packet.NewDecoder(pcapfile.LinkTypeEthernet, packet.Options{})
			var p packet.Packet
			b.ReportAllocs()
			for b.Loop() {
				d.Decode(fr, false, &p)
			}
		})
	}
}

// BenchmarkDecodeGopacket is gopacket's DecodingLayerParser on the same
// plain frame, for the comparison the package doc makes.
func BenchmarkDecodeGopacket(b *testing.B) {
	fr := benchFrames(b)["plain-tcp4"]
	var (
		eth layers.Ethernet
		ip4 layers.IPv4
		tcp layers.TCP
	)
	p := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip4, &tcp)
	p.IgnoreUnsupported = true
	decoded := make([]gopacket.LayerType, 0, 4)
	b.ReportAllocs()
	for b.Loop() {
		_ = p.DecodeLayers(fr, &decoded)
	}
}
