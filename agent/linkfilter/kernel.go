package linkfilter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/hal/nft"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/match"
)

// Events of the kernel fast path (links.enforce: nftables).
const (
	// EventRulesetReasserted: something other than the agent changed the
	// kernel ruleset, and the agent installed it again.
	EventRulesetReasserted = "link.ruleset.reasserted"
	// EventRulesetRefused: the kernel refused a policy's ruleset; the one
	// before stays in force.
	EventRulesetRefused = "link.ruleset.refused"
)

// KernelRuleset is the kernel's share of a verified policy at site: the
// approvals that apply there, ICMP meaning ICMPv6 as well, as the matcher
// reads it.
func KernelRuleset(p *policy.Policy, site string) *nft.Ruleset {
	rs := &nft.Ruleset{Serial: p.Serial, Monitor: p.Default == policy.DefaultMonitor, Domestic: p.Domestic}
	for i := range p.Approvals {
		a := &p.Approvals[i]
		if !a.CoversSite(site) {
			continue
		}
		k := nft.Approval{ID: a.ID, Remote: a.Remote, From: a.ValidFrom, Until: a.ValidUntil}
		for _, s := range a.Services {
			k.Services = append(k.Services, nft.Service{Proto: s.Proto, PortLo: s.PortLo, PortHi: s.PortHi})
			if s.Proto == policy.ProtoICMP {
				k.Services = append(k.Services, nft.Service{Proto: policy.ProtoICMPv6})
			}
		}
		rs.Approvals = append(rs.Approvals, k)
	}
	return rs
}

// KernelOptions configure the kernel fast path.
type KernelOptions struct {
	Site            string
	Inside, Outside string
	Ingress         Ingress
	// CheckEvery is how often the ruleset is read back (default 1 s).
	CheckEvery time.Duration
	Events     report.Events // default report.Discard
	Logger     *slog.Logger  // default slog.Default()
	// NetNS is a file descriptor of the network namespace to work in (0:
	// the agent's; tests use others).
	NetNS int
}

// Kernel enforces the policy in the kernel (hal/nft): a bridge between
// the two ports, filtered by nftables compiled from each policy. The pcap
// path (a Monitor on the same ports) is what still sees inside tunnels,
// reports denied flows and keeps evidence.
type Kernel struct {
	o  KernelOptions
	e  *nft.Enforcer
	mu sync.Mutex
	m  *match.Matcher // in force
}

// OpenKernel prepares the kernel path: nothing is bridged until the first
// policy is in force (Attach).
func OpenKernel(o KernelOptions) (*Kernel, error) {
	if o.CheckEvery <= 0 {
		o.CheckEvery = time.Second
	}
	if o.Events == nil {
		o.Events = report.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	e, err := nft.Open(nft.Options{Inside: o.Inside, Outside: o.Outside, StrictIngress: o.Ingress == IngressStrict, NetNS: o.NetNS})
	if err != nil {
		return nil, fmt.Errorf("linkfilter: kernel path: %w", err)
	}
	return &Kernel{o: o, e: e}, nil
}

// SetMatcher installs the matcher's policy in the kernel, replacing the
// one in force in one transaction: a revoked approval cuts its live flows
// at their next packet. If the kernel refuses it, the policy before stays
// in force, an event says so, and the error is returned. A nil matcher
// changes nothing (the kernel keeps the last policy).
func (k *Kernel) SetMatcher(m *match.Matcher) error {
	if m == nil {
		return nil
	}
	p := m.Policy()
	if err := k.e.Apply(KernelRuleset(p, k.o.Site)); err != nil {
		k.o.Logger.Error("kernel ruleset refused; the one before stays in force", "serial", p.Serial, "err", err)
		k.o.Events.Emit(EventRulesetRefused, report.Error, report.Fields{"serial": p.Serial, "error": err.Error()})
		return err
	}
	k.mu.Lock()
	k.m = m
	k.mu.Unlock()
	s := k.e.Stats()
	k.o.Logger.Info("kernel ruleset in force", "serial", p.Serial, "elements", s.Elements, "rules", s.Rules, "took", s.LastApply)
	return nil
}

// Attach bridges the two ports once a policy is in force.
func (k *Kernel) Attach() error { return k.e.Attach() }

// Run reads the ruleset back every CheckEvery until ctx ends, installing
// it again, with an event, when anything else changed it. The ruleset
// stays in force after Run returns.
func (k *Kernel) Run(ctx context.Context) error {
	return k.e.Run(ctx, k.o.CheckEvery, func(r nft.Reassertion) {
		f := report.Fields{"changed": r.Differences, "took_ms": float64(r.Took.Microseconds()) / 1e3}
		if r.Err != nil {
			f["error"] = r.Err.Error()
		}
		k.o.Logger.Warn("kernel ruleset changed by someone else; installed again", "changed", r.Differences, "err", r.Err)
		k.o.Events.Emit(EventRulesetReasserted, report.Warning, f)
	})
}

// Check reads the ruleset back once (see Run) and reports whether it had
// to install it again.
func (k *Kernel) Check() (bool, error) { return k.e.Check() }

// KernelSnapshot is the kernel path's counters.
type KernelSnapshot struct {
	PolicySerial uint64
	Approvals    []ApprovalCount // sorted by ID
	Counters     nft.Counters
	Stats        nft.Stats
}

// Snapshot reads the kernel's counters.
func (k *Kernel) Snapshot() (KernelSnapshot, error) {
	c, err := k.e.Counters()
	if err != nil {
		return KernelSnapshot{}, err
	}
	s := KernelSnapshot{Counters: c, Stats: k.e.Stats()}
	s.PolicySerial = s.Stats.Serial
	for id, n := range c.Approvals {
		s.Approvals = append(s.Approvals, ApprovalCount{ID: id, Packets: n.Packets, Bytes: n.Bytes})
	}
	sort.Slice(s.Approvals, func(i, j int) bool { return s.Approvals[i].ID < s.Approvals[j].ID })
	return s, nil
}

// Fill puts what the kernel enforced into a monitor's snapshot: the
// per-approval counts and the denied frames are the kernel's (the pcap
// monitor on the same ports counts what it saw, before the kernel's
// verdict); the rest stays the monitor's.
func (k *Kernel) Fill(s *Snapshot) error {
	ks, err := k.Snapshot()
	if err != nil {
		return err
	}
	s.Approvals = ks.Approvals
	s.PolicySerial = ks.PolicySerial
	c := ks.Counters
	s.Denied = c.Denied.Packets + c.Tunnel.Packets + c.TCPNoSYN.Packets + c.Invalid.Packets + c.Spoofed.Packets + c.Other.Packets + c.Unjudged.Packets
	s.DeniedBytes = c.Denied.Bytes + c.Tunnel.Bytes + c.TCPNoSYN.Bytes + c.Invalid.Bytes + c.Spoofed.Bytes + c.Other.Bytes + c.Unjudged.Bytes
	s.Spoofed, s.TCPNoSYN, s.LinkControlLimited = c.Spoofed.Packets, c.TCPNoSYN.Packets, c.LinkControlLimited.Packets
	return nil
}

// Close closes the kernel path's sockets; the ruleset and the bridge stay
// and go on filtering with the last policy.
func (k *Kernel) Close() error { return k.e.Close() }

// Remove takes the bridge down (cutting the link) and deletes the ruleset,
// for a move back to the userspace path.
func (k *Kernel) Remove() error {
	return errors.Join(k.e.Remove(), k.e.Close())
}
