package nft

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Options say where the ruleset goes.
type Options struct {
	// Table names both tables (bridge and inet); the guard is Table+"_guard".
	// Default "linkguard".
	Table string
	// Inside and Outside are the two ports the kernel bridge joins.
	Inside, Outside string
	// StrictIngress drops frames whose source does not belong on the port
	// they came in by (links.ingress strict): domestic from the outside,
	// other than domestic, unspecified or link-local from the inside.
	StrictIngress bool
	// Bridge is the kernel bridge Attach makes; default "lgnft".
	Bridge string
	// Mark is the packet-mark bit the inet table sets on what it passes and
	// the bridge table requires on the way out. Default 0x10000000.
	Mark uint32
	// NetNS is a file descriptor of the network namespace to work in; 0:
	// the caller's.
	NetNS int
	// ElementsEvery is how often at most Check reads every set element back
	// once the ruleset's generation has moved (about a second of kernel
	// time for 100,000 prefixes); tables, chains, rules and sets it reads
	// at every check that sees the generation move. Default 30 s; negative:
	// at every such check.
	ElementsEvery time.Duration
}

func (o *Options) defaults() error {
	if o.Table == "" {
		o.Table = "linkguard"
	}
	if o.Bridge == "" {
		o.Bridge = "lgnft"
	}
	if o.Mark == 0 {
		o.Mark = 0x10000000
	}
	if o.ElementsEvery == 0 {
		o.ElementsEvery = 30 * time.Second
	}
	if o.Mark&(o.Mark-1) != 0 {
		return fmt.Errorf("nft: mark %#x is not a single bit", o.Mark)
	}
	if o.Inside == "" || o.Outside == "" || o.Inside == o.Outside {
		return fmt.Errorf("nft: need two ports, inside %q and outside %q", o.Inside, o.Outside)
	}
	return nil
}

// Enforcer installs rulesets and keeps them in force.
type Enforcer struct {
	o   Options
	mu  sync.Mutex
	cc  *nftables.Conn
	raw *raw // read-back and generation; owns the guard table

	gen      uint32   // suffix of the names of the ruleset in force
	rs       *Ruleset // in force
	cur      *plan
	want     map[string]string // fingerprint of what we installed
	kgen     uint32            // kernel generation when want was last confirmed
	verified bool              // want is known to be ours alone
	// The generation moved since the elements were last read back.
	elemsDirty     bool
	elemsCheckedAt time.Time

	counts  map[string]*counter // by table family and counter name
	retired map[string]Count    // approvals no longer in force, by ID
	stats   Stats
	last    Reassertion

	fault func(*nftables.Conn, *plan) // tests: break a transaction halfway
}

// Stats are the Enforcer's own counters.
type Stats struct {
	Applies       uint64 // transactions committed (swaps and re-assertions)
	ApplyFailures uint64 // transactions the kernel refused; the ruleset before stayed
	Checks        uint64
	Reassertions  uint64 // rulesets found changed by someone else and installed again
	CheckFailures uint64
	LastApply     time.Duration // the last committed transaction: read the tables, build it, send it, acknowledged
	LastCommit    time.Duration // of which sending it until the kernel acknowledged it
	Elements      int           // set elements in force
	Rules         int
	Serial        uint64 // of the ruleset in force
}

// Reassertion is what the last re-assertion found and did.
type Reassertion struct {
	At          time.Time
	Differences []string // what was changed: "inet chain v4_3 changed", "bridge table missing", ...
	Took        time.Duration
	Err         error // the transaction failed (the next check tries again)
}

// Count is packets and bytes. Bytes are the IP packet's (no Ethernet
// header), and a GRO super-frame is one packet: what the kernel forwards.
type Count struct {
	Packets, Bytes uint64
}

// ErrNoRuleset: nothing has been applied yet.
var ErrNoRuleset = errors.New("nft: no ruleset applied")

// Open connects to nf_tables and installs the guard table, which drops
// every frame leaving the bridge unjudged for as long as the Enforcer is
// open: until the first Apply, everything. Rulesets a previous agent left
// stay in force until Apply replaces them.
func Open(o Options) (*Enforcer, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	e := &Enforcer{o: o, gen: rand.Uint32() >> 8, counts: map[string]*counter{}, retired: map[string]Count{}}
	var err error
	if e.raw, err = dialRaw(o.NetNS); err != nil {
		return nil, err
	}
	if err := e.raw.guard(o.Table, o.Mark); err != nil {
		e.raw.close()
		return nil, err
	}
	if err := e.dial(); err != nil {
		e.raw.close()
		return nil, err
	}
	// Counters a previous agent left count from here on.
	if err := e.readCounters(true); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// bufSize bounds a transaction: a batch is one datagram, and the kernel
// acknowledges each of its messages.
const bufSize = 128 << 20

func (e *Enforcer) dial() error {
	if e.cc != nil {
		_ = e.cc.CloseLasting()
	}
	cc, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(e.o.NetNS), nftables.WithSockOptions(func(c *netlink.Conn) error {
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		err = rc.Control(func(fd uintptr) {
			serr = errors.Join(unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, bufSize),
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bufSize))
		})
		return errors.Join(err, serr)
	}))
	if err != nil {
		return fmt.Errorf("nft: netlink: %w", err)
	}
	e.cc = cc
	return nil
}

// Close closes the Enforcer's sockets: the guard table goes with them, the
// ruleset stays in force (and the bridge, if attached, keeps filtering).
func (e *Enforcer) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var err error
	if e.cc != nil {
		err = e.cc.CloseLasting()
		e.cc = nil
	}
	if e.raw != nil {
		err = errors.Join(err, e.raw.close())
		e.raw = nil
	}
	return err
}

// Apply compiles rs and installs it in one transaction, replacing the
// ruleset in force atomically: every packet is judged by the old one or
// the new one, never by neither. If the kernel refuses any part, nothing
// changes and the old ruleset stays in force.
func (e *Enforcer) Apply(rs *Ruleset) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.apply(rs)
}

func (e *Enforcer) apply(rs *Ruleset) error {
	if e.cc == nil {
		return errors.New("nft: enforcer closed")
	}
	if err := rs.validate(); err != nil {
		return err
	}
	e.cut(rs)
	p := compileValid(rs, &e.o, e.gen+1)
	// Counts of approvals about to go are kept by ID.
	_ = e.readCounters(false)
	before, _ := e.raw.generation()
	start := time.Now()
	if err := e.install(p); err != nil {
		e.stats.ApplyFailures++
		_ = e.dial() // unread acknowledgements must not answer the next request
		return fmt.Errorf("nft: ruleset %d refused, the one before stays in force: %w", rs.Serial, err)
	}
	took := time.Since(start)
	// What went in, as a check will read it back: tables, chains, rules
	// and sets read back now (unless someone else committed meanwhile, it
	// is ours), elements from the plan (reading them back takes long).
	after, _ := e.raw.generation()
	fp, err := e.raw.fingerprint(e.o.Table, false)
	again, _ := e.raw.generation()
	for k, v := range planElements(p) {
		fp[k] = v
	}
	e.gen++
	e.rs, e.cur, e.want = rs, p, fp
	e.kgen, e.verified = again, err == nil && after == before+1 && again == after
	e.elemsDirty = false
	for name, c := range e.counts {
		fam, obj, _ := strings.Cut(name, " ")
		if fam == "bridge" || !strings.HasPrefix(obj, approvalPrefix) || p.approvalOf[obj] != "" {
			continue
		}
		id := e.approvalID(obj)
		r := e.retired[id]
		e.retired[id] = Count{r.Packets + c.pkts.total(), r.Bytes + c.bytes.total()}
		delete(e.counts, name)
	}
	e.stats.Applies++
	e.stats.LastApply = took
	e.stats.Elements = p.elements
	e.stats.Rules = 0
	for _, c := range p.chains {
		e.stats.Rules += len(c.rules)
	}
	e.stats.Serial = rs.Serial
	return nil
}

// cut empties, in a transaction of its own, the chains of the approvals
// in force that rs no longer has: their flows stop within milliseconds,
// where the whole swap of a national policy takes a second. Should the
// swap then fail, they stay revoked.
func (e *Enforcer) cut(rs *Ruleset) {
	if e.cur == nil {
		return
	}
	keep := make(map[string]bool, len(rs.Approvals))
	for _, a := range rs.Approvals {
		keep[a.ID] = true
	}
	var chains []*nftables.Chain
	left := make([]Approval, 0, len(e.rs.Approvals))
	for _, a := range e.rs.Approvals {
		if keep[a.ID] {
			left = append(left, a)
		} else {
			chains = append(chains, e.cur.chainsOf[a.ID]...)
		}
	}
	if len(chains) == 0 {
		return
	}
	before, _ := e.raw.generation()
	for _, c := range chains {
		e.cc.FlushChain(c)
	}
	if err := e.cc.Flush(); err != nil {
		_ = e.dial()
		return // the swap cuts them
	}
	after, _ := e.raw.generation()
	fp, err := e.raw.fingerprint(e.o.Table, false)
	again, _ := e.raw.generation()
	for k, v := range e.want {
		if strings.Contains(k, " elements ") {
			fp[k] = v
		}
	}
	revoked := *e.rs
	revoked.Approvals = left
	e.rs, e.want, e.kgen = &revoked, fp, again
	e.verified = e.verified && err == nil && after == before+1 && again == after
}

type kernelState struct {
	tables  map[nftables.TableFamily]bool
	chains  []*nftables.Chain
	sets    []*nftables.Set
	objs    []*nftables.NamedObj
	rebuild bool // a base chain of ours has the wrong hook: start the tables afresh
}

func (e *Enforcer) state(p *plan) (*kernelState, error) {
	st := &kernelState{tables: map[nftables.TableFamily]bool{}}
	for _, t := range p.tables() {
		ts, err := e.cc.ListTablesOfFamily(t.Family)
		if err != nil {
			return nil, fmt.Errorf("nft: list tables: %w", err)
		}
		for _, x := range ts {
			if x.Name == t.Name {
				st.tables[t.Family] = true
			}
		}
		if !st.tables[t.Family] {
			continue
		}
		chains, err := e.cc.ListChainsOfTableFamily(t.Family)
		if err != nil {
			return nil, fmt.Errorf("nft: list chains: %w", err)
		}
		for _, c := range chains {
			if c.Table.Name != t.Name {
				continue
			}
			c.Table = t
			st.chains = append(st.chains, c)
			if c.Hooknum == nil {
				continue
			}
			for _, pc := range p.chains {
				if pc.base && pc.chain.Table == t && pc.chain.Name == c.Name &&
					(*pc.chain.Hooknum != *c.Hooknum || *pc.chain.Priority != *c.Priority || pc.chain.Type != c.Type) {
					st.rebuild = true
				}
			}
		}
		sets, err := e.cc.GetSets(t)
		if err != nil {
			return nil, fmt.Errorf("nft: list sets: %w", err)
		}
		for _, s := range sets {
			s.Table = t
			st.sets = append(st.sets, s)
		}
		objs, err := e.cc.GetNamedObjects(t)
		if err != nil {
			return nil, fmt.Errorf("nft: list objects: %w", err)
		}
		for _, o := range objs {
			if n, ok := o.(*nftables.NamedObj); ok {
				n.Table = t
				st.objs = append(st.objs, n)
			}
		}
	}
	return st, nil
}

// install sends one batch: our tables' existing rules, sets, chains and
// stale counters go, the plan's come in. Base chains and counters that
// both rulesets have are kept, so the hooks never pass a packet unjudged
// and counts carry across swaps.
func (e *Enforcer) install(p *plan) error {
	st, err := e.state(p)
	if err != nil {
		return err
	}
	cc := e.cc
	base := map[string]bool{}
	for _, c := range p.chains {
		if c.base {
			base[familyName(uint8(c.chain.Table.Family))+" "+c.chain.Name] = true
		}
	}
	for _, t := range p.tables() {
		cc.AddTable(t) // creates it, or clears flags such as dormant
		if st.rebuild {
			cc.DelTable(t)
			cc.AddTable(t)
		}
	}
	keep := map[string]bool{}
	if !st.rebuild {
		for _, c := range st.chains {
			cc.FlushChain(c)
		}
		for _, s := range st.sets {
			cc.DelSet(s)
		}
		for _, c := range st.chains {
			if !base[familyName(uint8(c.Table.Family))+" "+c.Name] {
				cc.DelChain(c)
			}
		}
		want := map[*nftables.Table]map[string]bool{}
		for _, t := range p.tables() {
			want[t] = p.counterNames(t)
		}
		for _, o := range st.objs {
			if o.Type == nftables.ObjTypeCounter && want[o.Table][o.Name] {
				keep[familyName(uint8(o.Table.Family))+" "+o.Name] = true
			} else {
				cc.DeleteObject(o)
			}
		}
	}
	for _, o := range p.objs {
		if !keep[familyName(uint8(o.Table.Family))+" "+o.Name] {
			cc.AddObj(o)
		}
	}
	for _, c := range p.chains {
		cc.AddChain(c.chain)
	}
	for _, s := range p.sets {
		if err := cc.AddSet(s.set, nil); err != nil {
			return err
		}
		for i := 0; i < len(s.elems); i += setChunk {
			if err := cc.SetAddElements(s.set, s.elems[i:min(i+setChunk, len(s.elems))]); err != nil {
				return err
			}
		}
	}
	if e.fault != nil {
		e.fault(cc, p)
	}
	for _, c := range p.chains {
		for _, r := range c.rules {
			cc.AddRule(&nftables.Rule{Table: c.chain.Table, Chain: c.chain, Exprs: r})
		}
	}
	start := time.Now()
	err = cc.Flush()
	e.stats.LastCommit = time.Since(start)
	return err
}

// Check reads the ruleset back and, if anything but this Enforcer changed
// it — a rule, a chain, the table's flags, a flush; a set element within
// Options.ElementsEvery — installs it again. It reports whether it did.
// Cheap when nothing changed at all: one request for the ruleset's
// generation.
func (e *Enforcer) Check() (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cc == nil {
		return false, errors.New("nft: enforcer closed")
	}
	if e.rs == nil {
		return false, nil
	}
	e.stats.Checks++
	g, err := e.raw.generation()
	if err != nil {
		e.stats.CheckFailures++
		return false, err
	}
	if e.verified && g == e.kgen && !e.elemsDirty {
		return false, nil
	}
	if !e.verified {
		return e.reassert([]string{"ruleset changed while it was installed"})
	}
	if g != e.kgen {
		got, err := e.raw.fingerprint(e.o.Table, false)
		if err != nil {
			e.stats.CheckFailures++
			return false, err
		}
		if diff := differences(e.want, got); len(diff) > 0 {
			return e.reassert(diff)
		}
		e.kgen, e.elemsDirty = g, true
	}
	if time.Since(e.elemsCheckedAt) < e.o.ElementsEvery {
		return false, nil
	}
	got, err := e.raw.fingerprint(e.o.Table, true)
	e.elemsCheckedAt = time.Now()
	if err != nil {
		e.stats.CheckFailures++
		return false, err
	}
	if diff := differences(e.want, got); len(diff) > 0 {
		return e.reassert(diff)
	}
	e.elemsDirty = false
	return false, nil
}

func (e *Enforcer) reassert(diff []string) (bool, error) {
	start := time.Now()
	e.stats.Reassertions++
	err := e.apply(e.rs)
	e.last = Reassertion{At: start, Differences: diff, Took: time.Since(start), Err: err}
	return true, err
}

// LastReassertion is what the last re-assertion found.
func (e *Enforcer) LastReassertion() Reassertion {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last
}

// Run checks the ruleset every interval until ctx ends, telling
// reasserted (if not nil) each time it had to install it again.
func (e *Enforcer) Run(ctx context.Context, every time.Duration, reasserted func(Reassertion)) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if did, _ := e.Check(); did && reasserted != nil {
			reasserted(e.LastReassertion())
		}
	}
}

// Stats returns the Enforcer's counters.
func (e *Enforcer) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stats
}

// Remove deletes the ruleset (and the bridge, if attached, first: a
// bridge without the ruleset would forward unfiltered).
func (e *Enforcer) Remove() error {
	if err := e.Detach(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cc == nil {
		return errors.New("nft: enforcer closed")
	}
	for _, f := range families {
		t := &nftables.Table{Name: e.o.Table, Family: f}
		e.cc.AddTable(t)
		e.cc.DelTable(t)
	}
	e.rs, e.cur, e.want = nil, nil, nil
	return e.cc.Flush()
}

// Counters are the ruleset's counters since Open, carried across swaps
// and re-assertions (a flush by someone else loses what was counted since
// the last read).
type Counters struct {
	Approvals                                              map[string]Count // by approval ID, revoked ones too
	Denied, Monitored, Domestic, Invalid, TCPNoSYN, Tunnel Count
	LinkControl, LinkControlLimited                        Count // both tables
	Spoofed, Other, Unjudged                               Count // bridge table
}

// Counters reads the counters.
func (e *Enforcer) Counters() (Counters, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.readCounters(false); err != nil {
		return Counters{}, err
	}
	c := Counters{Approvals: map[string]Count{}}
	for id, r := range e.retired {
		c.Approvals[id] = r
	}
	add := func(dst *Count, k *counter) {
		dst.Packets += k.pkts.total()
		dst.Bytes += k.bytes.total()
	}
	for name, k := range e.counts {
		fam, obj, _ := strings.Cut(name, " ")
		if fam != "bridge" && strings.HasPrefix(obj, approvalPrefix) {
			id := e.approvalID(obj)
			a := c.Approvals[id]
			add(&a, k)
			c.Approvals[id] = a
			continue
		}
		dst := map[string]*Count{
			CounterDenied: &c.Denied, CounterMonitored: &c.Monitored, CounterDomestic: &c.Domestic,
			CounterInvalid: &c.Invalid, CounterTCPNoSYN: &c.TCPNoSYN, CounterTunnel: &c.Tunnel,
			CounterLinkControl: &c.LinkControl, CounterLinkControlLimited: &c.LinkControlLimited,
			CounterSpoofed: &c.Spoofed, CounterOther: &c.Other, CounterUnjudged: &c.Unjudged,
		}[obj]
		if dst != nil {
			add(dst, k)
		}
	}
	for id, a := range c.Approvals {
		if a.Packets == 0 {
			delete(c.Approvals, id)
		}
	}
	return c, nil
}

func (e *Enforcer) approvalID(obj string) string {
	if e.cur != nil {
		if id := e.cur.approvalOf[obj]; id != "" {
			return id
		}
	}
	return strings.TrimPrefix(obj, approvalPrefix)
}

// counter follows one kernel counter across its re-creations.
type counter struct{ pkts, bytes monotonic }

// monotonic turns a kernel value that restarts from zero when its object
// is made again into a running total, less what it held at Open.
type monotonic struct{ base, last, skip uint64 }

func (m *monotonic) see(v uint64) {
	if v < m.last {
		m.base += m.last - m.skip
		m.skip = 0
	}
	m.last = v
}

func (m *monotonic) total() uint64 { return m.base + m.last - m.skip }

func (e *Enforcer) readCounters(atOpen bool) error {
	for _, f := range families {
		t := &nftables.Table{Name: e.o.Table, Family: f}
		objs, err := e.cc.GetNamedObjects(t)
		if errors.Is(err, unix.ENOENT) || err != nil && strings.Contains(err.Error(), "no such file") {
			continue // no table (yet, or flushed)
		}
		if err != nil {
			return fmt.Errorf("nft: read counters: %w", err)
		}
		for _, o := range objs {
			n, ok := o.(*nftables.NamedObj)
			if !ok || n.Type != nftables.ObjTypeCounter {
				continue
			}
			v, ok := n.Obj.(*expr.Counter)
			if !ok {
				continue
			}
			key := familyName(uint8(f)) + " " + n.Name
			k := e.counts[key]
			if k == nil {
				k = &counter{}
				e.counts[key] = k
				if atOpen {
					k.pkts.skip, k.bytes.skip = v.Packets, v.Bytes
				}
			}
			k.pkts.see(v.Packets)
			k.bytes.see(v.Bytes)
		}
	}
	return nil
}
