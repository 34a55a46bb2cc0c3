package sim

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Flow is one synthetic flow the traffic generator sends.
type Flow struct {
	What     string
	Src, Dst string
	Proto    string // tcp, udp or icmp
	DPort    uint16
	Expect   string // "pass" or "deny" under the demo policy at an in-scope site
	Approval string // the approval that carries it, when it passes as international
}

// DemoFlows are generated flows to approved, unapproved and domestic
// addresses.
var DemoFlows = []Flow{
	{"customer to approved partner, HTTPS", "103.1.20.5", "203.0.113.10", "tcp", 443, "pass", ApprovalTelecom},
	{"approved SIP trunk (IPv6)", "2001:db8:100::5", "2001:db8:feed::9", "udp", 5060, "pass", ApprovalTelecom},
	{"transit carrier, any service", "103.1.20.5", "198.51.100.77", "udp", 4500, "pass", ApprovalTransit},
	{"customer to approved partner, SSH", "103.1.20.5", "203.0.113.10", "tcp", 22, "deny", ""},
	{"unapproved call-centre VoIP", "103.1.66.6", "192.0.2.200", "udp", 5060, "deny", ""},
	{"unapproved tunnel", "103.1.66.6", "45.76.1.1", "udp", 51820, "deny", ""},
	{"domestic traffic", "103.1.20.5", "103.1.99.1", "tcp", 80, "pass", ""},
}

var (
	macInside  = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	macOutside = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

// Frame builds one Ethernet frame of f with a payload of n bytes, source
// port sport (for TCP, a segment of an open connection).
func (f Flow) Frame(sport uint16, n int) ([]byte, error) { return f.frame(sport, n, false) }

// Open builds the frame that opens f: a TCP SYN (the filter opens TCP
// flows only on one), nil for other protocols.
func (f Flow) Open(sport uint16) ([]byte, error) {
	if f.Proto != "tcp" {
		return nil, nil
	}
	return f.frame(sport, 0, true)
}

func (f Flow) frame(sport uint16, n int, syn bool) ([]byte, error) {
	src, err := netip.ParseAddr(f.Src)
	if err != nil {
		return nil, fmt.Errorf("sim: flow %q: %w", f.What, err)
	}
	dst, err := netip.ParseAddr(f.Dst)
	if err != nil {
		return nil, fmt.Errorf("sim: flow %q: %w", f.What, err)
	}
	eth := &layers.Ethernet{SrcMAC: macInside, DstMAC: macOutside}
	var net gopacket.NetworkLayer
	var ls []gopacket.SerializableLayer
	var proto layers.IPProtocol
	switch f.Proto {
	case "tcp":
		proto = layers.IPProtocolTCP
	case "udp":
		proto = layers.IPProtocolUDP
	case "icmp":
		proto = layers.IPProtocolICMPv4
		if src.Is6() {
			proto = layers.IPProtocolICMPv6
		}
	default:
		return nil, fmt.Errorf("sim: flow %q: protocol %q", f.What, f.Proto)
	}
	if src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		net, ls = ip, []gopacket.SerializableLayer{eth, ip}
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		net, ls = ip, []gopacket.SerializableLayer{eth, ip}
	}
	switch f.Proto {
	case "tcp":
		t := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(f.DPort), ACK: !syn, PSH: !syn, SYN: syn, Seq: 1000, Ack: 1, Window: 65535}
		if syn {
			t.Seq, t.Ack = 999, 0
		}
		if err := t.SetNetworkLayerForChecksum(net); err != nil {
			return nil, err
		}
		ls = append(ls, t)
	case "udp":
		u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(f.DPort)}
		if err := u.SetNetworkLayerForChecksum(net); err != nil {
			return nil, err
		}
		ls = append(ls, u)
	case "icmp":
		if src.Is4() {
			ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: sport, Seq: 1})
		} else {
			ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}
			if err := ic.SetNetworkLayerForChecksum(net); err != nil {
				return nil, err
			}
			ls = append(ls, ic)
		}
	}
	ls = append(ls, gopacket.Payload(make([]byte, n)))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil, fmt.Errorf("sim: flow %q: %w", f.What, err)
	}
	return buf.Bytes(), nil
}
