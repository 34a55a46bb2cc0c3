package linkfilter

import (
	"net/netip"
	"sync"

	"linkguard.dev/linkguard/agent/linkfilter/packet"
)

// Technique names what a denied frame was, beyond an unapproved flow:
// the evasion events report and counters count.
type Technique uint8

const (
	TechNone              Technique = iota
	TechTunnel                      // a frame carrying more than one header pair
	TechOpaqueTunnel                // an encapsulation the filter cannot see into
	TechTooDeep                     // more encapsulations than links.max_encap
	TechCovertLinkControl           // a link-control frame that is not that protocol, or too many of them
	TechLinkScoped                  // a link-scoped destination with an unlisted protocol
	TechUnspecifiedSource           // 0.0.0.0 or :: outside DHCP, ND, IGMP, MLD
	TechSpoofed                     // a source that does not belong on its side
	TechTCPNoSYN                    // TCP of a connection whose SYN was not seen
	TechFragmentOverlap             // overlapping fragments
	TechFragmentTiny                // a first fragment without the whole transport header
	TechExtHeader                   // an IPv6 extension chain the filter refuses
	TechTransit                     // neither end domestic, the destination not approved
	TechMalformed                   // headers that do not decode
	TechUnknownProtocol             // a protocol the filter does not know
	techCount
)

var techNames = [...]string{"", "tunnel", "opaque-tunnel", "too-deep", "covert-link-control", "link-scoped",
	"unspecified-source", "spoofed", "tcp-no-syn", "fragment-overlap", "fragment-tiny", "ext-header",
	"transit", "malformed", "unknown-protocol"}

func (t Technique) String() string {
	if int(t) < len(techNames) {
		return techNames[t]
	}
	return "invalid"
}

// techOf is the technique a decoding problem stands for.
func techOf(p packet.Problem) Technique {
	switch p {
	case packet.ProblemLinkControl:
		return TechCovertLinkControl
	case packet.ProblemTooDeep:
		return TechTooDeep
	case packet.ProblemOpaque:
		return TechOpaqueTunnel
	case packet.ProblemFragTiny:
		return TechFragmentTiny
	case packet.ProblemFragOverlap:
		return TechFragmentOverlap
	case packet.ProblemExtHeader:
		return TechExtHeader
	case packet.ProblemUnknown:
		return TechUnknownProtocol
	case packet.ProblemNone:
		return TechNone
	}
	return TechMalformed
}

// Link-control rates: what a border link's control protocols need with a
// wide margin, per class, with a burst for a routing protocol's flood
// after a topology change. A sender past them is not running the protocol
// but using it to carry data; the rest is dropped and counted. They bound
// the covert capacity of well-formed link control (SECURITY.md).
const (
	ctlARPRate      = 100 // ARP, RARP and neighbour discovery: frames per second
	ctlARPBurst     = 2 * ctlARPRate
	ctlIEEERate     = 10 // LLDP, STP, LACP
	ctlIEEEBurst    = 2 * ctlIEEERate
	ctlRoutingRate  = 20 // link-scoped routing and redundancy protocols, DHCP
	ctlRoutingBurst = 200
)

// linkLimits are the token buckets of link-control frames, per class.
type linkLimits struct {
	arp, ieee, routing limiter
}

func (l *linkLimits) init() {
	set := func(b *limiter, rate, burst float64) { *b = limiter{rate: rate, burst: burst, tokens: burst} }
	set(&l.arp, ctlARPRate, ctlARPBurst)
	set(&l.ieee, ctlIEEERate, ctlIEEEBurst)
	set(&l.routing, ctlRoutingRate, ctlRoutingBurst)
}

func (l *linkLimits) allow(lp packet.LinkProto, now int64) bool {
	switch lp {
	case packet.LinkARP, packet.LinkRARP, packet.LinkND:
		return l.arp.allow(now)
	case packet.LinkLLDP, packet.LinkSTP, packet.LinkSlow:
		return l.ieee.allow(now)
	}
	return l.routing.allow(now)
}

// spoofLog remembers the sources of recent spoofs, so each is reported
// once a minute however many frames it sends (then rate-limited with the
// other technique events). Fixed size: a flood of sources evicts older
// ones, and is bounded by the rate limit.
type spoofLog struct {
	mu   sync.Mutex
	seen [256]struct {
		src netip.Addr
		at  int64
	}
}

const spoofReportEvery = int64(60e9)

func (s *spoofLog) first(src netip.Addr, now int64) bool {
	b := src.As16()
	h := uint8(mix64(uint64(b[12])<<24|uint64(b[13])<<16|uint64(b[14])<<8|uint64(b[15])^uint64(b[7])<<32) >> 56)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := &s.seen[h]
	if e.src == src && now-e.at < spoofReportEvery {
		return false
	}
	e.src, e.at = src, now
	return true
}
