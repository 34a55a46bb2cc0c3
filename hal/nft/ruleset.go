package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// IP protocol numbers the ruleset names.
const (
	ProtoICMP    uint8 = 1
	ProtoIGMP    uint8 = 2
	ProtoIPIP    uint8 = 4  // IPv4 in IP
	ProtoTCP     uint8 = 6  //
	ProtoUDP     uint8 = 17 //
	ProtoIPv6    uint8 = 41 // IPv6 in IP (6in4, sit)
	ProtoGRE     uint8 = 47
	ProtoICMPv6  uint8 = 58
	ProtoEtherIP uint8 = 97
	ProtoSCTP    uint8 = 132
)

// TunnelProtocols are carried in IP and hide a packet the kernel's sets
// cannot see: IPv4 and IPv6 in IP, GRE, EtherIP.
var TunnelProtocols = []uint8{ProtoIPIP, ProtoIPv6, ProtoGRE, ProtoEtherIP}

// TunnelPorts are UDP ports of tunnels: VXLAN (IANA and Linux's), VXLAN-GPE,
// Geneve, GTP-U. A datagram from or to one is a tunnel whichever end it is.
var TunnelPorts = []uint16{4789, 8472, 4790, 6081, 2152}

// Ruleset is a verified policy reduced to what the kernel enforces at one
// site: the caller has dropped approvals that do not apply there.
type Ruleset struct {
	Serial   uint64
	Monitor  bool // international traffic no approval covers passes, counted (the policy default "monitor"); otherwise it is dropped
	Domestic []netip.Prefix
	// Approvals in the policy's order: where several cover a flow, the one
	// listing the most specific prefix, then the earliest, counts it.
	Approvals []Approval
}

// Approval allows international traffic to and from its remote prefixes.
type Approval struct {
	ID     string
	Remote []netip.Prefix
	// Services is what may be opened towards the remote end; empty: every
	// protocol and port except the tunnels (TunnelProtocols, TunnelPorts),
	// which pass only under an approval that names them.
	Services []Service
	// From and Until bound the approval (zero: open); the kernel checks
	// them against its clock on every packet, with or without the agent.
	From, Until time.Time
}

// Service is a protocol and, for TCP, UDP and SCTP, a destination port
// range; PortLo and PortHi both 0 is every port. The ruleset takes it
// literally: ICMP is IPv4's, add ICMPv6 for IPv6's.
type Service struct {
	Proto          uint8
	PortLo, PortHi uint16
}

func hasPorts(p uint8) bool { return p == ProtoTCP || p == ProtoUDP || p == ProtoSCTP }

// tunnel reports whether s names a tunnel: one of TunnelProtocols, or UDP
// ports that include one of TunnelPorts. UDP without ports does not.
func (s Service) tunnel() bool {
	for _, p := range TunnelProtocols {
		if s.Proto == p {
			return true
		}
	}
	if s.Proto != ProtoUDP || s.PortHi == 0 {
		return false
	}
	for _, p := range TunnelPorts {
		if p >= s.PortLo && p <= s.PortHi {
			return true
		}
	}
	return false
}

// ErrInvalid is wrapped by every error about a Ruleset's contents.
var ErrInvalid = errors.New("nft: invalid ruleset")

// validate checks what the kernel would otherwise refuse halfway through a
// transaction, or worse, accept with another meaning.
func (rs *Ruleset) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	// where is formatted only for an error: a national policy has 100,000
	// prefixes to check.
	pfx := func(p netip.Prefix, where func() string) error {
		switch {
		case !p.IsValid():
			return bad("%s: invalid prefix", where())
		case p.Addr().Zone() != "":
			return bad("%s: %s has a zone", where(), p)
		case p.Addr().Is4In6():
			return bad("%s: %s is IPv4-mapped (write it as IPv4)", where(), p)
		case p.Masked() != p:
			return bad("%s: %s has host bits set", where(), p)
		}
		return nil
	}
	for i, p := range rs.Domestic {
		if err := pfx(p, func() string { return fmt.Sprintf("domestic[%d]", i) }); err != nil {
			return err
		}
	}
	ids := make(map[string]bool, len(rs.Approvals))
	for i, a := range rs.Approvals {
		at := func() string { return fmt.Sprintf("approvals[%d] (%q)", i, a.ID) }
		if a.ID == "" {
			return bad("approvals[%d]: no id", i)
		}
		if ids[a.ID] {
			return bad("%s: id repeated (counters are kept by id)", at())
		}
		ids[a.ID] = true
		if len(a.Remote) == 0 {
			return bad("%s: no remote prefixes", at())
		}
		for j, p := range a.Remote {
			if err := pfx(p, func() string { return fmt.Sprintf("%s.remote[%d]", at(), j) }); err != nil {
				return err
			}
		}
		for j, s := range a.Services {
			switch {
			case s.Proto == 0:
				return bad("%s.services[%d]: protocol 0", at(), j)
			case s.PortHi == 0 && s.PortLo != 0, s.PortHi < s.PortLo:
				return bad("%s.services[%d]: port range %d-%d", at(), j, s.PortLo, s.PortHi)
			case s.PortHi != 0 && !hasPorts(s.Proto):
				return bad("%s.services[%d]: protocol %d has no ports", at(), j, s.Proto)
			}
		}
	}
	return nil
}
