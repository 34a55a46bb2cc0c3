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

	"linkguard.dev/linkguard/agent/report"
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
	MaxFlows int  // hard cap on tracked flows; default 65536
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
	// LinkLocal names the link-scoped IP protocols that pass as link
	// control (links.link_local); nil takes DefaultLinkLocal.
	LinkLocal []string
	// PickupGrace is how long after the filter starts (its first frame)
	// inline mode picks up TCP sessions it saw no SYN of, judged both
	// ways (links.pickup_grace); 0 takes DefaultPickupGrace, negative
	// disables pickup.
	PickupGrace time.Duration
	// MaxEncap bounds how many encapsulations deep a frame is decoded
	// (links.max_encap); 0 takes DefaultMaxEncap. Deeper frames are judged
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

// Defaults of Options.
const (
	DefaultPickupGrace = 30 * time.Second
	DefaultMaxEncap    = 4
)

// DefaultLinkLocal is the routing and redundancy protocols a border link
// runs, passed when link-scoped (links.link_local absent).
var DefaultLinkLocal = []string{"ospf", "vrrp", "igmp", "mld", "pim"}

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
	o      Options
	log    *slog.Logger
	state  atomic.Pointer[polState]
	shards [nShards]*shard
	frags  fragTable
	c      counters
	lim    limiter

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
	malformed, truncated    atomic.Uint64
	superFrames             atomic.Uint64
	fragUnknown             atomic.Uint64
	newFlows, deniedFlows   atomic.Uint64
	eventsSent, eventsQuiet atomic.Uint64
	evidence                atomic.Uint64
	resets                  atomic.Uint64
	swaps                   atomic.Uint64
}

// New builds a filter with no policy loaded: until SetMatcher, every IP
// frame is denied (fail closed), link control frames pass.
func New(o Options) *Filter {
	if o.Mode == 0 {
		o.Mode = ModeInline
	}
	if o.MaxFlows <= 0 {
		o.MaxFlows = 65536
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
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Filter{o: o, log: o.Logger, retired: map[string]ApprovalCount{}}
	f.lim = limiter{rate: o.EventsPerSecond, burst: o.EventBurst, tokens: o.EventBurst}
	per := max(1, o.MaxFlows/nShards)
	var sb [8]byte
	_, _ = crand.Read(sb[:])
	f.seed = binary.LittleEndian.Uint64(sb[:])
	for i := range f.shards {
		f.shards[i] = newShard(per, f.seed)
	}
	f.state.Store(&polState{deny: true})
	return f
}

// Mode is the filter's enforcement mode.
func (f *Filter) Mode() Mode { return f.o.Mode }

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

// Result is the filter's judgement on one frame.
type Result struct {
	Action   Action
	Verdict  match.Verdict
	Reason   match.Reason
	Approval int32 // -1 if none
	NewFlow  bool
	Flow     FlowRef // the flow's key, zero for frames outside any flow
}

// FlowRef identifies a flow (comparable; use as a map key).
type FlowRef struct{ k flowKey }

// Judge classifies one decoded frame seen at now (Unix nanos; the capture
// timestamp). frame is the raw frame, kept as evidence when denied. It
// allocates nothing on the packet path (events and evidence aside, which
// are rate-limited and bounded).
func (f *Filter) Judge(p *Packet, frame []byte, wireLen int, now int64) Result {
	st := f.state.Load()
	if p.Truncated {
		f.c.truncated.Add(1)
	}
	if p.Segments > 1 {
		f.c.superFrames.Add(1)
	}
	switch p.Kind {
	case KindLinkControl:
		f.c.linkControl.Add(1)
		f.c.passed.Add(p.segments())
		f.c.passedBytes.Add(uint64(wireLen))
		return Result{Action: Pass, Approval: -1}
	case KindOther:
		f.c.other.Add(1)
		return f.unclassified(st, p, frame, wireLen, now)
	case KindMalformed:
		f.c.malformed.Add(1)
		return f.unclassified(st, p, frame, wireLen, now)
	}
	if p.Frag == LaterFragment {
		d, ok := f.frags.lookup(p, st.gen, now)
		if !ok {
			f.c.fragUnknown.Add(1)
			return f.unclassified(st, p, frame, wireLen, now)
		}
		r := Result{Verdict: d.Verdict, Reason: d.Reason, Approval: d.Approval}
		return f.finish(st, r, p, frame, wireLen, now, nil)
	}
	k, fwd := keyOf(p)
	h := k.hash(f.seed)
	s := f.shards[h>>60]
	s.mu.Lock()
	i := s.find(&k, h)
	isNew := false
	if i < 0 {
		i = s.insert(&k, h, now, &f.o.Timeouts)
		isNew = true
	}
	fl := &s.ents[i]
	if !isNew && now-fl.last > f.o.Timeouts.of(fl) {
		*fl = flow{key: k} // idle-expired: a new flow on the same tuple
		s.expired++
		isNew = true
	}
	if isNew {
		fl.initA = fwd == initiatedBySender(p)
		fl.first = now
		fl.tcp = tcpOpening
		f.c.newFlows.Add(1)
	}
	prevAllowed := fl.gen != 0 && fl.verdict.Allowed()
	dnow := now
	if f.o.DecideAt != 0 {
		dnow = f.o.DecideAt
	}
	if isNew || fl.gen != uint32(st.gen) || dnow >= fl.recheck {
		fl.setDecision(f.decide(st, fl, dnow))
		fl.gen = uint32(st.gen)
		if !fl.verdict.Allowed() || fl.verdict == match.Monitored {
			fl.reported = false
		}
	}
	fl.last = now
	fl.pkts += p.segments()
	fl.bytes += uint64(wireLen)
	if fwd != fl.initA {
		fl.seenBack = true
	}
	if p.Proto == 6 {
		switch {
		case p.TCPFlags&(TCPFin|TCPRst) != 0:
			fl.tcp = tcpClosing
		case fl.tcp == tcpOpening && fl.seenBack:
			fl.tcp = tcpEstablished
		}
	}
	d := fl.decision()
	r := Result{Verdict: d.Verdict, Reason: d.Reason, Approval: d.Approval, NewFlow: isNew, Flow: FlowRef{k}}
	var ev *deniedEvent
	var evBuf deniedEvent
	denied := !d.Verdict.Allowed() || d.Verdict == match.Monitored
	if denied {
		fl.denied++
		if !fl.reported {
			fl.reported = true
			evBuf = deniedEvent{info: fl.info(), revoked: prevAllowed && !d.Verdict.Allowed()}
			ev = &evBuf
		}
		if int(fl.evidence) < f.o.EvidencePerFlow && f.o.Evidence != nil {
			fl.evidence++
		} else {
			frame = nil
		}
		if f.o.Mode == ModeMonitor && f.o.Reset && p.Proto == 6 && p.TCPFlags&TCPRst == 0 && fl.resets < 4 && !d.Verdict.Allowed() {
			fl.resets++
			r.Action = Reset
		}
	}
	s.mu.Unlock()
	if p.Frag == FirstFragment {
		f.frags.store(p, d, st.gen, now)
	}
	if denied && ev != nil {
		f.c.deniedFlows.Add(1)
	}
	return f.finish(st, r, p, frame, wireLen, now, ev)
}

// initiatedBySender guesses, from the first frame seen of a flow, whether
// its sender opened the flow. Readers of two ports race, so the first frame
// seen may be the answer (a monitor on a kernel bridge sees a SYN-ACK before
// its SYN now and then): a SYN-ACK was sent by the responder; otherwise an
// ephemeral source port talking to a lower port marks the opener, and
// failing that the sender is taken to be the opener.
func initiatedBySender(p *Packet) bool {
	if p.Proto == 6 && p.TCPFlags&(TCPSyn|TCPAck) == TCPSyn|TCPAck {
		return false
	}
	if p.Proto == 6 && p.TCPFlags&TCPSyn != 0 {
		return true
	}
	const ephemeral = 32768
	if p.DPort >= ephemeral && p.SPort < ephemeral && p.SPort != 0 {
		return false
	}
	return true
}

// decide asks the matcher about a flow, as its initiator opened it.
func (f *Filter) decide(st *polState, fl *flow, now int64) match.Decision {
	if st.m == nil {
		v := match.Denied
		if f.o.FailOpen {
			v = match.Monitored
		}
		return match.Decision{Verdict: v, Reason: match.ReasonNoPolicy, Approval: -1, RecheckAt: math.MaxInt64}
	}
	q := match.Query{Site: f.o.Site, Proto: fl.key.proto, Now: time.Unix(0, now)}
	a, b := netip.AddrFrom16(fl.key.a), netip.AddrFrom16(fl.key.b)
	if fl.initA {
		q.Src, q.Dst, q.DPort = a, b, fl.key.pb
	} else {
		q.Src, q.Dst, q.DPort = b, a, fl.key.pa
	}
	if q.Proto == 1 || q.Proto == 58 {
		q.DPort = 0 // the echo identifier is not a port
	}
	return st.m.Decide(&q)
}

// unclassified judges a frame that cannot be put in a flow: domestic both
// ends passes, otherwise the policy default applies (deny: dropped).
func (f *Filter) unclassified(st *polState, p *Packet, frame []byte, wireLen int, now int64) Result {
	r := Result{Verdict: match.Denied, Reason: match.ReasonUnclassified, Approval: -1}
	switch {
	case st.m == nil:
		r.Reason = match.ReasonNoPolicy
		if f.o.FailOpen {
			r.Verdict = match.Monitored
		}
	case p.Src.IsValid() && st.m.IsDomestic(p.Src) && st.m.IsDomestic(p.Dst):
		r.Verdict, r.Reason = match.Domestic, match.ReasonDomestic
	case !st.deny:
		r.Verdict = match.Monitored
	}
	if r.Verdict == match.Domestic {
		return f.finish(st, r, p, nil, wireLen, now, nil)
	}
	// Evidence of unclassified frames shares the events' rate limit.
	if f.o.Evidence == nil || !f.lim.allow(now) {
		frame = nil
	}
	return f.finish(st, r, p, frame, wireLen, now, nil)
}

// finish turns a verdict into an action, counts, and hands denied frames to
// events and evidence.
func (f *Filter) finish(st *polState, r Result, p *Packet, frame []byte, wireLen int, now int64, ev *deniedEvent) Result {
	allowed := r.Verdict.Allowed()
	if r.Action == 0 {
		r.Action = Pass
		if !allowed && f.o.Mode == ModeInline {
			r.Action = Drop
		}
	}
	switch {
	case r.Verdict == match.Domestic:
		f.c.domestic.Add(1)
	case r.Verdict == match.Approved && r.Approval >= 0 && int(r.Approval) < len(st.counts):
		c := &st.counts[r.Approval]
		c.pkts.Add(p.segments())
		c.bytes.Add(uint64(wireLen))
	}
	if allowed {
		f.c.passed.Add(p.segments())
		f.c.passedBytes.Add(uint64(wireLen))
	} else {
		f.c.denied.Add(p.segments())
		f.c.deniedBytes.Add(uint64(wireLen))
	}
	if r.Action == Reset {
		f.c.resets.Add(1)
	}
	if ev != nil {
		f.emitDenied(st, ev, r, now)
	}
	if frame != nil && f.o.Evidence != nil && (!allowed || r.Verdict == match.Monitored) {
		if f.o.Evidence.Write(time.Unix(0, now), frame, wireLen) == nil {
			f.c.evidence.Add(1)
		}
	}
	return r
}

type deniedEvent struct {
	info    FlowInfo
	revoked bool
}

func (f *Filter) emitDenied(st *polState, ev *deniedEvent, r Result, now int64) {
	if !f.lim.allow(now) {
		f.c.eventsQuiet.Add(1)
		return
	}
	f.c.eventsSent.Add(1)
	fi := ev.info
	action := "reported"
	switch {
	case r.Action == Drop:
		action = "dropped"
	case r.Action == Reset:
		action = "reset"
	}
	fields := report.Fields{
		"site": f.o.Site, "mode": f.o.Mode.String(), "action": action,
		"verdict": r.Verdict.String(), "reason": r.Reason.String(),
		"src": fi.Src.String(), "dst": fi.Dst.String(), "proto": policy.ProtoName(fi.Proto),
		"sport": fi.SPort, "dport": fi.DPort, "at": time.Unix(0, now).UTC().Format(time.RFC3339Nano),
	}
	if ev.revoked {
		fields["revoked"] = true
		// A frame already in the ring at the swap counts as 0.
		if sw := f.swapAt.Load(); sw > 0 {
			fields["after_swap_ms"] = float64(max(0, now-sw)) / 1e6
		}
	}
	if st.m != nil {
		fields["policy_serial"] = st.m.Policy().Serial
	}
	sev := report.Warning
	if r.Verdict == match.Monitored {
		sev = report.Notice
	}
	f.o.Events.Emit(report.LinkDenied, sev, fields)
	f.log.Info("denied flow", "action", action, "reason", r.Reason.String(), "src", fi.Src, "dst", fi.Dst,
		"proto", fi.Proto, "dport", fi.DPort)
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
