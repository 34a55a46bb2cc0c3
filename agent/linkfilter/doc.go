// Package linkfilter enforces the approval policy on a link: capture ->
// decode (package packet) -> a flow per header pair -> verdict -> forward
// or drop, with per-approval counters, rate-limited events naming the
// evasion they saw, and a bounded evidence ring.
//
// It imports hal/capture, policy, policy/match, agent/report and its own
// packet decoder only: never MQTT, the queue or other agent components
// (the composition root adapts). What it guarantees against an adversary,
// and what it cannot see, is written in SECURITY.md beside the README.
//
// # Packet path
//
// Each capture port has one goroutine with its own packet.Decoder, which
// walks every header the frame carries (tunnels included) into a
// packet.Packet: one Layer per IP header pair, outermost first. Judge
// takes the packet and the side it arrived on (the bridge's inside and
// outside ports; a monitor's two taps; unknown for a single tap or a
// capture file) and judges every header pair as a flow of its own; the
// most restrictive verdict wins and names its layer, so a tunnel between
// domestic hosts carrying a flow to an unapproved host is cut, and its
// event says "via ipip 10.1.0.2 -> 10.1.0.3". Inline mode stops at the
// first denied layer. Decode plus judgement allocates nothing
// (TestNoAllocs, BenchmarkDecide).
//
// The flow table is keyed by the canonical 5-tuple and the header pair's
// depth, so both directions are one flow and an inner flow is apart from
// its tunnel; it is split into 16 shards, each a fixed open-addressing
// table with a hard cap (Options.MaxFlows): a full shard evicts an
// idle-expired flow or the least recently seen of a short scan, and
// counts it. The verdict is cached per flow together with the policy
// generation it was decided under and the matcher's RecheckAt; a policy
// swap (SetMatcher) bumps the generation, so every existing flow is
// re-decided at its next frame — a revoked approval cuts a live TCP
// session at its next segment.
//
// Nearly every frame is one header pair of a known flow whose domestic or
// approved verdict stands: it takes a short path (judgeCached) that holds
// its shard's lock once and counts into the shard beside the lock. Every
// other frame (new, expired, denied, monitored, spoofed, tunnelled,
// fragmented, due for recheck) takes the full path, which the short path
// leaves untouched.
//
// # Rules a frame must pass before any approval is looked up
//
//   - Sides (Options.Ingress, links.ingress): strict (the default) drops
//     a frame from the outside with a domestic source and one from the
//     inside with a non-domestic source as spoofed, each source reported
//     once a minute. Link-local unicast sources are exempt: never
//     domestic, always judged as foreign. loose skips the check, for links
//     where domestic traffic genuinely comes from abroad (it trombones
//     through a foreign transit where there is no domestic exchange).
//     Only the outermost header is bound to its side: a tunnel's inner
//     addresses are whatever the tunnel carries, and are judged.
//   - TCP: only a SYN (without ACK) opens a flow; its sender is the
//     initiator and the responder's port is the service. A later SYN from
//     the other end opens it anew with that end as the initiator. Inline,
//     a segment of a connection whose SYN was not seen is dropped
//     (tcp-no-syn), except during Options.PickupGrace after the first
//     frame (links.pickup_grace, default 10 s), when it is picked up only
//     if it would be approved whichever end is the server — so a restart
//     does not cut sessions an approval covers for any service, and gives
//     nobody a window to choose the server. A monitor picks every such
//     flow up, judged both ways, and reports it after its fourth packet
//     (its other reader may still be handing over the SYN).
//   - UDP and every other protocol: the sender of a flow's first packet is
//     its initiator and the other end's port is the service; a packet in
//     the reply direction of an existing flow cannot change that, and a
//     sender's own port is never the service.
//   - Fragments: a later fragment follows the verdict its datagram's
//     first fragment got (fragTable: 4,096 slots, seeded hash, 60 s);
//     overlapping fragments, a second first fragment and a datagram in
//     more than 8 pieces drop the rest of the datagram (RFC 5722, and the
//     same for IPv4); the decoder drops first fragments without every
//     header the filter must see (RFC 1858, RFC 7112) and later fragments
//     reaching into the transport header. A fragment whose datagram was
//     not seen is judged by the policy default.
//   - Link control: passes only as the decoder validated it (ARP, ND,
//     LLDP, STP, LACP, link-scoped protocols in links.link_local, DHCP,
//     ND and IGMP/MLD from an unspecified source), and at most at its
//     protocol's rate (ARP/ND 100/s with bursts of 200, LLDP/STP/LACP
//     10/s with bursts of 20, link-scoped routing protocols and DHCP 20/s
//     with bursts of 200 for a flood after a topology change): past it the
//     rest is dropped and counted (link_control_limited).
//   - Malformed and unknown frames, encapsulations too deep
//     (links.max_encap, default 4) or that cannot be seen into, are judged
//     by the policy default (deny: dropped), whatever their addresses.
//
// Transit traffic (neither end domestic) needs an approval of the end the
// flow was opened to; the source end is not looked up, so a borrowed
// approved source reaches nothing.
//
// Every denied frame carries a Technique (tunnel, opaque-tunnel,
// too-deep, covert-link-control, link-scoped, unspecified-source,
// spoofed, tcp-no-syn, fragment-overlap, fragment-tiny, ext-header,
// transit, malformed, unknown-protocol): events name it with the header
// pair it is about (src, dst, layer, via), telemetry counts it
// (Snapshot.Techniques), replay totals it.
//
// In inline mode, with ports that are rings (capture.Ring: capture.Live,
// capturetest.Port), each frame is decoded and judged where it lies in the
// receiving port's ring, and an allowed one is copied straight into the
// other port's transmit ring; the queue is sent with one system call when
// the frames that were waiting (at most 64) are judged. Other ports (the
// testbench's wires) are read and written frame by frame.
//
// With links.offloads the ports carry GRO/GSO super-frames
// (capture.LiveOptions.Offloads): a super-frame is one flow's segments, so
// it is judged once and forwarded whole with its offload metadata; counters
// count its segments. A super-frame whose metadata does not describe its
// single header pair (tunnel GRO) cannot be segmented correctly
// downstream: it is dropped and counted (Bridge.OffloadMismatches).
//
// With no policy loaded at all, every IP frame is dropped (or passed and
// reported, with links.fail open).
//
// # Fail-closed in inline mode (the default), and how a technician recovers
//
// In inline mode LinkGuard is the only path between the inside (customer,
// domestic) and outside (border) interfaces: the two ports are not bridged
// by the kernel, the agent copies each allowed frame across. If the agent
// stops — crash, kill, power loss of the process, a policy it cannot load —
// nothing copies frames any more and the link is cut. That is deliberate:
// a border filter that fails open would let every unapproved international
// link through whenever it could be made to crash, and a crash is easy to
// provoke from outside. Before the first valid signed policy is loaded the
// agent forwards only link control frames (ARP, ND, LLDP); IP is dropped.
//
// A technician restores service, in order of preference:
//
//  1. Restart the agent (`systemctl restart linkguard` or
//     `/etc/init.d/linkguard restart`); the supervisor restarts it on its
//     own, so a persistent cut means it keeps failing: read its log
//     (`logread -e linkguard` or `journalctl -u linkguard`).
//  2. If the policy is the problem (expired, bad signature), push a valid
//     signed policy with lgctl; the agent keeps the last known good one.
//  3. Only with the regulator's written permission, bridge the link
//     without filtering — this is the documented, logged bypass:
//     `ip link add lgbypass type bridge && ip link set eth0 master lgbypass &&
//     ip link set eth1 master lgbypass && ip link set lgbypass up`
//     (undo with `ip link del lgbypass`, then restart the agent). The
//     monitor mode (`links.mode: monitor`) is the supported way to run a
//     link unfiltered but watched.
//
// With links.fail open (Options.FailOpen) the filter passes IP, reported as
// monitored, until its first policy, and the agent keeps a kernel bridge
// between the ports that only its own process holds shut (hal/bypass):
// when the agent is gone the link is carried unfiltered.
//
// # Monitor mode
//
// The filter reads the tap(s) and judges the same way, but forwards
// nothing (the agent leaves a tap's offloads as they are and takes the
// metadata of the super-frames GRO hands it, so counters count the frames
// on the wire); everything inline mode would drop is reported with its
// technique and its real endpoints, and, with reset, each denied plain TCP
// segment (up to 4 per flow) is answered with an RST to the sender (out of
// the port it came from, MACs swapped) and one to the receiver (out of the
// other port, MACs kept), using the sequence numbers each end expects. A
// tunnelled flow cannot be reset from outside its tunnel.
//
// Measured figures, with the commands that produce them, are in
// BENCHMARKS.md beside the README.
package linkfilter
