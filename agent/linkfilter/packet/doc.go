// Package packet decodes every header a frame carries into a Packet the
// caller owns: each IP header pair, outermost first, through IPv4/IPv6 in
// IPv4/IPv6, GRE (checksum, key, sequence; IPv4, IPv6, transparent
// Ethernet bridging and MPLS payloads), VXLAN, VXLAN-GPE, Geneve, GTP-U,
// EtherIP, IPsec AH (skipped, since it hides nothing), MPLS and PPPoE
// sessions, over 802.1Q/802.1ad tag stacks, LLC/SNAP and the capture-file
// link types. A UDP tunnel is seen into on its destination port and on
// its source port (the adversary's receiver may read either). Link control (ARP, neighbour discovery, LLDP,
// STP, LACP, link-scoped routing protocols) is validated by its
// structure, not by its EtherType or address. It allocates nothing. The
// frame nearly all traffic is (untagged Ethernet, IPv4 or IPv6 without
// options, unicast TCP or UDP that is no tunnel) is read in one straight
// pass that yields exactly what the full walk would.
//
// It is the decoding half of agent/linkfilter, in the way tailscale's
// net/packet sits beside its filter: it knows headers, not policy. It
// imports only hal/capture/pcapfile's link types.
//
// # Why not gopacket's DecodingLayerParser
//
// gopacket (github.com/gopacket/gopacket) builds the frames of the tests
// and decodes them the slow, complete way in the differential fuzz test;
// it does not decode on the packet path, for two reasons:
//
//   - A DecodingLayerParser holds one layer value per type, so in a
//     tunnel the inner IPv4 header overwrites the outer one: a filter on
//     it judges whichever header came last (the evasion that motivated
//     this package). Stacking parsers per depth multiplies its cost.
//   - It costs 90–126 ns for an Ethernet/IPv4/TCP frame, more than the
//     whole decode-and-decide budget; this walk takes a fraction of that
//     (BenchmarkDecode beside BenchmarkDecodeGopacket, figures in
//     BENCHMARKS.md).
//
// gopacket has no Geneve option walk, no VXLAN-GPE and no validation of
// ARP, ND, LLDP or BPDU structure either.
//
// # Rules the decoder enforces
//
// A frame is KindMalformed, with a Problem, when a header contradicts
// itself or the frame; when bytes follow an IP datagram beyond Ethernet's
// minimum-frame padding (a covert trailer), or a UDP length hides some;
// when an IPv6 chain has more than six extension headers, repeats one,
// uses a deprecated or unknown one, or still has a source route to
// follow; when a first fragment lacks any header the filter needs
// (RFC 1858, RFC 7112: the whole transport header and, in a tunnel, every
// inner header); when a later fragment reaches back into the transport
// header; when it is nested deeper than Options.MaxEncap; or when a
// link-control EtherType or group address carries something that is not
// that protocol. It is KindOther for protocols it does not know. The
// policy default judges both.
//
// A link-scoped destination (224.0.0.0/24, the limited broadcast,
// ffx1::/16, ffx2::/16) is link control only for the protocols listed in
// Options.LinkLocal, well formed, with the TTL they always use; anything
// else sent there is an ordinary flow (Layer.LinkScoped). An unspecified
// source is link control only for DHCP, neighbour discovery (duplicate
// address detection), IGMP and MLD.
package packet
