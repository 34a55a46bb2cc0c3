// Package nft enforces link approvals in the kernel: it compiles a ruleset
// (domestic space; approvals with remote prefixes, services and windows)
// into nf_tables through github.com/google/nftables, installs and swaps it
// atomically, reads it back and installs it again when anything else
// changed it, and bridges the two ports once a ruleset is in force.
//
// It takes plain inputs and imports no LinkGuard package: the agent
// adapts its verified policy (agent/linkfilter, kernel.go). What the
// kernel path sees and what it cannot is in SECURITY.md ("Kernel fast
// path"); its figures are in BENCHMARKS.md.
//
// # Where packets are judged
//
// The ports are joined by a kernel bridge (Attach) whose bridged IPv4 and
// IPv6 br_netfilter hands, with conntrack, to three tables of one name:
//
//   - bridge: the ports and the link layer. ARP passes at 100/s (bursts of
//     200); IPv4 and IPv6 go on, after the ingress check when strict (a
//     domestic source from the outside, or anything but a domestic,
//     unspecified or link-local source from the inside, is a spoof); every
//     other frame — VLAN-tagged, QinQ, MPLS, PPPoE, LLDP — is dropped.
//     On the way out, IP without the judged mark is dropped: traffic the ip
//     and ip6 tables never saw (br_netfilter not loaded, nf_call_iptables
//     turned off) does not cross unjudged.
//   - ip and ip6 (one family each, so every expression is the family's own
//     and `nft list ruleset` reads it): link control first (ND, MLD, IGMP,
//     DHCP at their rates), then conntrack's verdict (invalid: dropped; a
//     TCP flow opened by anything but a plain SYN: dropped), then tunnels,
//     then the approvals. Each packet is judged as its flow, by the flow's
//     original direction (conntrack's direction tells which way the packet
//     goes). Nothing accepts an established flow on conntrack's word: a
//     flow an approval passed carries that approval's number for this
//     generation of the ruleset in conntrack's mark, and its next packets
//     go from one hash lookup straight to the approval's chain, which
//     checks window and service again and counts them. A swap changes
//     every number and a revocation empties the chain, so both apply to
//     established flows at their next packet, with no conntrack flush.
//     The kernel path owns the conntrack mark of bridged flows.
//
// Domestic space is an interval set per family. Each approval's remote
// prefixes go into an interval verdict map per family: the prefixes,
// which may nest, are flattened into disjoint ranges, each jumping to the
// chain of its most specific prefix's approval, or to a chain trying the
// candidates in the matcher's order (most specific prefix first, then the
// policy's order; a candidate an earlier one dominates is left out). An
// approval's chain checks its window against the kernel's clock (`meta
// time`, so windows close on time with or without the agent) and its
// services against the flow's protocol and original destination port,
// counts the packet in the approval's named counter and passes it with the
// judged mark.
//
// # Tunnels
//
// The kernel's sets see only the outermost header. IP protocols 4, 41, 47
// and 97, and UDP from or to 4789, 8472, 4790, 6081 or 2152, go by chains
// of their own: dropped between domestic endpoints and to any remote,
// unless an approval names the tunnel (gre, ip/4, udp/4789, a port range
// holding it) for that remote. An approval without services allows every
// protocol but these. Under the policy default monitor they pass, counted.
//
// # Transactions
//
// A ruleset is installed in one netlink batch: the tables and base chains
// stay, and their old rules, chains, sets and counters of dropped
// approvals are replaced in the same batch, so every packet meets the old
// ruleset or the new one. If the kernel refuses any message, nothing of
// the batch happens. Approvals the new ruleset drops are first cut in a
// small transaction of their own (their chains emptied): a national policy
// takes about a second to swap, a revocation milliseconds.
//
// Counters of approvals both rulesets have are kept across swaps; those of
// approvals that go are folded into Counters by ID.
//
// # Read-back and the guard
//
// Check compares the tables with what was installed: the ruleset's
// generation first (one request), then tables, chains, rules, sets and
// counter names as the kernel encodes them, and, at most every
// Options.ElementsEvery, every set element. A difference is re-asserted
// in a new transaction and reported (Reassertion). While the Enforcer is
// open, a bridge table owned by its netlink socket (NFT_TABLE_F_OWNER,
// Linux 5.12) drops every frame leaving the bridge without the judged
// mark: no other process can change it, `nft flush ruleset` passes it by,
// and the kernel removes it when the socket closes. So a flushed or
// dormant ruleset cuts the link until the check re-asserts it, and an
// agent that exits leaves the persistent ruleset filtering on its own.
//
// # Requirements
//
// nf_tables with the bridge, ip and ip6 families, conntrack, br_netfilter
// (CONFIG_BRIDGE_NETFILTER; a module on most distributions), `meta time`
// (Linux 5.4) and owner tables (5.12).
package nft
