// Package capture reads and writes link-layer frames: live interfaces through
// Linux AF_PACKET rings, and pcap/pcapng files for replay and tests, behind
// one small contract (Reader, Writer, Port, Ring) so the packet filter never
// knows which it reads.
//
// OpenFile or NewFileReader replays a capture file (pcap or pcapng, read
// by pcapfile); OpenLive opens an interface as a Live port. A bridge opens
// two, checks they share an MTU (CheckMTU), and either turns their offloads
// off (DisableOffloads) or carries them (LiveOptions.Offloads). It then loops:
// Drain hands the frames waiting in the receive ring over in place, Queue
// copies each allowed one into the other port's transmit ring, and Flush
// sends the batch with one system call when the drain ends; Wait sleeps in
// poll(2) only when the ring is empty. ReadFrame and WriteFrame are the
// one-frame forms. capturetest.Port implements the same Ring interface in
// memory, so a bridge's batching is tested without a kernel.
//
// The live ports map their own TPACKET_V2 rings through golang.org/x/sys
// rather than use gopacket's afpacket, because batching the sends needs
// what afpacket does not expose (whether a frame is waiting, a transmit
// ring, a VLAN tag put back without allocating); the figures that decided
// it are in BENCHMARKS.md ("Capture rings"). Everything builds with
// CGO_ENABLED=0.
//
// Every port takes the kernel's offload metadata (PACKET_VNET_HDR) where
// it has it, because a peer's offloads are not the port's: a veth peer at
// its defaults, a virtio guest or a tap hands over frames whose checksum
// was left to hardware (CHECKSUM_PARTIAL) and super-frames of up to 64 KB.
// Queue on a port without Offloads sends only what a wire carries: it fills
// a partial checksum in (CompleteChecksum, counted in
// Live.ChecksumsCompleted) and hands a super-frame to the kernel to segment.
// A port with Offloads passes both on with their metadata. Receive-side
// metadata needs Linux 5.8; before that OpenLive with Offloads returns
// ErrUnsupported.
//
// AF_PACKET traps handled here: a socket sees its own sent frames (a BPF
// program drops PACKET_OUTGOING in the kernel and passes every incoming
// frame, since inline whatever a filter drops is lost); the kernel strips
// 802.1Q tags into the ring header (they are put back); a full transmit
// ring is waited for up to the poll interval, then ErrTxBusy; a frame the
// driver refuses is retried by the kernel at every send and blocks the
// ring, so one refused for a poll interval is dropped (Live.TxDropped), and
// super-frames never go through the qdisc-bypassing ring, which cannot
// segment them.
//
// It imports pcapfile, golang.org/x/net/bpf and golang.org/x/sys only:
// never agent, policy or MQTT.
package capture
