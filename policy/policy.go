package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// PayloadType is the DSSE payload type of a signed policy.
const PayloadType = "application/vnd.linkguard.policy+yaml"

// Default is what international traffic not covered by an approval gets.
type Default uint8

const (
	DefaultDeny    Default = iota // dropped (inline) or reported and reset (monitor)
	DefaultMonitor                // passed, but reported
)

func (d Default) String() string {
	if d == DefaultMonitor {
		return "monitor"
	}
	return "deny"
}

// Policy is a parsed, validated policy document.
type Policy struct {
	Serial    uint64
	Issued    time.Time
	Expires   time.Time
	Default   Default
	Domestic  []netip.Prefix
	Approvals []Approval
}

// Approval allows international traffic to and from remote prefixes.
type Approval struct {
	ID         string
	Holder     string
	Sites      []string       // empty: every site
	Remote     []netip.Prefix // never empty
	Services   []Service      // empty: any protocol and port
	ValidFrom  time.Time      // zero: since always
	ValidUntil time.Time      // zero: until revoked
	Note       string
}

// Expired reports whether the policy's expiry has passed at now.
func (p *Policy) Expired(now time.Time) bool { return !now.Before(p.Expires) }

// Prefixes counts the remote prefixes over all approvals.
func (p *Policy) Prefixes() int {
	n := 0
	for i := range p.Approvals {
		n += len(p.Approvals[i].Remote)
	}
	return n
}

// ActiveAt reports whether the approval's validity window holds t.
func (a *Approval) ActiveAt(t time.Time) bool {
	if !a.ValidFrom.IsZero() && t.Before(a.ValidFrom) {
		return false
	}
	return a.ValidUntil.IsZero() || t.Before(a.ValidUntil)
}

// CoversSite reports whether the approval applies at site.
func (a *Approval) CoversSite(site string) bool {
	if len(a.Sites) == 0 {
		return true
	}
	for _, s := range a.Sites {
		if s == site {
			return true
		}
	}
	return false
}

// CoversService reports whether the approval allows proto to dport.
func (a *Approval) CoversService(proto uint8, dport uint16) bool {
	if len(a.Services) == 0 {
		return true
	}
	for _, s := range a.Services {
		if s.Matches(proto, dport) {
			return true
		}
	}
	return false
}

// IP protocol numbers the policy names.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoGRE    uint8 = 47
	ProtoESP    uint8 = 50
	ProtoAH     uint8 = 51
	ProtoICMPv6 uint8 = 58
	ProtoSCTP   uint8 = 132
)

var protoNames = map[string]uint8{
	"tcp": ProtoTCP, "udp": ProtoUDP, "sctp": ProtoSCTP, "icmp": ProtoICMP, "icmpv6": ProtoICMPv6,
	"gre": ProtoGRE, "esp": ProtoESP, "ah": ProtoAH,
}

// ProtoName names an IP protocol as the policy spells it.
func ProtoName(p uint8) string {
	for n, v := range protoNames {
		if v == p {
			return n
		}
	}
	return "ip/" + strconv.Itoa(int(p))
}

// ParseProto parses a protocol name ("tcp") or number ("ip/47", "47").
func ParseProto(s string) (uint8, error) {
	s = strings.ToLower(s)
	if p, ok := protoNames[s]; ok {
		return p, nil
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(s, "ip/"), 10, 8)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("unknown protocol %q (want tcp, udp, sctp, icmp, icmpv6, gre, esp, ah or ip/N)", s)
	}
	return uint8(n), nil
}

// Service is one protocol with an optional destination port range.
// ICMP in a policy means ICMP for IPv4 and ICMPv6 alike.
type Service struct {
	Proto  uint8
	PortLo uint16 // 0 with PortHi 0: every port (or a protocol without ports)
	PortHi uint16
}

func hasPorts(p uint8) bool { return p == ProtoTCP || p == ProtoUDP || p == ProtoSCTP }

// Matches reports whether a flow of proto to port dport is this service.
func (s Service) Matches(proto uint8, dport uint16) bool {
	if s.Proto != proto && !(s.Proto == ProtoICMP && proto == ProtoICMPv6) {
		return false
	}
	if s.PortHi == 0 {
		return true
	}
	return dport >= s.PortLo && dport <= s.PortHi
}

func (s Service) String() string {
	n := ProtoName(s.Proto)
	switch {
	case s.PortHi == 0:
		return n
	case s.PortLo == s.PortHi:
		return n + "/" + strconv.Itoa(int(s.PortLo))
	default:
		return n + "/" + strconv.Itoa(int(s.PortLo)) + "-" + strconv.Itoa(int(s.PortHi))
	}
}

// ParseService parses "tcp/443", "udp/5060-5061", "icmp", "gre" or "ip/47".
func ParseService(s string) (Service, error) {
	name, ports, hasPort := strings.Cut(strings.TrimSpace(s), "/")
	if name == "ip" {
		name, ports, hasPort = s, "", false
	}
	p, err := ParseProto(name)
	if err != nil {
		return Service{}, err
	}
	svc := Service{Proto: p}
	if !hasPort {
		return svc, nil
	}
	if !hasPorts(p) {
		return Service{}, fmt.Errorf("%s has no ports", name)
	}
	lo, hi, isRange := strings.Cut(ports, "-")
	l, err := parsePort(lo)
	if err != nil {
		return Service{}, err
	}
	h := l
	if isRange {
		if h, err = parsePort(hi); err != nil {
			return Service{}, err
		}
		if h < l {
			return Service{}, fmt.Errorf("port range %d-%d runs backwards", l, h)
		}
	}
	svc.PortLo, svc.PortHi = l, h
	return svc, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port (1-65535)", s)
	}
	return uint16(n), nil
}

// ParsePrefix parses a CIDR, or a bare address as a host prefix. Host bits
// set below the mask are an error: "203.0.113.5/24" is almost always a typo.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: zones are not allowed", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q: write IPv4-mapped prefixes as IPv4", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set (did you mean %s?)", s, m)
	}
	return p, nil
}
