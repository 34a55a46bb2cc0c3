// Package capture reads and writes link-layer frames: live interfaces through
// Linux AF_PACKET rings, and pcap/pcapng files for replay and tests, behind
// one small contract (Reader, Writer, Port) so the packet filter never knows
// which ring it reads.
//
// # Which gopacket, and why
//
// Live capture uses github.com/gopacket/gopacket (v1.7.7, the maintained
// fork of github.com/google/gopacket) and its pure-Go afpacket with a
// TPACKET_V2 mmap ring; files use its pcapgo. Everything builds with
// CGO_ENABLED=0 for amd64, arm/v7, arm64 and mips(le).
//
// Figures that decided it (veth pair, offloads off, one iperf3 TCP stream,
// measured on this class of machine; see MACHINE-NOTES and the issue):
//
//   - kernel bridge: 5–6 Gbit/s (the reference);
//   - google/gopacket v1.1.19 pcapgo.EthernetHandle reads + raw AF_PACKET
//     writes: 1.3–2.0 Gbit/s (0.26–0.40 of the kernel) with many
//     retransmits; its afpacket needs cgo, and EthernetHandle has no
//     WritePacketData;
//   - gopacket/gopacket afpacket TPACKET_V2: 3.6–3.7 Gbit/s (0.60–0.74),
//     no retransmits. TPACKET_V3 is not used inline: its block retire
//     timeout (64 ms default) delays frames that sit in a part-filled block.
//
// This package's own figures (the inline bridge of agent/linkfilter against a
// kernel bridge on the same topology) come from `make bench-bridge`
// (scripts/bench-bridge.sh); see agent/linkfilter/doc.go.
//
// # AF_PACKET traps this package handles
//
//   - Own frames: a socket bound to an interface also sees the frames sent
//     out of it, including the ones we wrote. A classic BPF program on the
//     packet type drops PACKET_OUTGOING frames in the kernel; it passes every
//     incoming frame, since in inline mode whatever a filter drops is lost.
//   - Offloads: GRO/LRO hand the socket frames larger than the MTU, and
//     checksum/segmentation offloads leave work for hardware a bridge port
//     does not have. DisableOffloads turns GRO, LRO, TSO, GSO and tx
//     checksumming off through the SIOCETHTOOL ioctl (no ethtool binary).
//   - MTU: both bridged interfaces must have the same MTU (CheckMTU); the
//     ring's frame size is chosen to hold a full frame at that MTU.
//   - VLAN offload: the kernel strips 802.1Q tags into the ring header; the
//     tag is put back so a bridge forwards the frame as it came.
//
// It imports gopacket and golang.org/x/sys only: never agent, policy or MQTT.
package capture
