// Package capture reads and writes link-layer frames: live interfaces through
// Linux AF_PACKET rings, and pcap/pcapng files for replay and tests, behind
// one small contract (Reader, Writer, Port) so the packet filter never knows
// which ring it reads.
//
// # Which gopacket, and why
//
// Files use github.com/gopacket/gopacket (v1.7.7, the maintained fork of
// github.com/google/gopacket) pcapgo; decoding (agent/linkfilter) its
// layers. Live ports map their own TPACKET_V2 rings through
// golang.org/x/sys (ring_linux.go): a receive ring, and a transmit ring
// (PACKET_TX_RING) on a second, send-only socket with PACKET_QDISC_BYPASS.
// Everything builds with CGO_ENABLED=0 for amd64, arm/v7, arm64 and
// mips(le).
//
// Figures that chose the fork's afpacket first (veth pair, offloads off,
// one iperf3 TCP stream, measured on this class of machine; see
// MACHINE-NOTES and the issue):
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
// Why the rings are now our own: with afpacket's receive ring and one
// write(2) per forwarded frame, most of the bridge's CPU was the write
// (the peer's stack runs in it). Batching the sends needs what afpacket
// does not expose: whether a frame is waiting (to send the batch before the
// reader sleeps, so no frame is held longer than that), a transmit ring,
// and a VLAN tag put back without allocating (afpacket allocates a new
// slice per tagged frame). So:
//
//   - The receive ring is walked here (no system call while frames are
//     waiting; poll(2) only when it is empty). Drain hands waiting frames
//     over in place, VLAN tag restored in the slot's headroom; ReadFrame
//     copies one out.
//   - Queue copies a frame into the next transmit slot; a full batch
//     (LiveOptions.TxBatch, 32) or Flush sends all queued slots with one
//     sendto(MSG_DONTWAIT). WriteFrame is Queue plus the send.
//     agent/linkfilter's Bridge judges the frames Drain hands it, queues
//     the allowed ones on the other port and flushes when the drain ends:
//     one copy per forwarded frame (ring to ring) and one system call per
//     batch. The Ring interface names these, so the bridge's batching is
//     tested with capturetest.Port as well.
//   - Each transmit slot starts with a virtio_net_hdr (PACKET_VNET_HDR,
//     no offload) whose hdr_len is the whole frame: the kernel then copies
//     the frame into the skb's linear part. Without it the kernel links the
//     ring page into the skb and, once veth or local delivery orphans the
//     skb (the slot is reused), copies it into a freshly allocated page
//     (64-byte UDP 88–223 kpps without the header, 200–280 with it, in
//     alternating runs). With it the kernel skips its MTU check, so Queue makes it
//     (MTU + 14, one 802.1Q tag on top: EMSGSIZE as write(2) would), and
//     PACKET_LOSS is set so a slot the kernel still refuses is skipped
//     rather than jamming the ring.
//   - A full transmit ring (the driver still holds its frames) is waited
//     for up to the poll interval, then ErrTxBusy.
//
// Measured A/B on the same 2-core machine while another helper's
// simulations kept the load average at 2.2–3.5 (so figures scatter), runs
// alternating old and new, each run the whole of `make bench-bridge`
// (BenchmarkBridge: iperf3 5 s TCP and 64-byte UDP through the inline
// bridge, a 2 s denied-SYN flood counted at the border, then the same
// through a kernel bridge on the same ports; BenchmarkRevocationToDrop).
//
// Final: this code against the one before it (a3a3d00, whose hal/capture
// and agent/linkfilter are 5f48a89's: afpacket ring + one write(2) per
// frame), 3 runs each — git archive a3a3d00 into /tmp/old;
// go test -c -o /tmp/lf-old.test there and -o /tmp/lf-new.test here
// (./agent/linkfilter/); alternately, in each tree's agent/linkfilter:
// /tmp/lf-{old,new}.test -test.run '^$' -test.bench
// 'BenchmarkBridge$|BenchmarkRevocationToDrop' -test.benchtime 1x:
//
//   - single-stream TCP: new 4.51, 5.16, 5.21 Gbit/s (kernel bridge in the
//     same runs 7.1–8.3), tcp-ratio 0.63, 0.67, 0.63; old 2.69, 3.01,
//     4.41 Gbit/s (kernel 6.8–8.1), ratio 0.40, 0.44, 0.54. Median +72%
//     (5.16 vs 3.01); the 0.80 is not reached on this machine.
//   - 64-byte UDP: new 253–286 kpps, median 266; old 83–199, median 165
//     (the kernel's own 193–441: iperf3's sender and the load are the
//     limit, so pps ratios scatter).
//   - denied-SYN flood: new judged 99.9–100% of the frames sent (the rest
//     lost to a full receive ring, i.e. dropped), old 72–99%; no frame of a
//     denied flow reached the border in any run, old or new.
//   - revocation to first drop: new 0.37–0.64 ms mean, ≤ 1.0 ms max per
//     run of 20; old 0.38–0.48 mean, ≤ 0.99 max.
//
// Development A/B, same method with the old path kept selectable in one
// binary (LiveOptions.Legacy and an LG_BRIDGE_IO switch in the test
// topology, both removed after), 7 runs each: TCP rings 3.1–5.5 Gbit/s,
// median 4.31, ratio median 0.61; old 2.4–3.3, median 2.89, ratio median
// 0.41; UDP median 231 vs 159 kpps. The transmit ring without the
// virtio_net_hdr (ring pages linked into the skb), 3 runs: TCP 4.2–4.4
// Gbit/s, 64-byte UDP 88–223 kpps.
//
// Where the time goes with offloads off (perf record -a -g over a 10 s
// inline iperf3 run; shares of both cores): the bridge's thread is 59%,
// iperf3 32%, idle 6%. Inside the bridge, the sendto that queues to veth
// runs the receiving namespace's whole TCP stack (and, for ACKs, the
// sender's) — work the kernel bridge does too, in softirq; AF_PACKET's own
// cost is the copy into the receive ring (tpacket_rcv, 10%), skb setup in
// tpacket_snd (11%) and the Go side (15%: decode, judgement, copies). The
// kernel bridge in the same run is 83% busy for 1.5x the throughput: with
// one 1,500-byte frame per system call and slot, two cores run out before
// the kernel bridge does. Judging in place (Drain: one copy fewer) and
// busy-polling the ring for a few microseconds before sleeping were
// measured too: within the run-to-run scatter (±15%). The floor of this
// path, forwarding ring to ring with no decode or judgement at all (a
// throw-away build, 3 runs): 4.8–5.6 Gbit/s, ratio 0.67, 0.82, 0.92,
// against 0.57–0.77 with them; so on two cores even a free classifier
// would only just reach 0.8. Hence the offloads below, which cut the frame
// count 20–40x.
//
// # Offloads carried (LiveOptions.Offloads)
//
// Offloads off costs a system call, a ring slot and a judgement per
// 1,500-byte frame, and on a small CPU that is the limit. With Offloads the
// port keeps GRO/TSO/GSO on (EnableOffloads) and its sockets use
// PACKET_VNET_HDR (as every port's do, see below): a GRO-merged or
// not-yet-segmented super-frame of up to 64 KB comes with its
// virtio_net_hdr (Info.GSO: type, segment size, checksum still to fill
// in) and leaves with it, so the kernel segments it only where it must
// (in the NIC with TSO, in software otherwise; veth passes it whole). A
// frame whose checksum the sender left to hardware keeps its NeedsCsum
// flag and leaves with it, for the NIC to fill in.
//
// The rings keep their MTU-sized slots, so memory and burst capacity stay
// those of a port without offloads (2,048 slots): a super-frame arrives
// cut to its slot with TP_STATUS_COPY while the kernel queues the whole
// skb on the socket (PACKET_COPY_THRESH; receive buffer 4 MB, kernel
// memory held only while frames wait), and is read from there into one
// 64 KB buffer; on the way out it is written on a third, ring-less socket
// after the transmit ring's queued frames have been taken, so order holds.
// A first version with 128 KB slots (64 receive, 32 transmit) moved as
// much but cost 24 MB of rings per bridge instead of 7, and its 64
// receive slots let 3–13% of a 64-byte SYN flood drop at the ring.
//
// Measured on the veth topology (agent/linkfilter BenchmarkBridge*, its
// doc has the figures): with the endpoints sending wire-sized frames,
// carrying offloads lifts the inline bridge from 4–6 to 10–12 Gbit/s,
// 0.64–1.06 of a kernel bridge given the same offloads; with the
// endpoints' own offloads on too, 16–21 Gbit/s against the kernel
// bridge's 31–40.
//
// The kernel's virtio_net_hdr describes TCP and UDP segmentation only: a
// NIC that merges GRE-encapsulated TCP (GRE GRO) reports it as plain TCP,
// which agent/linkfilter detects against the decoded packet and drops.
// Receive-side metadata needs Linux 5.8; OpenLive with Offloads returns
// ErrUnsupported before that.
//
// # A peer's offloads (every port)
//
// Turning a port's offloads off does not turn off its peer's. A veth peer
// left at its defaults, a virtio guest or a tap hands the port frames
// whose TCP or UDP checksum it left to the hardware (CHECKSUM_PARTIAL:
// the field holds only the pseudo-header sum) and, with TSO or GSO on,
// super-frames of up to 64 KB. Forwarded as they are, the checksum is
// never filled in: ping works, TCP never connects. So every port takes
// the offload metadata where the kernel has it (Live.Metadata), with
// Offloads or without, and Queue on a port without Offloads sends only
// what a wire carries:
//
//   - A partial checksum is filled in, in the transmit slot after the
//     copy (CompleteChecksum: the Internet checksum from the metadata's
//     start to the end of the IP packet, or SCTP's CRC32c), counted
//     (Live.ChecksumsCompleted), and the frame leaves with no offload
//     flags. Passing the flag on for the kernel to fill in instead (the
//     port's transmit checksumming is off, so skb_checksum_help would)
//     measured no faster through the bridge; filling it in here does not
//     depend on the outgoing device's settings, knows an SCTP CRC from an
//     Internet checksum (no virtio_net_hdr can ask for a CRC, so a port
//     with Offloads fills those in too), and is counted.
//   - A super-frame goes to the kernel whole with its metadata, on the
//     ring-less socket, to be segmented in software (the port's TSO is
//     off). That socket, unlike the ring's, goes through the queueing
//     discipline: bypassing it, the kernel drops a frame it would have to
//     segment (__dev_direct_xmit refuses what validate_xmit_skb replaces).
//
// On a kernel without the metadata the ring's status still flags a
// partial checksum (TP_STATUS_CSUMNOTREADY) and the headers say where it
// lies on plain IPv4 and IPv6, so those are filled in as well; a peer's
// super-frames arrive cut to their slot and cannot be forwarded.
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
//     checksumming off through the SIOCETHTOOL ioctl (no ethtool binary);
//     or the port carries them (above). A peer's offloads are handled
//     either way (above).
//   - MTU: both bridged interfaces must have the same MTU (CheckMTU); the
//     ring's frame size is chosen to hold a full frame at that MTU.
//   - VLAN offload: the kernel strips 802.1Q tags into the ring header; the
//     tag is put back so a bridge forwards the frame as it came.
//
// It imports gopacket, golang.org/x/net/bpf and golang.org/x/sys only:
// never agent, policy or MQTT.
package capture
