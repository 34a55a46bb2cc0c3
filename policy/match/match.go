package match

import (
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/gaissmai/bart"

	"linkguard.dev/linkguard/policy"
)

// Verdict is what a flow gets.
type Verdict uint8

const (
	Domestic  Verdict = iota + 1 // neither end is international: not the regulator's concern
	Approved                     // covered by an approval
	Denied                       // international, not covered, policy default deny
	Monitored                    // international, not covered, policy default monitor: passed and reported
)

var verdictNames = [...]string{"invalid", "domestic", "approved", "denied", "monitored"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "invalid"
}

// Allowed reports whether frames of the flow may pass.
func (v Verdict) Allowed() bool { return v == Domestic || v == Approved || v == Monitored }

// Reason says why a verdict was reached. Its String is a constant, so logs,
// events and `explain` all say the same thing without allocating.
type Reason uint8

const (
	ReasonDomestic     Reason = iota + 1 // both ends in domestic space
	ReasonApproved                       // an approval covers site, remote, service and time
	ReasonNoApproval                     // no approval lists the remote address
	ReasonService                        // approvals cover the remote, but not this protocol/port
	ReasonSite                           // approvals list the remote, but not for this site
	ReasonNotYetValid                    // the covering approval's window has not opened
	ReasonLapsed                         // the covering approval's window has closed
	ReasonNoPolicy                       // no policy loaded
	ReasonUnclassified                   // the packet could not be classified (set by callers)
	// Reasons the packet filter sets for what it refuses before any
	// approval is looked up.
	ReasonSpoofed         // the source does not belong on the side it arrived from
	ReasonNoSYN           // TCP of a connection whose opening SYN was not seen
	ReasonFragment        // a fragment whose datagram was not seen, or overlapped
	ReasonLinkControlRate // more link-control frames than the protocol ever sends
)

var reasonNames = [...]string{
	"invalid",
	"both ends are domestic",
	"covered by an approval",
	"no approval covers the remote address",
	"the approval covering the remote address does not include this service",
	"the approval covering the remote address does not apply at this site",
	"the approval covering the remote address is not valid yet",
	"the approval covering the remote address has lapsed",
	"no policy is loaded",
	"the packet could not be classified",
	"the source address does not belong on the side it arrived from",
	"a TCP segment of a connection whose opening was not seen",
	"a fragment of a datagram that was not seen or overlapped",
	"more link-control frames than the protocol sends",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "invalid"
}

// Query is one flow as the matcher sees it: Src is the end that opened it,
// DPort the port it opened to.
type Query struct {
	Site  string
	Src   netip.Addr
	Dst   netip.Addr
	Proto uint8
	DPort uint16
	Now   time.Time
}

// Decision is the matcher's answer.
type Decision struct {
	Verdict  Verdict
	Reason   Reason
	Approval int32      // index of the approval (see Matcher.Approval), -1 if none
	Remote   netip.Addr // the international end that was judged; invalid when domestic
	// RecheckAt is when an approval window affecting this flow opens or
	// closes, in Unix nanoseconds: a cached verdict must be recomputed then.
	// math.MaxInt64 when nothing can change it short of a new policy.
	RecheckAt int64
	// SrcDomestic and DstDomestic say which of the query's ends are in
	// domestic space (callers keep them instead of looking again).
	SrcDomestic, DstDomestic bool
}

// entry is one listed remote prefix: the run of approvals in Matcher.cands
// that list it, the first of them (most prefixes have one approval: no
// second place to read), and the entry of its nearest listed supernet (-1:
// none).
type entry struct {
	off, n uint32
	first  int32
	parent int32
}

// Matcher is a compiled, immutable policy.
type Matcher struct {
	pol      *policy.Policy
	domestic *bart.Lite
	remote   *bart.Table[int32] // prefix -> index into entries
	entries  []entry
	cands    []int32
	apps     []compiled
	prefixes int
}

type compiled struct {
	app   *policy.Approval
	sites []string
	from  int64 // Unix nanos; math.MinInt64 when open
	until int64 // Unix nanos; math.MaxInt64 when open
}

// Compile builds a matcher from a validated policy. The policy must not be
// changed afterwards.
func Compile(p *policy.Policy) *Matcher {
	m := &Matcher{pol: p, domestic: new(bart.Lite), remote: new(bart.Table[int32])}
	for _, pfx := range p.Domestic {
		m.domestic.Insert(pfx)
	}
	// Pass 1: approvals that list each prefix exactly.
	exact := make(map[netip.Prefix][]int32, p.Prefixes())
	m.apps = make([]compiled, len(p.Approvals))
	for i := range p.Approvals {
		a := &p.Approvals[i]
		c := compiled{app: a, sites: a.Sites, from: math.MinInt64, until: math.MaxInt64}
		if !a.ValidFrom.IsZero() {
			c.from = a.ValidFrom.UnixNano()
		}
		if !a.ValidUntil.IsZero() {
			c.until = a.ValidUntil.UnixNano()
		}
		m.apps[i] = c
		for _, pfx := range a.Remote {
			l := exact[pfx]
			if len(l) == 0 || l[len(l)-1] != int32(i) {
				exact[pfx] = append(l, int32(i))
			}
		}
	}
	m.prefixes = len(exact)
	// Pass 2: each prefix points at its nearest listed supernet, so the
	// longest match and a short walk up the chain yield every candidate.
	// (Copying supernets' approvals into every prefix instead cost 11 MB at
	// 100,000 overlapping prefixes.) Supernets are found in a scratch table;
	// the real one is filled once, in sorted order.
	scratch := new(bart.Lite)
	sorted := make([]netip.Prefix, 0, len(exact))
	for pfx := range exact {
		scratch.Insert(pfx)
		sorted = append(sorted, pfx)
	}
	slices.SortFunc(sorted, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	index := make(map[netip.Prefix]int32, len(sorted))
	m.entries = make([]entry, len(sorted))
	m.cands = make([]int32, 0, len(sorted))
	for i, pfx := range sorted {
		parent := int32(-1)
		for super := range scratch.Supernets(pfx) {
			if super != pfx {
				parent = index[super] // sorted order puts supernets first
				break
			}
		}
		own := exact[pfx]
		m.entries[i] = entry{off: uint32(len(m.cands)), n: uint32(len(own)), first: own[0], parent: parent}
		m.cands = append(m.cands, own...)
		index[pfx] = int32(i)
		m.remote.Insert(pfx, int32(i))
	}
	return m
}

// Policy is the policy the matcher was compiled from.
func (m *Matcher) Policy() *policy.Policy { return m.pol }

// Approval returns the approval a Decision names.
func (m *Matcher) Approval(i int32) *policy.Approval {
	if i < 0 || int(i) >= len(m.pol.Approvals) {
		return nil
	}
	return &m.pol.Approvals[i]
}

// Prefixes is the number of distinct remote prefixes compiled.
func (m *Matcher) Prefixes() int { return m.prefixes }

// IsDomestic reports whether a is in domestic space.
func (m *Matcher) IsDomestic(a netip.Addr) bool { return m.domestic.Lookup(a.Unmap()) }

// Decide judges one flow. It allocates nothing.
func (m *Matcher) Decide(q *Query) Decision {
	src, dst := q.Src.Unmap(), q.Dst.Unmap()
	srcDom, dstDom := m.domestic.Lookup(src), m.domestic.Lookup(dst)
	if srcDom && dstDom {
		return Decision{Verdict: Domestic, Reason: ReasonDomestic, Approval: -1, RecheckAt: math.MaxInt64, SrcDomestic: true, DstDomestic: true}
	}
	// The remote end is the international one. Transit traffic (neither
	// end domestic) is judged by where it goes: the end the flow was
	// opened to. Taking either end would let a sender that borrows an
	// approved address as its source reach anywhere.
	d := Decision{Approval: -1, RecheckAt: math.MaxInt64, SrcDomestic: srcDom, DstDomestic: dstDom}
	remote := dst
	if dstDom {
		remote = src
	}
	d.Remote = remote
	now := q.Now.UnixNano()
	best, bestMisses := ReasonNoApproval, 4
	ei, ok := m.remote.Lookup(remote)
	if !ok {
		ei = -1
	}
	// Most specific prefix first, then up the chain of supernets.
	for ; ei >= 0; ei = m.entries[ei].parent {
		e := &m.entries[ei]
		idx := e.first
		for i := uint32(0); ; {
			r, misses := m.apps[idx].check(q, now, &d.RecheckAt)
			if misses == 0 {
				d.Verdict, d.Reason, d.Approval = Approved, ReasonApproved, idx
				return d
			}
			// The nearest miss explains the denial best: fewest failed
			// conditions, then the later reason.
			if misses < bestMisses || misses == bestMisses && r > best {
				best, bestMisses = r, misses
			}
			if i++; i >= e.n {
				break
			}
			idx = m.cands[e.off+i]
		}
	}
	d.Reason = best
	d.Verdict = Denied
	if m.pol.Default == policy.DefaultMonitor {
		d.Verdict = Monitored
	}
	return d
}

// check returns how many of the approval's conditions (site, service, time
// window) the flow misses and the weightiest of them, and lowers recheck to
// the next moment the window changes.
func (c *compiled) check(q *Query, now int64, recheck *int64) (Reason, int) {
	reason, misses := ReasonApproved, 0
	if len(c.sites) > 0 && !slices.Contains(c.sites, q.Site) {
		reason, misses = ReasonSite, misses+1
	}
	if !c.app.CoversService(q.Proto, q.DPort) {
		misses++
		if reason == ReasonApproved {
			reason = ReasonService
		}
	}
	switch {
	case now < c.from:
		*recheck = min(*recheck, c.from)
		return ReasonNotYetValid, misses + 1
	case now >= c.until:
		return ReasonLapsed, misses + 1
	}
	*recheck = min(*recheck, c.until)
	return reason, misses
}
