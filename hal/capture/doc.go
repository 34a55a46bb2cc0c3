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
// This package's own figures, the inline bridge of agent/linkfilter against
// a kernel bridge on the same veth topology in one run (BenchmarkBridge,
// `make bench-bridge`), on a 2-core machine shared with other builds (load
// average 7–8 during the runs, so they scatter): single-stream TCP 1.6–2.7
// Gbit/s inline vs 2.4–4.0 kernel, ratio 0.49–0.84 over five runs; 64-byte
// UDP 45–93 kpps inline vs 54–123 kernel (iperf3's sender is the limit),
// ratio 0.45–1.0; no frame of a denied flow reached the border in any run.
// Writes go through a second, send-only AF_PACKET socket with
// PACKET_QDISC_BYPASS. Most of the bridge's CPU is the write(2) itself
// (the peer's stack runs in it); the next steps for more are batched sends
// (sendmmsg or a TX ring) and PACKET_VNET_HDR to carry GRO super-frames.
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
