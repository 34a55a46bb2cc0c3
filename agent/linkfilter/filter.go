package linkfilter

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"linkguard.dev/linkguard/agent/linkfilter/packet"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/hal/capture/pcapfile"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/match"
)

// Mode is how the filter enforces.
type Mode uint8

const (
	ModeInline  Mode = iota + 1 // bridge: denied frames are dropped
	ModeMonitor                 // tap: denied flows are reported (and reset, if asked)
)

func (m Mode) String() string {
	switch m {
	case ModeInline:
		return "inline"
	case ModeMonitor:
		return "monitor"
	}
	return "invalid"
}

// ParseMode parses "inline" or "monitor".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "inline":
		return ModeInline, nil
	case "monitor":
		return ModeMonitor, nil
	}
	return 0, fmt.Errorf("linkfilter: unknown mode %q (want inline or monitor)", s)
}

// Options configure a Filter. Zero values take the documented defaults.
type Options struct {
	Site     string
	Mode     Mode // default ModeInline
	Reset    bool // monitor mode: tear denied TCP flows down with RSTs
	MaxFlows int  // hard cap on tracked flows; default DefaultMaxFlows
	// FailOpen passes IP traffic, reported as monitored, while no policy
	// is loaded, instead of dropping it (links.fail: open).
	FailOpen bool
	Timeouts Timeouts
	Events   report.Events // default report.Discard
	// EventsPerSecond and EventBurst bound first-packet denied-flow events;
	// the rest are counted into the periodic summary. Defaults 10 and 20.
	EventsPerSecond float64
	EventBurst      float64
	// SummaryEvery is the period of denied-traffic summary events (Run);
	// default 10 s.
	SummaryEvery time.Duration
	// EvidencePerFlow is how many frames of each denied flow go to the
	// evidence ring; default 8.
	EvidencePerFlow int
	Evidence        *Evidence // nil: no evidence kept
	Logger          *slog.Logger
	// DecideAt, when set (Unix nanos), is the time policies are judged at
	// instead of each frame's timestamp: replaying an old capture against
	// today's policy. Flow timeouts still follow frame time.
	DecideAt int64
	// Ingress binds source addresses to the side they arrive on
	// (links.ingress); the zero value is IngressStrict.
	Ingress Ingress
	// LinkLocal is the link-scoped IP protocols that pass as link control
	// (links.link_local); the zero set is packet.DefaultLinkLocal.
	LinkLocal packet.LinkLocal
	// PickupGrace is how long after the filter starts (its first frame)
	// inline mode picks up TCP sessions it saw no SYN of, judged both
	// ways (links.pickup_grace); 0 takes DefaultPickupGrace, negative
	// disables pickup.
	PickupGrace time.Duration
	// MaxEncap bounds how many encapsulations deep a frame is decoded
	// (links.max_encap); 0 takes packet.DefaultMaxEncap. Deeper frames are judged
	// by the policy default.
	MaxEncap int
}

// Ingress is how strictly source addresses are bound to their side.
type Ingress uint8

const (
	// IngressStrict: a frame from the outside with a domestic source, or
	// from the inside with a non-domestic one, is a spoof and dropped.
	IngressStrict Ingress = iota
	// IngressLoose: sources are not checked against their side (links
	// where domestic traffic genuinely arrives from abroad).
	IngressLoose
)

func (i Ingress) String() string {
	if i == IngressLoose {
		return "loose"
	}
	return "strict"
}

// ParseIngress parses "strict" or "loose".
func ParseIngress(s string) (Ingress, error) {
	switch s {
	case "strict", "":
		return IngressStrict, nil
	case "loose":
		return IngressLoose, nil
	}
	return 0, fmt.Errorf("linkfilter: unknown ingress %q (want strict or loose)", s)
}

// Side is the port a frame arrived on.
type Side uint8

const (
	SideUnknown Side = iota // a single tap, a capture file: no ingress check
	SideInside              // the domestic side
	SideOutside             // the foreign side
)

var sideNames = [...]string{"unknown", "inside", "outside"}

func (s Side) String() string {
	if int(s) < len(sideNames) {
		return sideNames[s]
	}
	return "invalid"
}

// DefaultPickupGrace is the default of Options.PickupGrace: long enough
// for a restarted agent's first frames of every live session, short
// enough that it is no window to plan an evasion around.
const DefaultPickupGrace = 10 * time.Second

// DefaultMaxFlows is the default of Options.MaxFlows: about 7.5 MB of flow
// table (RSS with a 100k-prefix policy and both bridge ports open in
// BENCHMARKS.md).
const DefaultMaxFlows = 65536

// polState is one policy generation as the packet path sees it.
type polState struct {
	m      *match.Matcher // nil: no policy
	gen    uint64
	deny   bool // policy default deny (or no policy)
	counts []approvalCount
}

type approvalCount struct {
	pkts, bytes atomic.Uint64
	_           [48]byte
}

// Filter classifies frames: flow table, cached verdicts, counters, events
// and evidence. Safe for concurrent use by one goroutine per capture port.
type Filter struct {
	o       Options
	log     *slog.Logger
	state   atomic.Pointer[polState]
	shards  [nShards]*shard
	frags   *fragTable
	c       counters
	lim     limiter // denied-flow events
	techLim limiter // events of techniques (malformed, spoofed, no SYN, ...)
	ctl     linkLimits
	spoofs  spoofLog
	start   atomic.Int64 // Unix nanos of the first frame judged: the pickup grace runs from it

	seed      uint64 // flow hash seed
	retiredMu sync.Mutex
	retired   map[string]ApprovalCount // counts of approvals under earlier generations
	swapAt    atomic.Int64             // Unix nanos of the last policy swap
}

const nShards = 16

type counters struct {
	passed, passedBytes     atomic.Uint64
	denied, deniedBytes     atomic.Uint64
	domestic                atomic.Uint64
	linkControl, other      atomic.Uint64
	linkControlLimited      atomic.Uint64
	malformed, truncated    atomic.Uint64
	superFrames             atomic.Uint64
	tunnelled               atomic.Uint64
	spoofed, noSYN          atomic.Uint64
	fragments, fragUnknown  atomic.Uint64
	fragOverlap             atomic.Uint64
	newFlows, deniedFlows   atomic.Uint64
	eventsSent, eventsQuiet atomic.Uint64
	evidence                atomic.Uint64
	resets                  atomic.Uint64
	swaps                   atomic.Uint64
	techniques              [techCount]atomic.Uint64
}

// New builds a filter with no policy loaded: until SetMatcher, every IP
// frame is denied (fail closed), link control frames pass.
func New(o Options) *Filter {
	if o.Mode == 0 {
		o.Mode = ModeInline
	}
	if o.MaxFlows <= 0 {
		o.MaxFlows = DefaultMaxFlows
	}
	o.Timeouts.defaults()
	if o.Events == nil {
		o.Events = report.Discard
	}
	if o.EventsPerSecond <= 0 {
		o.EventsPerSecond = 10
	}
	if o.EventBurst <= 0 {
		o.EventBurst = 20
	}
	if o.SummaryEvery <= 0 {
		o.SummaryEvery = 10 * time.Second
	}
	if o.EvidencePerFlow <= 0 {
		o.EvidencePerFlow = 8
	}
	if o.PickupGrace == 0 {
		o.PickupGrace = DefaultPickupGrace
	}
	if o.MaxEncap <= 0 {
		o.MaxEncap = packet.DefaultMaxEncap
	}
	if o.LinkLocal == 0 {
		o.LinkLocal = packet.DefaultLinkLocal
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Filter{o: o, log: o.Logger, retired: map[string]ApprovalCount{}}
	f.lim = limiter{rate: o.EventsPerSecond, burst: o.EventBurst, tokens: o.EventBurst}
	f.techLim = limiter{rate: o.EventsPerSecond, burst: o.EventBurst, tokens: o.EventBurst}
	f.ctl.init()
	per := max(1, o.MaxFlows/nShards)
	var sb [8]byte
	_, _ = crand.Read(sb[:])
	f.seed = binary.LittleEndian.Uint64(sb[:])
	for i := range f.shards {
		f.shards[i] = newShard(per, f.seed)
	}
	f.frags = newFragTable(f.seed)
	f.state.Store(&polState{deny: true})
	return f
}

// Mode is the filter's enforcement mode.
func (f *Filter) Mode() Mode { return f.o.Mode }

// NewDecoder returns a decoder for frames of link type lt with the
// filter's limits (encapsulation depth, link-local protocols).
func (f *Filter) NewDecoder(lt pcapfile.LinkType) *packet.Decoder {
	return packet.NewDecoder(lt, packet.Options{MaxEncap: f.o.MaxEncap, LinkLocal: f.o.LinkLocal})
}

// SetMatcher swaps the policy. Existing flows are re-decided on their next
// packet (each flow remembers the generation it was decided under), so a
// revoked approval cuts a live session at its next frame. Safe to call from
// any goroutine; use it as the policy store's swap hook.
func (f *Filter) SetMatcher(m *match.Matcher) {
	ns := &polState{m: m, deny: true}
	if m != nil {
		p := m.Policy()
		ns.deny = p.Default == policy.DefaultDeny
		ns.counts = make([]approvalCount, len(p.Approvals))
	}
	f.retiredMu.Lock()
	old := f.state.Load()
	ns.gen = old.gen + 1
	f.state.Store(ns)
	f.swapAt.Store(time.Now().UnixNano())
	if old.m != nil {
		for i := range old.counts {
			a := old.m.Approval(int32(i))
			c := f.retired[a.ID]
			c.ID = a.ID
			c.Packets += old.counts[i].pkts.Load()
			c.Bytes += old.counts[i].bytes.Load()
			f.retired[a.ID] = c
		}
	}
	f.retiredMu.Unlock()
	f.c.swaps.Add(1)
}

// Matcher is the policy in force (nil if none).
func (f *Filter) Matcher() *match.Matcher { return f.state.Load().m }

// Action is what to do with a frame.
type Action uint8

const (
	Pass  Action = iota + 1 // forward (inline) / nothing to do (monitor)
	Drop                    // inline: do not forward
	Reset                   // monitor with reset: send RSTs both ways
)

// Result is the filter's judgement on one frame: the most restrictive of
// the verdicts of every header pair it carries.
type Result struct {
	Action   Action
	Verdict  match.Verdict
	Reason   match.Reason
	Approval int32 // -1 if none
	// Technique names what the frame was, when it was denied as more than
	// an unapproved flow (a tunnel, a spoof, ...).
	Technique Technique
	// Layer is the header pair the verdict is about (0: the outermost).
	Layer   int
	NewFlow bool
	Flow    FlowRef // the layer's flow, zero for frames outside any flow
	keep    bool    // the frame goes to the evidence ring (bounded per flow)
}

// FlowRef identifies a flow (comparable; use as a map key).
type FlowRef struct{ k flowKey }

// rank orders verdicts by how restrictive they are.
func rank(v match.Verdict) int {
	switch v {
	case match.Domestic:
		return 1
	case match.Approved:
		return 2
	case match.Monitored:
		return 3
	case match.Denied:
		return 4
	}
	return 0
}

// Judge classifies one decoded frame that arrived on side at now (Unix
// nanos; the capture timestamp). frame is the raw frame, kept as evidence
// when denied. Every header pair is judged, each as a flow of its own; the
// most restrictive verdict wins. It allocates nothing on the packet path
// (events and evidence aside, which are rate-limited and bounded).
func (f *Filter) Judge(p *packet.Packet, side Side, frame []byte, wireLen int, now int64) Result {
	st := f.state.Load()
	if f.start.Load() == 0 {
		f.start.CompareAndSwap(0, now)
	}
	if p.Truncated {
		f.c.truncated.Add(1)
	}
	if p.Segments > 1 {
		f.c.superFrames.Add(1)
	}
	switch p.Kind {
	case packet.KindLinkControl:
		if !f.ctl.allow(p.Link, now) {
			f.c.linkControlLimited.Add(1)
			return f.problem(st, p, TechCovertLinkControl, match.ReasonLinkControlRate, frame, wireLen, now)
		}
		f.c.linkControl.Add(1)
		f.c.passed.Add(p.SegmentCount())
		f.c.passedBytes.Add(uint64(wireLen))
		return Result{Action: Pass, Approval: -1}
	case packet.KindOther:
		f.c.other.Add(1)
		return f.problem(st, p, techOf(p.Problem), match.ReasonUnclassified, frame, wireLen, now)
	case packet.KindMalformed:
		f.c.malformed.Add(1)
		return f.problem(st, p, techOf(p.Problem), match.ReasonUnclassified, frame, wireLen, now)
	}
	var outer *keyed // layer 0's key, when the fast path made it
	if l := &p.L[0]; p.N == 1 && !l.LinkControl && l.Frag == packet.NotFragment {
		var kd keyed
		kd.fwd = keyOf(l, 0, &kd.k)
		kd.h = kd.k.hash(f.seed)
		// A TCP opening (SYN alone) is almost always a new flow: it goes
		// straight to the full path instead of looking the flow up twice.
		opening := l.Proto == packet.ProtoTCP && l.L4 && l.TCPFlags&(packet.TCPSyn|packet.TCPAck|packet.TCPRst) == packet.TCPSyn
		if !opening {
			if r, ok := f.judgeCached(st, l, &kd, side, p.SegmentCount(), wireLen, now); ok {
				return r
			}
		}
		outer = &kd
	}
	if p.N > 1 {
		f.c.tunnelled.Add(1)
	}
	// Sources are checked against their side on the outermost header, in
	// the flow lookup (a known flow remembers which of its ends are
	// domestic).
	check := SideUnknown
	if f.o.Ingress == IngressStrict && st.m != nil {
		check = side
	}
	best := Result{Approval: -1}
	var approved [packet.MaxLayers]int32
	nApproved := 0
	// One event at most per frame: the best layer's. scratch takes each
	// layer's, and is kept when that layer becomes the best.
	var scratch, bestEv deniedEvent
	haveEv := false
	fragAt := -1
	for i := 0; i < p.N; i++ {
		l := &p.L[i]
		if l.LinkControl {
			continue // a routing protocol inside a tunnel: the tunnel is judged
		}
		var r Result
		tell := false
		if l.Frag == packet.LaterFragment {
			r = f.laterFragment(st, p, i, now)
		} else {
			var spoof bool
			r, tell, spoof = f.judgeLayer(st, p, i, outer, check, now, wireLen, &scratch)
			if spoof {
				return f.spoofed(st, p, frame, wireLen, now)
			}
			if l.Frag == packet.FirstFragment && fragAt < 0 {
				fragAt = i
			}
		}
		if r.Verdict == match.Approved && r.Approval >= 0 {
			approved[nApproved] = r.Approval
			nApproved++
		}
		if best.Verdict == 0 || rank(r.Verdict) > rank(best.Verdict) {
			best = r
			haveEv = tell
			if tell {
				bestEv = scratch
			}
		}
		if l.Frag == packet.LaterFragment || f.o.Mode == ModeInline && !best.Verdict.Allowed() {
			break // nothing further can be seen, or can change a drop
		}
	}
	if best.Verdict == 0 { // every layer was link control
		best = Result{Verdict: match.Domestic, Reason: match.ReasonDomestic, Approval: -1}
	}
	if best.Technique == TechNone && (!best.Verdict.Allowed() || best.Verdict == match.Monitored) {
		best.Technique = f.technique(st, p, best)
	}
	if fragAt >= 0 && f.frags.first(&p.L[fragAt], fragAt, best, st.gen, now) {
		// A second first fragment of one datagram: an overlap.
		f.c.fragOverlap.Add(1)
		best = Result{Verdict: match.Denied, Reason: match.ReasonFragment, Approval: -1, Technique: TechFragmentOverlap, Layer: fragAt}
		f.techEvent(st, p, best, now)
	}
	if best.Verdict.Allowed() {
		for _, a := range approved[:nApproved] {
			if int(a) < len(st.counts) {
				c := &st.counts[a]
				c.pkts.Add(p.SegmentCount())
				c.bytes.Add(uint64(wireLen))
			}
		}
	}
	var ev *deniedEvent
	if haveEv {
		ev = &bestEv
	}
	if !best.keep {
		frame = nil
	}
	return f.finish(st, best, p, frame, wireLen, now, ev)
}

// technique names what a denied (or monitored) frame was, from the layer
// its verdict is about.
func (f *Filter) technique(st *polState, p *packet.Packet, r Result) Technique {
	l := &p.L[r.Layer]
	switch {
	case p.N > 1:
		return TechTunnel
	case l.LinkScoped:
		return TechLinkScoped
	case l.Src.IsUnspecified():
		return TechUnspecifiedSource
	case r.Reason == match.ReasonNoSYN:
		return TechTCPNoSYN
	case st.m != nil && !st.m.IsDomestic(l.Src) && !st.m.IsDomestic(l.Dst) && r.Reason != match.ReasonNoPolicy:
		return TechTransit
	}
	return TechNone
}

// isSpoof reports a source that does not belong on the side it arrived
// from: a domestic address from abroad, or a foreign one from inside.
// Link-local unicast sources are neither (never domestic, always judged
// as foreign), so they pass this check.
func isSpoof(side Side, src netip.Addr, srcDomestic bool) bool {
	switch side {
	case SideOutside:
		return srcDomestic
	case SideInside:
		return !srcDomestic && !src.IsLinkLocalUnicast()
	}
	return false
}

// spoofed judges a frame whose source does not belong on its side.
func (f *Filter) spoofed(st *polState, p *packet.Packet, frame []byte, wireLen int, now int64) Result {
	f.c.spoofed.Add(1)
	tech := TechSpoofed
	if p.Outer().Src.IsUnspecified() {
		tech = TechUnspecifiedSource
	}
	return f.problem(st, p, tech, match.ReasonSpoofed, frame, wireLen, now)
}

// keyed is a header pair's flow key, its hash and its direction.
type keyed struct {
	k   flowKey
	h   uint64
	fwd bool
}

// judgeLayer judges header pair i of p as a flow of its own (outer, if
// not nil, is the outermost pair's key, already made). For the outermost
// pair, check is the side its source must belong to (SideUnknown: not
// checked); spoof reports a source that does not.
func (f *Filter) judgeLayer(st *polState, p *packet.Packet, i int, outer *keyed, check Side, now int64, wireLen int, ev *deniedEvent) (r Result, tell, spoof bool) {
	l := &p.L[i]
	var kd keyed
	if i == 0 && outer != nil {
		kd = *outer
	} else {
		kd.fwd = keyOf(l, i, &kd.k)
		kd.h = kd.k.hash(f.seed)
	}
	k, fwd, h := kd.k, kd.fwd, kd.h
	s := f.shards[h>>60]
	tcp := l.Proto == packet.ProtoTCP && l.L4
	syn := tcp && l.TCPFlags&(packet.TCPSyn|packet.TCPAck|packet.TCPRst) == packet.TCPSyn
	if i > 0 {
		check = SideUnknown // a tunnel's inner addresses are what it carries
	}
	s.mu.Lock()
	idx := s.find(&k, h)
	if check != SideUnknown {
		var srcDom bool
		if idx >= 0 && s.ents[idx].domGen == uint32(st.gen) {
			fl := &s.ents[idx]
			srcDom = fl.aDom
			if !fwd {
				srcDom = fl.bDom
			}
		} else {
			srcDom = st.m.IsDomestic(l.Src)
		}
		if isSpoof(check, l.Src, srcDom) {
			s.mu.Unlock()
			return Result{}, false, true
		}
	}
	isNew := idx < 0
	if !isNew && now-s.ents[idx].last > f.o.Timeouts.of(&s.ents[idx]) {
		s.ents[idx] = flow{key: k, tag: uint32(h)} // idle-expired: a new flow on the same tuple
		s.expired++
		isNew = true
	}
	nosyn := false
	if isNew && tcp && !syn {
		// Only a SYN opens a TCP flow: its sender is the initiator. A
		// segment of a connection whose SYN was not seen is picked up
		// only by a monitor, or in the grace after start, and then judged
		// both ways.
		if f.o.Mode == ModeInline && !f.inGrace(now) {
			s.mu.Unlock()
			r := Result{Verdict: match.Denied, Reason: match.ReasonNoSYN, Approval: -1, Technique: TechTCPNoSYN, Layer: i}
			if st.m == nil {
				r.Reason = match.ReasonNoPolicy
				if f.o.FailOpen {
					r.Verdict = match.Monitored
				}
			}
			return r, false, false
		}
		nosyn = true
	}
	if idx < 0 {
		idx = s.insert(&k, h, now, &f.o.Timeouts)
	}
	fl := &s.ents[idx]
	if isNew {
		fl.initA = fwd // the first sender opened the flow; its peer's port is the service
		fl.nosyn = nosyn
		fl.layer = uint8(i)
		fl.via = l.Via
		fl.first = now
		fl.tcp = tcpOpening
		f.c.newFlows.Add(1)
	} else if syn && (fwd != fl.initA || fl.nosyn) {
		// A SYN opens the connection anew (after a picked-up or reversed
		// guess, or a reused tuple): its sender is the initiator now.
		fl.initA, fl.nosyn, fl.gen, fl.seenBack, fl.tcp = fwd, false, 0, false, tcpOpening
	}
	prevAllowed := fl.gen != 0 && fl.verdict.Allowed()
	dnow := now
	if f.o.DecideAt != 0 {
		dnow = f.o.DecideAt
	}
	if isNew || fl.gen != uint32(st.gen) || dnow >= fl.recheck {
		d, aDom, bDom := f.decide(st, fl, dnow)
		fl.setDecision(d)
		fl.gen = uint32(st.gen)
		if st.m != nil {
			fl.aDom, fl.bDom, fl.domGen = aDom, bDom, fl.gen
		}
		if !fl.verdict.Allowed() || fl.verdict == match.Monitored {
			fl.reported = false
		}
	}
	fl.seen(l, fwd, tcp, p.SegmentCount(), wireLen, now)
	d := fl.decision()
	r = Result{Verdict: d.Verdict, Reason: d.Reason, Approval: d.Approval, NewFlow: isNew, Flow: FlowRef{k}, Layer: i}
	if fl.nosyn && !d.Verdict.Allowed() {
		r.Technique = TechTCPNoSYN
	}
	tell = false
	if !d.Verdict.Allowed() || d.Verdict == match.Monitored {
		fl.denied++
		// A monitor that picked a flow up mid-stream waits a few packets
		// before it reports: the SYN its other reader is still handing
		// over would set the flow right.
		if !fl.reported && !(fl.nosyn && f.o.Mode == ModeMonitor && fl.pkts < 4) {
			fl.reported = true
			*ev = fl.event(prevAllowed && !d.Verdict.Allowed())
			tell = true
		}
		if int(fl.evidence) < f.o.EvidencePerFlow && f.o.Evidence != nil {
			fl.evidence++
			r.keep = true
		}
		if f.o.Mode == ModeMonitor && f.o.Reset && tcp && i == 0 && p.N == 1 && l.TCPFlags&packet.TCPRst == 0 && fl.resets < 4 && !d.Verdict.Allowed() {
			fl.resets++
			r.Action = Reset
		}
	}
	s.mu.Unlock()
	if tell {
		f.c.deniedFlows.Add(1)
	}
	return r, tell, false
}

// judgeCached is Judge for the frame that makes up nearly all traffic:
// one header pair, not a fragment, of a flow in the table whose cached
// verdict (domestic or approved) stands under the policy in force and at
// now. It does what judgeLayer and finish would do for that frame, under
// one lock and with the shard's own counters. For anything else (a new,
// expired, re-opened, denied, monitored or spoofed flow, a verdict due
// for recheck) it changes nothing and reports false: the full path
// judges the frame.
func (f *Filter) judgeCached(st *polState, l *packet.Layer, kd *keyed, side Side, segs uint64, wireLen int, now int64) (Result, bool) {
	k, fwd, h := &kd.k, kd.fwd, kd.h
	s := f.shards[h>>60]
	dnow := now
	if f.o.DecideAt != 0 {
		dnow = f.o.DecideAt
	}
	tcp := l.Proto == packet.ProtoTCP && l.L4
	s.mu.Lock()
	idx := s.find(k, h)
	if idx < 0 {
		s.mu.Unlock()
		return Result{}, false
	}
	fl := &s.ents[idx]
	// An allowed verdict of this generation implies a policy (without
	// one, flows are denied or monitored), so domesticity was recorded
	// with it.
	if fl.gen != uint32(st.gen) || fl.domGen != fl.gen || dnow >= fl.recheck ||
		fl.verdict != match.Domestic && fl.verdict != match.Approved ||
		now-fl.last > f.o.Timeouts.of(fl) ||
		tcp && l.TCPFlags&(packet.TCPSyn|packet.TCPAck|packet.TCPRst) == packet.TCPSyn && (fwd != fl.initA || fl.nosyn) {
		s.mu.Unlock()
		return Result{}, false
	}
	if f.o.Ingress == IngressStrict && side != SideUnknown {
		srcDom := fl.aDom
		if !fwd {
			srcDom = fl.bDom
		}
		if isSpoof(side, l.Src, srcDom) {
			s.mu.Unlock()
			return Result{}, false
		}
	}
	fl.seen(l, fwd, tcp, segs, wireLen, now)
	r := Result{Action: Pass, Verdict: fl.verdict, Reason: fl.reason, Approval: fl.approval, Flow: FlowRef{*k}}
	s.passed += segs
	s.passedBytes += uint64(wireLen)
	if r.Verdict == match.Domestic {
		s.domestic++
	}
	s.mu.Unlock()
	if r.Verdict == match.Approved && r.Approval >= 0 && int(r.Approval) < len(st.counts) {
		c := &st.counts[r.Approval]
		c.pkts.Add(segs)
		c.bytes.Add(uint64(wireLen))
	}
	return r, true
}

// inGrace reports whether now is within the pickup grace after start.
func (f *Filter) inGrace(now int64) bool {
	return f.o.PickupGrace > 0 && now-f.start.Load() < int64(f.o.PickupGrace)
}

// laterFragment judges a fragment that carries no transport header by the
// verdict its datagram's first fragment got.
func (f *Filter) laterFragment(st *polState, p *packet.Packet, i int, now int64) Result {
	f.c.fragments.Add(1)
	r, state := f.frags.later(&p.L[i], i, st.gen, now)
	switch state {
	case fragKnown:
		return r
	case fragOverlap:
		f.c.fragOverlap.Add(1)
		r = Result{Verdict: match.Denied, Reason: match.ReasonFragment, Approval: -1, Technique: TechFragmentOverlap, Layer: i}
		f.techEvent(st, p, r, now)
		return r
	}
	f.c.fragUnknown.Add(1)
	r = f.byDefault(st, match.ReasonFragment)
	r.Layer, r.Technique = i, TechNone
	return r
}

// decide asks the matcher about a flow, as its initiator opened it; a flow
// picked up without its SYN is judged both ways, the stricter answer
// winning, so no packet can choose which end is the server.
func (f *Filter) decide(st *polState, fl *flow, now int64) (d match.Decision, aDom, bDom bool) {
	if st.m == nil {
		v := match.Denied
		if f.o.FailOpen {
			v = match.Monitored
		}
		return match.Decision{Verdict: v, Reason: match.ReasonNoPolicy, Approval: -1, RecheckAt: math.MaxInt64}, false, false
	}
	d = f.decideAs(st, fl, fl.initA, now)
	aDom, bDom = d.SrcDomestic, d.DstDomestic
	if !fl.initA {
		aDom, bDom = bDom, aDom
	}
	if fl.nosyn {
		r := f.decideAs(st, fl, !fl.initA, now)
		r.RecheckAt = min(r.RecheckAt, d.RecheckAt)
		if rank(r.Verdict) > rank(d.Verdict) {
			d = r
		}
		d.RecheckAt = r.RecheckAt
	}
	return d, aDom, bDom
}

func (f *Filter) decideAs(st *polState, fl *flow, initA bool, now int64) match.Decision {
	q := match.Query{Site: f.o.Site, Proto: fl.key.proto, Now: time.Unix(0, now)}
	a, b := fl.key.addrA(), fl.key.addrB()
	if initA {
		q.Src, q.Dst, q.DPort = a, b, fl.key.pb
	} else {
		q.Src, q.Dst, q.DPort = b, a, fl.key.pa
	}
	if q.Proto == packet.ProtoICMP || q.Proto == packet.ProtoICMPv6 {
		q.DPort = 0 // the echo identifier is not a port
	}
	return st.m.Decide(&q)
}

// byDefault is the verdict of traffic the policy cannot judge: the
// policy default (deny: dropped; monitor: passed and reported).
func (f *Filter) byDefault(st *polState, reason match.Reason) Result {
	r := Result{Verdict: match.Denied, Reason: reason, Approval: -1}
	switch {
	case st.m == nil:
		r.Reason = match.ReasonNoPolicy
		if f.o.FailOpen {
			r.Verdict = match.Monitored
		}
	case !st.deny:
		r.Verdict = match.Monitored
	}
	return r
}

// problem judges a frame that cannot be put in a flow, or that breaks a
// rule (malformed, spoofed, covert link control): the policy default
// applies, except to spoofs, which are always denied.
func (f *Filter) problem(st *polState, p *packet.Packet, tech Technique, reason match.Reason, frame []byte, wireLen int, now int64) Result {
	r := f.byDefault(st, reason)
	if reason == match.ReasonSpoofed || reason == match.ReasonLinkControlRate {
		r.Verdict = match.Denied
	}
	r.Technique = tech
	if p.N > 0 && p.Problem != packet.ProblemNone {
		r.Layer = p.N - 1
		if l := &p.L[r.Layer]; l.Frag != packet.NotFragment && (p.Problem == packet.ProblemFragTiny || p.Problem == packet.ProblemFragOverlap) {
			f.frags.poison(l, r.Layer, st.gen, now)
		}
	}
	if f.o.Mode == ModeMonitor && f.o.Reset && r.Verdict == match.Denied && p.N == 1 && p.L[0].Proto == packet.ProtoTCP &&
		p.L[0].L4 && p.L[0].Frag == packet.NotFragment && p.L[0].TCPFlags&packet.TCPRst == 0 {
		r.Action = Reset
	}
	if reason != match.ReasonSpoofed || f.spoofs.first(p.Outer().Src, now) {
		f.techEvent(st, p, r, now)
	}
	// Evidence of unclassified frames shares the technique events' rate
	// limit.
	if f.o.Evidence == nil || !f.lim.allow(now) {
		frame = nil
	}
	return f.finish(st, r, p, frame, wireLen, now, nil)
}

// finish turns a verdict into an action, counts, and hands denied frames to
// events and evidence.
func (f *Filter) finish(st *polState, r Result, p *packet.Packet, frame []byte, wireLen int, now int64, ev *deniedEvent) Result {
	allowed := r.Verdict.Allowed()
	if r.Action == 0 {
		r.Action = Pass
		if !allowed && f.o.Mode == ModeInline {
			r.Action = Drop
		}
	}
	if r.Verdict == match.Domestic {
		f.c.domestic.Add(1)
	}
	if r.Technique != TechNone && (!allowed || r.Verdict == match.Monitored) {
		f.c.techniques[r.Technique].Add(1)
		if r.Technique == TechTCPNoSYN {
			f.c.noSYN.Add(1)
		}
	}
	if allowed {
		f.c.passed.Add(p.SegmentCount())
		f.c.passedBytes.Add(uint64(wireLen))
	} else {
		f.c.denied.Add(p.SegmentCount())
		f.c.deniedBytes.Add(uint64(wireLen))
	}
	if r.Action == Reset {
		f.c.resets.Add(1)
	}
	if ev != nil {
		f.emitDenied(st, p, ev, r, now)
	}
	if frame != nil && f.o.Evidence != nil && (!allowed || r.Verdict == match.Monitored) {
		if f.o.Evidence.Write(time.Unix(0, now), frame, wireLen) == nil {
			f.c.evidence.Add(1)
		}
	}
	return r
}

// deniedEvent is what a denied-flow event needs of its flow, copied out
// under the shard's lock; small, since every frame keeps two on its stack.
type deniedEvent struct {
	src, dst     netip.Addr // src opened the flow
	sport, dport uint16
	proto        uint8
	revoked      bool
	layer        uint8
}

func (f *Filter) emitDenied(st *polState, p *packet.Packet, ev *deniedEvent, r Result, now int64) {
	if !f.lim.allow(now) {
		f.c.eventsQuiet.Add(1)
		return
	}
	f.c.eventsSent.Add(1)
	fields := f.eventFields(st, r, now)
	fields["src"], fields["dst"], fields["proto"] = ev.src.String(), ev.dst.String(), policy.ProtoName(ev.proto)
	fields["sport"], fields["dport"] = ev.sport, ev.dport
	if ev.layer > 0 {
		fields["layer"] = int(ev.layer)
		fields["via"] = p.Via(int(ev.layer))
	}
	if ev.revoked {
		fields["revoked"] = true
		// A frame already in the ring at the swap counts as 0.
		if sw := f.swapAt.Load(); sw > 0 {
			fields["after_swap_ms"] = float64(max(0, now-sw)) / 1e6
		}
	}
	sev := report.Warning
	if r.Verdict == match.Monitored {
		sev = report.Notice
	}
	f.o.Events.Emit(report.LinkDenied, sev, fields)
	f.log.Info("denied flow", "action", fields["action"], "reason", r.Reason.String(), "technique", r.Technique.String(),
		"src", ev.src, "dst", ev.dst, "proto", ev.proto, "dport", ev.dport, "layer", ev.layer)
}

// eventFields are the fields every link.denied event carries.
func (f *Filter) eventFields(st *polState, r Result, now int64) report.Fields {
	action := "reported"
	switch {
	case r.Action == Drop || r.Action == 0 && f.o.Mode == ModeInline && !r.Verdict.Allowed():
		action = "dropped"
	case r.Action == Reset:
		action = "reset"
	}
	fields := report.Fields{
		"site": f.o.Site, "mode": f.o.Mode.String(), "action": action,
		"verdict": r.Verdict.String(), "reason": r.Reason.String(),
		"at": time.Unix(0, now).UTC().Format(time.RFC3339Nano),
	}
	if r.Technique != TechNone {
		fields["technique"] = r.Technique.String()
	}
	if st.m != nil {
		fields["policy_serial"] = st.m.Policy().Serial
	}
	return fields
}

// techEvent reports a frame denied for what it is rather than as a flow
// (spoofed, malformed, no SYN, fragment overlap), rate-limited apart from
// denied-flow events so a flood of junk cannot hide them.
func (f *Filter) techEvent(st *polState, p *packet.Packet, r Result, now int64) {
	if r.Verdict.Allowed() && r.Verdict != match.Monitored {
		return
	}
	if !f.techLim.allow(now) {
		f.c.eventsQuiet.Add(1)
		return
	}
	f.c.eventsSent.Add(1)
	fields := f.eventFields(st, r, now)
	if p.Problem != packet.ProblemNone {
		fields["problem"] = p.Problem.String()
	}
	if p.Kind == packet.KindLinkControl || p.Link != packet.LinkNone {
		fields["link_protocol"] = p.Link.String()
	}
	if p.N > 0 {
		l := &p.L[min(r.Layer, p.N-1)]
		fields["src"], fields["dst"], fields["proto"] = l.Src.String(), l.Dst.String(), policy.ProtoName(l.Proto)
		if l.L4 && (l.Proto == packet.ProtoTCP || l.Proto == packet.ProtoUDP || l.Proto == packet.ProtoSCTP) {
			fields["sport"], fields["dport"] = l.SPort, l.DPort
		}
		if r.Layer > 0 {
			fields["layer"] = r.Layer
			fields["via"] = p.Via(r.Layer)
		}
	} else {
		fields["ethertype"] = fmt.Sprintf("0x%04x", p.EtherType)
	}
	sev := report.Warning
	if r.Verdict == match.Monitored {
		sev = report.Notice
	}
	f.o.Events.Emit(report.LinkDenied, sev, fields)
	f.log.Info("denied frame", "technique", r.Technique.String(), "reason", r.Reason.String(), "problem", p.Problem.String())
}

// Flows lists the flows in the table (not for the packet path).
func (f *Filter) Flows() []FlowInfo {
	var out []FlowInfo
	for _, s := range f.shards {
		s.mu.Lock()
		for i := range s.ents {
			out = append(out, s.ents[i].info())
		}
		s.mu.Unlock()
	}
	return out
}

// Sweep removes idle-expired flows as of now.
func (f *Filter) Sweep(now time.Time) {
	n := now.UnixNano()
	for _, s := range f.shards {
		s.mu.Lock()
		s.sweep(n, &f.o.Timeouts)
		s.mu.Unlock()
	}
}

// Run sweeps the flow table and emits denied-traffic summaries until ctx
// ends. The capture loops (Bridge, Monitor) run separately.
func (f *Filter) Run(ctx context.Context) error {
	sweep := time.NewTicker(time.Second)
	defer sweep.Stop()
	sum := time.NewTicker(f.o.SummaryEvery)
	defer sum.Stop()
	var last Snapshot
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-sweep.C:
			f.Sweep(now)
			if f.o.Evidence != nil {
				if err := f.o.Evidence.Flush(); err != nil {
					f.log.Warn("evidence flush failed", "err", err)
				}
			}
		case <-sum.C:
			s := f.Snapshot()
			if s.Denied > last.Denied {
				f.o.Events.Emit(report.LinkDenied, report.Notice, report.Fields{
					"site": f.o.Site, "summary": true, "interval_s": f.o.SummaryEvery.Seconds(),
					"packets": s.Denied - last.Denied, "bytes": s.DeniedBytes - last.DeniedBytes,
					"flows": s.DeniedFlows - last.DeniedFlows, "events_suppressed": s.EventsSuppressed - last.EventsSuppressed,
				})
			}
			last = s
		}
	}
}

// limiter is a token bucket over packet time.
type limiter struct {
	mu          sync.Mutex
	rate, burst float64
	tokens      float64
	last        int64
}

func (l *limiter) allow(now int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last != 0 && now > l.last {
		l.tokens = min(l.burst, l.tokens+float64(now-l.last)/1e9*l.rate)
	}
	if now > l.last {
		l.last = now
	}
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}
