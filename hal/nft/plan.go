package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Counter names, in the ip and ip6 tables unless said otherwise; an approval's
// counter is "a:" and its ID.
const (
	CounterDenied             = "denied"               // international, no approval: dropped (default deny)
	CounterMonitored          = "monitored"            // international, no approval: passed (default monitor)
	CounterDomestic           = "domestic"             // both ends domestic
	CounterInvalid            = "invalid"              // conntrack found no valid state (out-of-window TCP, stray ICMP errors)
	CounterTCPNoSYN           = "tcp_no_syn"           // TCP opening without a plain SYN (mid-stream pick-up, forged SYN-ACK)
	CounterTunnel             = "tunnel"               // tunnels no approval names (dropped, or passed under default monitor)
	CounterLinkControl        = "link_control"         // ND, MLD, IGMP, DHCP; and ARP in the bridge table
	CounterLinkControlLimited = "link_control_limited" // link control past its rate, dropped (both tables)
	CounterSpoofed            = "spoofed"              // bridge table: source does not belong on its port (strict ingress)
	CounterOther              = "other"                // bridge table: neither IP nor ARP (VLAN-tagged, MPLS, PPPoE, ...)
	CounterUnjudged           = "unjudged"             // bridge table: IP the inet table never saw (br_netfilter off)
	approvalPrefix            = "a:"
)

// metaTimeNS is NFT_META_TIME_NS (Linux 5.4), not in x/sys: the wall
// clock in nanoseconds, host byte order.
const metaTimeNS expr.MetaKey = 30

// Rates of link control, as the userspace filter allows them.
const (
	ndRate, ndBurst     = 100, 200 // ARP and IPv6 neighbour discovery
	linkRate, linkBurst = 20, 200  // MLD, IGMP, DHCP
)

// setChunk is how many elements go in one netlink message: an element
// list is one attribute, and an attribute's length is 16 bits.
const setChunk = 1024

type planSet struct {
	set   *nftables.Set
	elems []nftables.SetElement
}

type planChain struct {
	chain *nftables.Chain
	base  bool
	rules [][]expr.Any
}

// plan is a compiled Ruleset: everything one transaction adds, to three
// tables of one name: bridge (ports, link layer, ingress, the judged mark),
// ip and ip6 (conntrack and the approvals, one family each so every
// expression is the family's own and `nft list ruleset` reads it).
type plan struct {
	bridge, ip, ip6 *nftables.Table
	sets            []planSet
	chains          []planChain // regular chains, then base chains
	objs            []*nftables.NamedObj
	approvalOf      map[string]string            // approval counter name -> approval ID
	chainsOf        map[string][]*nftables.Chain // approval ID -> its chains (plain and tunnel, both families)
	elements        int
}

func (p *plan) tables() []*nftables.Table { return []*nftables.Table{p.bridge, p.ip, p.ip6} }

func (p *plan) counterNames(t *nftables.Table) map[string]bool {
	m := map[string]bool{}
	for _, o := range p.objs {
		if o.Table == t {
			m[o.Name] = true
		}
	}
	return m
}

// builder compiles one Ruleset under one generation's names.
type builder struct {
	o   *Options
	gen uint32
	p   *plan
}

func (b *builder) name(s string) string { return s + "_" + strconv.FormatUint(uint64(b.gen), 10) }

// ApprovalCounter is the name of an approval's counter (in the ip and the
// ip6 table alike).
func ApprovalCounter(id string) string {
	if len(approvalPrefix)+len(id) > 255 { // NFT_OBJ_MAXNAMELEN with its NUL
		return approvalPrefix + "#" + strconv.FormatUint(fnv64(id), 16)
	}
	return approvalPrefix + id
}

func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// compile builds the plan of rs. It does not touch the kernel.
func compile(rs *Ruleset, o *Options, gen uint32) (*plan, error) {
	if err := rs.validate(); err != nil {
		return nil, err
	}
	return compileValid(rs, o, gen), nil
}

func compileValid(rs *Ruleset, o *Options, gen uint32) *plan {
	b := &builder{o: o, gen: gen, p: &plan{
		bridge:     &nftables.Table{Name: o.Table, Family: nftables.TableFamilyBridge},
		ip:         &nftables.Table{Name: o.Table, Family: nftables.TableFamilyIPv4},
		ip6:        &nftables.Table{Name: o.Table, Family: nftables.TableFamilyIPv6},
		approvalOf: map[string]string{},
		chainsOf:   map[string][]*nftables.Chain{},
	}}
	b.familyTable(rs, b.p.ip)
	b.familyTable(rs, b.p.ip6)
	b.bridgeTable(rs)
	for _, s := range b.p.sets {
		b.p.elements += len(s.elems)
	}
	return b.p
}

func (b *builder) counter(t *nftables.Table, name string) {
	b.p.objs = append(b.p.objs, &nftables.NamedObj{Table: t, Name: name, Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
}

func (b *builder) addSet(s *nftables.Set, elems []nftables.SetElement) *nftables.Set {
	b.p.sets = append(b.p.sets, planSet{s, elems})
	return s
}

func (b *builder) chain(t *nftables.Table, name string, rules [][]expr.Any) string {
	b.p.chains = append(b.p.chains, planChain{chain: &nftables.Chain{Name: name, Table: t}, rules: rules})
	return name
}

func (b *builder) baseChain(c *nftables.Chain, rules [][]expr.Any) {
	b.p.chains = append(b.p.chains, planChain{chain: c, base: true, rules: rules})
}

func addrType(v6 bool) nftables.SetDatatype {
	if v6 {
		return nftables.TypeIP6Addr
	}
	return nftables.TypeIPAddr
}

// intervalSet is a plain interval set of prefixes of one family.
func (b *builder) intervalSet(t *nftables.Table, name string, v6 bool, ps []netip.Prefix) *nftables.Set {
	var elems []nftables.SetElement
	for _, s := range merged(family(ps, v6)) {
		elems = appendSpan(elems, s, nil)
	}
	return b.addSet(&nftables.Set{Table: t, Name: b.name(name), KeyType: addrType(v6), Interval: true}, elems)
}

func family(ps []netip.Prefix, v6 bool) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.Addr().Is6() == v6 {
			out = append(out, p)
		}
	}
	return out
}

// appendSpan adds the elements of one range: its start (with the verdict,
// in a map) and the end marker one past it, which the highest range of the
// address space does without.
func appendSpan(elems []nftables.SetElement, s span, v *expr.Verdict) []nftables.SetElement {
	elems = append(elems, nftables.SetElement{Key: s.lo.AsSlice(), VerdictData: v})
	if next := s.hi.Next(); next.IsValid() {
		elems = append(elems, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
	}
	return elems
}

// verdictMap is an interval map from remote addresses of the table's
// family to the chains of the approvals that list them, most specific
// prefix first.
func (b *builder) verdictMap(t *nftables.Table, name string, apps []int, rs *Ruleset, groups *groupSet) *nftables.Set {
	v6 := t.Family == nftables.TableFamilyIPv6
	// The approvals listing each prefix exactly, in policy order.
	own := make(map[netip.Prefix][]int, len(apps)*4)
	var order []netip.Prefix
	for _, i := range apps {
		for _, p := range rs.Approvals[i].Remote {
			if p.Addr().Is6() != v6 {
				continue
			}
			l, ok := own[p]
			if !ok {
				order = append(order, p)
			}
			if len(l) == 0 || l[len(l)-1] != i {
				own[p] = append(l, i)
			}
		}
	}
	ls := make([]listed, len(order))
	lists := make([][]int, len(order))
	for i, p := range order {
		ls[i] = listed{p, i}
		lists[i] = own[p]
	}
	spans := flatten(ls, func(inner, outer int) int {
		l := lists[inner]
		if outer >= 0 {
			l = append(slices.Clone(l), groups.lists[outer]...)
		}
		return groups.id(l)
	})
	elems := make([]nftables.SetElement, 0, 2*len(spans))
	for _, s := range spans {
		elems = appendSpan(elems, s, groups.jumps[s.target])
	}
	return b.addSet(&nftables.Set{Table: t, Name: b.name(name), KeyType: addrType(v6), DataType: nftables.TypeVerdict,
		IsMap: true, Interval: true}, elems)
}

// groupSet numbers the distinct lists of candidate approvals; a list of
// one is that approval's chain, a longer one a chain jumping to each.
type groupSet struct {
	b       *builder
	t       *nftables.Table
	prefix  string           // "g" or "tg"
	app     func(int) string // an approval's chain
	rs      *Ruleset
	tunnels bool
	ids     map[string]int
	single  map[int]int // ids of lists of one approval
	lists   [][]int
	jumps   []*expr.Verdict // by id, shared by the elements
}

// id numbers a list of candidates, most specific first. A candidate that
// an earlier one dominates (every service and moment it allows, the
// earlier allows too) can never be the first to match, so it is left out:
// approvals that overlap with the same services, as national policies'
// do, cost one jump, not one per overlapping prefix.
func (g *groupSet) id(l []int) int {
	l = dedupe(l)
	kept := l[:0:0]
	for _, c := range l {
		if !slices.ContainsFunc(kept, func(e int) bool { return dominates(&g.rs.Approvals[e], &g.rs.Approvals[c], g.tunnels) }) {
			kept = append(kept, c)
		}
	}
	l = kept
	if len(l) == 1 {
		if id, ok := g.single[l[0]]; ok {
			return id
		}
		id := g.add(l)
		g.single[l[0]] = id
		return id
	}
	var k strings.Builder
	for _, v := range l {
		k.WriteString(strconv.Itoa(v))
		k.WriteByte(',')
	}
	if id, ok := g.ids[k.String()]; ok {
		return id
	}
	id := g.add(l)
	g.ids[k.String()] = id
	return id
}

func (g *groupSet) add(l []int) int {
	id := len(g.lists)
	g.lists = append(g.lists, l)
	g.jumps = append(g.jumps, jump(g.chain(id)))
	return id
}

// dominates reports whether approval e allows every flow c does, in the
// context of the plain chains (tunnels never reach them, so no services is
// everything) or of the tunnel chains (only tunnel services count).
func dominates(e, c *Approval, tunnels bool) bool {
	if !e.From.IsZero() && (c.From.IsZero() || c.From.Before(e.From)) {
		return false
	}
	if !e.Until.IsZero() && (c.Until.IsZero() || c.Until.After(e.Until)) {
		return false
	}
	es, cs := e.Services, c.Services
	if tunnels {
		es, cs = tunnelServices(es), tunnelServices(cs)
	} else {
		if len(es) == 0 {
			return true
		}
		if len(cs) == 0 {
			return false
		}
	}
	for _, s := range cs {
		if !slices.ContainsFunc(es, func(t Service) bool {
			return t.Proto == s.Proto && (t.PortHi == 0 || s.PortHi != 0 && t.PortLo <= s.PortLo && s.PortHi <= t.PortHi)
		}) {
			return false
		}
	}
	return true
}

func tunnelServices(ss []Service) []Service {
	var out []Service
	for _, s := range ss {
		if s.tunnel() {
			out = append(out, s)
		}
	}
	return out
}

func dedupe(l []int) []int {
	out := make([]int, 0, len(l))
	for _, v := range l {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func (g *groupSet) chain(id int) string {
	if l := g.lists[id]; len(l) == 1 {
		return g.app(l[0])
	}
	return g.b.name(g.prefix + strconv.Itoa(id))
}

// chains adds the chains of groups of more than one approval.
func (g *groupSet) chains() {
	for id, l := range g.lists {
		if len(l) < 2 {
			continue
		}
		var rules [][]expr.Any
		for _, a := range l {
			rules = append(rules, []expr.Any{jump(g.app(a))})
		}
		g.b.chain(g.t, g.chain(id), rules)
	}
}

// familyTable fills the ip or the ip6 table: bridged IP of that family,
// handed over by br_netfilter with its conntrack entry, judged on every
// packet by the flow's original direction, so a swap or a closing window
// applies to established flows at their next packet.
func (b *builder) familyTable(rs *Ruleset, t *nftables.Table) {
	v6 := t.Family == nftables.TableFamilyIPv6
	for _, n := range []string{CounterDenied, CounterMonitored, CounterDomestic, CounterInvalid, CounterTCPNoSYN,
		CounterTunnel, CounterLinkControl, CounterLinkControlLimited} {
		b.counter(t, n)
	}
	pass := b.chain(t, b.name("pass"), [][]expr.Any{append(b.markSet(), accept())})
	dom := b.intervalSet(t, "dom", v6, rs.Domestic)

	// Approvals whose window is not empty, and those naming a tunnel.
	var apps, tunApps []int
	for i, a := range rs.Approvals {
		if !a.From.IsZero() && !a.Until.IsZero() && !a.From.Before(a.Until) {
			continue
		}
		apps = append(apps, i)
		if slices.ContainsFunc(a.Services, Service.tunnel) {
			tunApps = append(tunApps, i)
		}
	}
	appChain := func(i int) string { return b.name("a" + strconv.Itoa(i)) }
	tunChain := func(i int) string { return b.name("t" + strconv.Itoa(i)) }
	// A flow an approval (or domestic space) passed carries its number in
	// conntrack's mark; its next packets skip the sets and go straight to
	// that approval's chain (the flow cache). The numbers are this
	// generation's: after a swap no old flow finds its number, and each is
	// judged afresh at its next packet.
	var cached []nftables.SetElement
	for _, i := range apps {
		a := &rs.Approvals[i]
		obj := ApprovalCounter(a.ID)
		b.counter(t, obj)
		b.p.approvalOf[obj] = a.ID
		var mark []expr.Any
		if i+1 < cacheDomestic {
			// A cached flow goes straight to its approval's chain: window
			// and service are checks of the packet's clock and conntrack
			// entry, not lookups.
			mark = setCtMark(b.cacheID(i + 1))
			cached = append(cached, nftables.SetElement{Key: ne32(b.cacheID(i + 1)), VerdictData: jump(appChain(i))})
		}
		b.chain(t, appChain(i), b.approvalRules(a, obj, pass, false, mark))
		b.p.chainsOf[a.ID] = append(b.p.chainsOf[a.ID], b.p.chains[len(b.p.chains)-1].chain)
		if slices.Contains(tunApps, i) {
			b.chain(t, tunChain(i), b.approvalRules(a, obj, pass, true, nil))
			b.p.chainsOf[a.ID] = append(b.p.chainsOf[a.ID], b.p.chains[len(b.p.chains)-1].chain)
		}
	}
	domesticPass := b.chain(t, b.name("cdom"), [][]expr.Any{{objref(CounterDomestic), gotoChain(pass)}})
	cached = append(cached, nftables.SetElement{Key: ne32(b.cacheID(cacheDomestic)), VerdictData: gotoChain(domesticPass)})
	cache := b.addSet(&nftables.Set{Table: t, Name: b.name("flows"), KeyType: nftables.TypeMark, DataType: nftables.TypeVerdict, IsMap: true}, cached)
	groups := &groupSet{b: b, t: t, prefix: "g", app: appChain, rs: rs, ids: map[string]int{}, single: map[int]int{}}
	tgroups := &groupSet{b: b, t: t, prefix: "tg", app: tunChain, rs: rs, tunnels: true, ids: map[string]int{}, single: map[int]int{}}
	remote := b.verdictMap(t, "remote", apps, rs, groups)
	tunRemote := b.verdictMap(t, "tunnel", tunApps, rs, tgroups)
	groups.chains()
	tgroups.chains()

	var protos, ports []nftables.SetElement
	for _, p := range TunnelProtocols {
		protos = append(protos, nftables.SetElement{Key: []byte{p}})
	}
	for _, p := range TunnelPorts {
		ports = append(ports, nftables.SetElement{Key: be16(p)})
	}
	tunp := b.addSet(&nftables.Set{Table: t, Name: b.name("tunproto"), KeyType: nftables.TypeInetProto, Constant: true}, protos)
	tunport := b.addSet(&nftables.Set{Table: t, Name: b.name("tunport"), KeyType: nftables.TypeInetService, Constant: true}, ports)

	dflt := func(counter string) []expr.Any {
		if rs.Monitor {
			return []expr.Any{objref(counter), gotoChain(pass)}
		}
		return []expr.Any{objref(counter), drop()}
	}
	// Each packet is judged as its flow: by the addresses of the flow's
	// original direction (conntrack's), which a reply carries swapped.
	saddr, daddr := nhLoad(12, 4), nhLoad(16, 4)
	if v6 {
		saddr, daddr = nhLoad(8, 16), nhLoad(24, 16)
	}
	var judge, tun [2]string
	for d, dir := range []string{"o", "r"} {
		src, dst := saddr, daddr // the flow's opener and the end it opened to
		if dir == "r" {
			src, dst = daddr, saddr
		}
		bothDomestic := cat(src, lookup(dom, false), dst, lookup(dom, false))
		tun[d] = b.chain(t, b.name("tun"+dir), [][]expr.Any{
			cat(bothDomestic, dflt(CounterTunnel)),
			cat(dst, lookup(dom, false), src, vmap(tunRemote)),
			cat(dst, lookup(dom, false), dflt(CounterTunnel)),
			cat(dst, vmap(tunRemote)),
			dflt(CounterTunnel),
		})
		last := dflt(CounterDenied)
		if rs.Monitor {
			last = dflt(CounterMonitored)
		}
		judge[d] = b.chain(t, b.name("judge"+dir), [][]expr.Any{
			cat(bothDomestic, setCtMark(b.cacheID(cacheDomestic)), objref(CounterDomestic), gotoChain(pass)),
			// The remote end is the one that is not domestic; in transit
			// (neither is), the end the flow was opened to.
			cat(dst, lookup(dom, false), src, vmap(remote)),
			cat(dst, lookup(dom, false), last),
			cat(dst, vmap(remote)),
			last,
		})
	}
	lc := b.chain(t, b.name("lc"), b.linkControl(v6, pass))
	original := cat(&expr.Ct{Register: 1, Key: expr.CtKeyDIRECTION}, cmp(expr.CmpOpEq, []byte{0})) // IP_CT_DIR_ORIGINAL
	b.baseChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: policy(nftables.ChainPolicyDrop)},
		[][]expr.Any{
			{&expr.Ct{Register: 1, Key: expr.CtKeyMARK}, vmap(cache)},
			{jump(lc)},
			cat(ctState(expr.CtStateBitINVALID), objref(CounterInvalid), drop()),
			// Only a SYN opens a TCP flow, so the end that opened it is
			// known; conntrack alone would pick up any segment.
			cat(ctState(expr.CtStateBitNEW), l4is(ProtoTCP), thLoad(13, 1),
				bitwise([]byte{tcpFIN | tcpSYN | tcpRST | tcpACK}), cmp(expr.CmpOpNeq, []byte{tcpSYN}),
				objref(CounterTCPNoSYN), drop()),
			// The kernel cannot see inside a tunnel: it goes by its own
			// chains, where only an approval naming it lets it by.
			cat(original, metaLoad(expr.MetaKeyL4PROTO), lookup(tunp, false), gotoChain(tun[0])),
			cat(original, l4is(ProtoUDP), thLoad(2, 2), lookup(tunport, false), gotoChain(tun[0])),
			cat(original, l4is(ProtoUDP), thLoad(0, 2), lookup(tunport, false), gotoChain(tun[0])),
			cat(metaLoad(expr.MetaKeyL4PROTO), lookup(tunp, false), gotoChain(tun[1])),
			cat(l4is(ProtoUDP), thLoad(2, 2), lookup(tunport, false), gotoChain(tun[1])),
			cat(l4is(ProtoUDP), thLoad(0, 2), lookup(tunport, false), gotoChain(tun[1])),
			cat(original, gotoChain(judge[0])),
			{gotoChain(judge[1])},
		})
}

// approvalRules are an approval's chain: outside its window it returns;
// a flow opened to one of its services is counted and passes. The tunnel
// chain holds only the services naming a tunnel; the plain one, when the
// approval names none, passes any protocol (tunnels never reach it).
func (b *builder) approvalRules(a *Approval, obj, pass string, tunnels bool, mark []expr.Any) [][]expr.Any {
	var rules [][]expr.Any
	if !a.From.IsZero() {
		rules = append(rules, cat(metaTime(), cmp(expr.CmpOpLt, be64(uint64(a.From.UnixNano()))), ret()))
	}
	if !a.Until.IsZero() {
		rules = append(rules, cat(metaTime(), cmp(expr.CmpOpGte, be64(uint64(a.Until.UnixNano()))), ret()))
	}
	ok := cat(mark, objref(obj), gotoChain(pass))
	if len(a.Services) == 0 && !tunnels {
		return append(rules, ok)
	}
	for _, s := range a.Services {
		if tunnels && !s.tunnel() {
			continue
		}
		r := []expr.Any{&expr.Ct{Register: 1, Key: expr.CtKeyPROTOCOL}, cmp(expr.CmpOpEq, []byte{s.Proto})}
		switch {
		case s.PortHi == 0:
		case s.PortLo == s.PortHi:
			r = append(r, ctOrig(expr.CtKeyPROTODST), cmp(expr.CmpOpEq, be16(s.PortLo)))
		default:
			r = append(r, ctOrig(expr.CtKeyPROTODST), &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: be16(s.PortLo), ToData: be16(s.PortHi)})
		}
		rules = append(rules, cat(r, ok))
	}
	return rules
}

// cacheDomestic is the flow-cache number of domestic flows; approval i is
// number i+1, and those numbered from cacheDomestic on are not cached
// (judged in full at every packet).
const cacheDomestic = 1<<cacheBits - 1

const cacheBits = 12

// cacheID is the conntrack mark of flows passed under number n (from 1:
// never 0, the mark of a flow nothing passed) in this generation: 20 bits
// of generation, 12 of number.
func (b *builder) cacheID(n int) uint32 { return b.gen<<cacheBits | uint32(n) }

// setCtMark sets conntrack's mark of the packet's flow.
func setCtMark(v uint32) []expr.Any {
	return []expr.Any{&expr.Immediate{Register: 1, Data: ne32(v)}, &expr.Ct{Register: 1, Key: expr.CtKeyMARK, SourceRegister: true}}
}

// linkControl passes what the link itself needs, at its protocol's rate,
// before conntrack's verdict (it tracks none of ND and MLD).
func (b *builder) linkControl(v6 bool, pass string) [][]expr.Any {
	ok := []expr.Any{objref(CounterLinkControl), gotoChain(pass)}
	over := []expr.Any{objref(CounterLinkControlLimited), drop()}
	icmp6Type := func(lo, hi uint8) []expr.Any {
		return cat(l4is(ProtoICMPv6), thLoad(0, 1), &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: []byte{lo}, ToData: []byte{hi}})
	}
	hop := func(n uint8) []expr.Any { return cat(nhLoad(7, 1), cmp(expr.CmpOpEq, []byte{n})) }
	ports := func(sport, dport uint16) []expr.Any {
		return cat(l4is(ProtoUDP), thLoad(0, 4), cmp(expr.CmpOpEq, binary.BigEndian.AppendUint16(be16(sport), dport)))
	}
	var rules [][]expr.Any
	pair := func(match []expr.Any, rate uint64, burst uint32) {
		rules = append(rules, cat(match, limit(rate, burst), ok), cat(match, over))
	}
	if v6 {
		// Neighbour discovery (RS, RA, NS, NA, redirect) never leaves the
		// link: hop limit 255.
		pair(cat(icmp6Type(133, 137), hop(255)), ndRate, ndBurst)
		// MLD (queries, reports, done, v2 reports), hop limit 1.
		pair(cat(icmp6Type(130, 132), hop(1)), linkRate, linkBurst)
		pair(cat(icmp6Type(143, 143), hop(1)), linkRate, linkBurst)
		// DHCPv6, client to server and back.
		pair(ports(546, 547), linkRate, linkBurst)
		pair(ports(547, 546), linkRate, linkBurst)
		return rules
	}
	// IGMP to a multicast group, TTL 1.
	pair(cat(l4is(ProtoIGMP), nhLoad(16, 1), bitwise([]byte{0xf0}), cmp(expr.CmpOpEq, []byte{0xe0}),
		nhLoad(8, 1), cmp(expr.CmpOpEq, []byte{1})), linkRate, linkBurst)
	// DHCP, client to server and back.
	pair(ports(68, 67), linkRate, linkBurst)
	pair(ports(67, 68), linkRate, linkBurst)
	return rules
}

func (b *builder) bridgeTable(rs *Ruleset) {
	t := b.p.bridge
	for _, n := range []string{CounterLinkControl, CounterLinkControlLimited, CounterSpoofed, CounterOther, CounterUnjudged} {
		b.counter(t, n)
	}
	etherType := func(typ uint16) []expr.Any {
		return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2}, cmp(expr.CmpOpEq, be16(typ))}
	}
	ipv4, ipv6 := etherType(unix.ETH_P_IP), etherType(unix.ETH_P_IPV6)
	var in4, in6 []expr.Any
	if b.o.StrictIngress {
		d4 := b.intervalSet(t, "dom4", false, rs.Domestic)
		d6 := b.intervalSet(t, "dom6", true, rs.Domestic)
		port := func(name string) []expr.Any {
			return []expr.Any{metaLoad(expr.MetaKeyIIFNAME), cmp(expr.CmpOpEq, ifname(name))}
		}
		spoofed := []expr.Any{objref(CounterSpoofed), drop()}
		src4, src6 := nhLoad(12, 4), nhLoad(8, 16)
		in4 = []expr.Any{gotoChain(b.chain(t, b.name("in4"), [][]expr.Any{
			cat(port(b.o.Outside), src4, lookup(d4, false), spoofed),
			// From inside: domestic, or unspecified (DHCP), or link-local.
			cat(port(b.o.Inside), src4, lookup(d4, true), cmp(expr.CmpOpNeq, []byte{0, 0, 0, 0}),
				bitwiseMask(make([]byte, 4), []byte{0xff, 0xff, 0, 0}), cmp(expr.CmpOpNeq, []byte{169, 254, 0, 0}), spoofed),
			{accept()},
		}))}
		ll := make([]byte, 16)
		ll[0], ll[1] = 0xff, 0xc0
		in6 = []expr.Any{gotoChain(b.chain(t, b.name("in6"), [][]expr.Any{
			cat(port(b.o.Outside), src6, lookup(d6, false), spoofed),
			cat(port(b.o.Inside), src6, lookup(d6, true), cmp(expr.CmpOpNeq, make([]byte, 16)),
				bitwiseMask(make([]byte, 16), ll), cmp(expr.CmpOpNeq, append([]byte{0xfe, 0x80}, make([]byte, 14)...)), spoofed),
			{accept()},
		}))}
	}
	if in4 == nil {
		in4, in6 = []expr.Any{accept()}, []expr.Any{accept()}
	}
	rules := [][]expr.Any{
		// Only frames this ruleset accepts carry the mark out.
		b.markClear(),
		cat(ipv4, in4), // on to the ip table
		cat(ipv6, in6),
		cat(etherType(unix.ETH_P_ARP), limit(ndRate, ndBurst), objref(CounterLinkControl), b.markSet(), accept()),
		cat(etherType(unix.ETH_P_ARP), objref(CounterLinkControlLimited), drop()),
		cat(objref(CounterOther), drop()),
	}
	b.baseChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityConntrack, Policy: policy(nftables.ChainPolicyDrop)}, rules)
	// Forwarded IP that reaches the way out unmarked was never judged by
	// the ip and ip6 tables (br_netfilter not loaded, or nf_call_iptables
	// off): drop it. (Frames the bridge device sends itself have no input
	// port; the guard drops those.)
	unmarked := cat(metaLoad(expr.MetaKeyIIF), cmp(expr.CmpOpNeq, ne32(0)), objref(CounterUnjudged), drop())
	b.baseChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityFilter, Policy: policy(nftables.ChainPolicyAccept)},
		[][]expr.Any{
			cat(metaLoad(expr.MetaKeyMARK), bitwise(ne32(b.o.Mark)), cmp(expr.CmpOpNeq, ne32(0)), accept()),
			cat(ipv4, unmarked), cat(ipv6, unmarked),
		})
}

// The mark is a host-order u32 in a register, as is ct state.

// markSet ORs the judged mark into the packet's mark; markClear clears it.
func (b *builder) markSet() []expr.Any {
	return []expr.Any{metaLoad(expr.MetaKeyMARK),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(^b.o.Mark), Xor: ne32(b.o.Mark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1}}
}

func (b *builder) markClear() []expr.Any {
	return []expr.Any{metaLoad(expr.MetaKeyMARK),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(^b.o.Mark), Xor: ne32(0)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1}}
}

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

func cat(parts ...any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		switch v := p.(type) {
		case expr.Any:
			out = append(out, v)
		case []expr.Any:
			out = append(out, v...)
		default:
			panic(fmt.Sprintf("nft: cat of %T", p))
		}
	}
	return out
}

func ctOrig(k expr.CtKey) *expr.Ct { return &expr.Ct{Register: 1, Key: k, Direction: 0} } // IP_CT_DIR_ORIGINAL

func ctState(bit uint32) []expr.Any {
	return []expr.Any{&expr.Ct{Register: 1, Key: expr.CtKeySTATE}, bitwise(ne32(bit)),
		cmp(expr.CmpOpNeq, make([]byte, 4))}
}

func metaLoad(k expr.MetaKey) *expr.Meta { return &expr.Meta{Key: k, Register: 1} }

func metaTime() []expr.Any {
	return []expr.Any{metaLoad(metaTimeNS), &expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 8, Size: 8}}
}

func l4is(p uint8) []expr.Any {
	return []expr.Any{metaLoad(expr.MetaKeyL4PROTO), cmp(expr.CmpOpEq, []byte{p})}
}

func thLoad(off, n uint32) *expr.Payload {
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: n}
}

func nhLoad(off, n uint32) *expr.Payload {
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
}

func cmp(op expr.CmpOp, data []byte) *expr.Cmp { return &expr.Cmp{Op: op, Register: 1, Data: data} }

func bitwise(mask []byte) *expr.Bitwise {
	return &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(len(mask)), Mask: mask, Xor: make([]byte, len(mask))}
}

func bitwiseMask(xor, mask []byte) *expr.Bitwise {
	return &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(len(mask)), Mask: mask, Xor: xor}
}

func lookup(s *nftables.Set, invert bool) *expr.Lookup {
	return &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: invert}
}

func vmap(s *nftables.Set) *expr.Lookup {
	return &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, IsDestRegSet: true, DestRegister: 0}
}

func objref(name string) *expr.Objref {
	return &expr.Objref{Type: int(nftables.ObjTypeCounter), Name: name}
}

func limit(rate uint64, burst uint32) *expr.Limit {
	return &expr.Limit{Type: expr.LimitTypePkts, Rate: rate, Unit: expr.LimitTimeSecond, Burst: burst}
}

func accept() *expr.Verdict                               { return &expr.Verdict{Kind: expr.VerdictAccept} }
func drop() *expr.Verdict                                 { return &expr.Verdict{Kind: expr.VerdictDrop} }
func ret() *expr.Verdict                                  { return &expr.Verdict{Kind: expr.VerdictReturn} }
func jump(chain string) *expr.Verdict                     { return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain} }
func gotoChain(c string) *expr.Verdict                    { return &expr.Verdict{Kind: expr.VerdictGoto, Chain: c} }
func policy(p nftables.ChainPolicy) *nftables.ChainPolicy { return &p }

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func ne32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// ifname is an interface name as the kernel compares it: IFNAMSIZ bytes,
// NUL-padded.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}
