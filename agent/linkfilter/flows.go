package linkfilter

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"time"

	"linkguard.dev/linkguard/agent/linkfilter/packet"
	"linkguard.dev/linkguard/policy/match"
)

// flowKey is a 5-tuple in canonical order, and the depth of the header
// pair it was read from: both directions of a flow give the same key
// (side a is the lower address/port pair), and a flow inside a tunnel is
// a flow of its own.
type flowKey struct {
	a, b   [16]byte
	pa, pb uint16
	proto  uint8
	layer  uint8
}

// keyOf returns the canonical key of header pair l at depth layer, and
// whether l travels from side a to b.
func keyOf(l *packet.Layer, layer int) (flowKey, bool) {
	s, d := l.Src.As16(), l.Dst.As16()
	k := flowKey{proto: l.Proto, layer: uint8(layer)}
	fwd := less(&s, l.SPort, &d, l.DPort)
	if fwd {
		k.a, k.b, k.pa, k.pb = s, d, l.SPort, l.DPort
	} else {
		k.a, k.b, k.pa, k.pb = d, s, l.DPort, l.SPort
	}
	return k, fwd
}

func less(x *[16]byte, px uint16, y *[16]byte, py uint16) bool {
	if a, b := binary.BigEndian.Uint64(x[:8]), binary.BigEndian.Uint64(y[:8]); a != b {
		return a < b
	}
	if a, b := binary.BigEndian.Uint64(x[8:]), binary.BigEndian.Uint64(y[8:]); a != b {
		return a < b
	}
	return px <= py
}

// hash mixes the key with a per-table random seed, so nobody outside can
// aim a flood of tuples at one probe run.
func (k *flowKey) hash(seed uint64) uint64 {
	h := seed ^ (uint64(k.proto) | uint64(k.pa)<<8 | uint64(k.pb)<<24 | uint64(k.layer)<<40)
	h = mix64(h ^ binary.LittleEndian.Uint64(k.a[:8]))
	h = mix64(h ^ binary.LittleEndian.Uint64(k.a[8:]))
	h = mix64(h ^ binary.LittleEndian.Uint64(k.b[:8]))
	return mix64(h ^ binary.LittleEndian.Uint64(k.b[8:]))
}

// mix64 is the splitmix64 finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// TCP states the table tracks, only as far as timeouts need.
const (
	tcpOpening uint8 = iota // SYN seen, not yet both ways
	tcpEstablished
	tcpClosing // FIN or RST seen
)

// flow is one entry of the table. Kept small (112 bytes): a full default
// table of 65,536 flows is under 8 MB with its index.
type flow struct {
	key      flowKey
	initA    bool // side a opened the flow
	nosyn    bool // TCP picked up without its SYN: judged both ways
	via      packet.Encap
	layer    uint8
	aDom     bool // side a's address is domestic (under policy generation domGen)
	bDom     bool
	domGen   uint32
	seenBack bool // a packet went the other way
	tcp      uint8
	verdict  match.Verdict
	reason   match.Reason
	evidence uint8 // frames of this flow written to the evidence ring
	resets   uint8 // RST pairs sent (monitor mode)
	reported bool  // a denied-flow event was emitted for the current verdict
	approval int32
	gen      uint32 // policy generation decided under (0: never)
	recheck  int64  // Decision.RecheckAt
	first    int64  // Unix nanos
	last     int64
	pkts     uint64
	bytes    uint64
	denied   uint64 // packets dropped (inline) or reported (monitor)
}

func (f *flow) decision() match.Decision {
	return match.Decision{Verdict: f.verdict, Reason: f.reason, Approval: f.approval, RecheckAt: f.recheck}
}

func (f *flow) setDecision(d match.Decision) {
	f.verdict, f.reason, f.approval, f.recheck = d.Verdict, d.Reason, d.Approval, d.RecheckAt
}

// Timeouts are idle timeouts per protocol state.
type Timeouts struct {
	TCPEstablished time.Duration // default 1 h
	TCPOpening     time.Duration // SYN without answer; default 30 s
	TCPClosing     time.Duration // after FIN/RST; default 10 s
	UDP            time.Duration // default 60 s
	ICMP           time.Duration // default 30 s
	Other          time.Duration // default 60 s
}

func (t *Timeouts) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&t.TCPEstablished, time.Hour)
	set(&t.TCPOpening, 30*time.Second)
	set(&t.TCPClosing, 10*time.Second)
	set(&t.UDP, time.Minute)
	set(&t.ICMP, 30*time.Second)
	set(&t.Other, time.Minute)
}

func (t *Timeouts) of(f *flow) int64 {
	switch f.key.proto {
	case packet.ProtoTCP:
		switch f.tcp {
		case tcpEstablished:
			return int64(t.TCPEstablished)
		case tcpClosing:
			return int64(t.TCPClosing)
		}
		return int64(t.TCPOpening)
	case packet.ProtoUDP:
		return int64(t.UDP)
	case packet.ProtoICMP, packet.ProtoICMPv6:
		return int64(t.ICMP)
	}
	return int64(t.Other)
}

// shard is one lock's worth of the flow table: the flows sit densely in
// ents (so eviction scans only live flows and memory is what the cap says),
// found through idx, an open-addressing index with linear probing, at most
// half full, with backward-shift deletion. Each idx slot holds the low 32
// bits of the key's hash (the probe start, and a quick filter) and the
// entry's position + 1; 0 is empty. Sized once: nothing allocates later.
type shard struct {
	mu      sync.Mutex
	idx     []uint64
	mask    uint64
	ents    []flow // len: live flows; cap: limit
	limit   int
	cursor  int // eviction clock hand over ents
	seed    uint64
	evicted uint64
	expired uint64
	_       [40]byte // keep shards' locks off one cache line
}

func newShard(limit int, seed uint64) *shard {
	size := 8
	for size < 2*limit {
		size *= 2
	}
	return &shard{idx: make([]uint64, size), mask: uint64(size - 1), ents: make([]flow, 0, limit), limit: limit, seed: seed}
}

const entMask = 0xffffffff

// find returns the entry holding k, or -1.
func (s *shard) find(k *flowKey, h uint64) int {
	tag := uint64(uint32(h)) << 32
	for i := h & s.mask; ; i = (i + 1) & s.mask {
		v := s.idx[i]
		if v == 0 {
			return -1
		}
		if v&^entMask == tag {
			if e := int(v&entMask) - 1; s.ents[e].key == *k {
				return e
			}
		}
	}
}

// slotOf returns the index slot pointing at entry e.
func (s *shard) slotOf(e int) uint64 {
	h := s.ents[e].key.hash(s.seed)
	for i := h & s.mask; ; i = (i + 1) & s.mask {
		if int(s.idx[i]&entMask) == e+1 {
			return i
		}
	}
}

// insert adds k (absent) and returns its entry, evicting first if full.
func (s *shard) insert(k *flowKey, h uint64, now int64, to *Timeouts) int {
	if len(s.ents) >= s.limit {
		s.evictOne(now, to)
	}
	e := len(s.ents)
	s.ents = append(s.ents, flow{key: *k})
	i := h & s.mask
	for s.idx[i] != 0 {
		i = (i + 1) & s.mask
	}
	s.idx[i] = uint64(uint32(h))<<32 | uint64(e+1)
	return e
}

// evictOne frees one entry: an idle-expired flow if the clock hand finds
// one among the next 8, else the least recently seen of those 8.
func (s *shard) evictOne(now int64, to *Timeouts) {
	victim, oldest := -1, int64(1<<63-1)
	for k := 0; k < 8 && k < len(s.ents); k++ {
		if s.cursor >= len(s.ents) {
			s.cursor = 0
		}
		e := s.cursor
		s.cursor++
		f := &s.ents[e]
		if now-f.last > to.of(f) {
			s.remove(e)
			s.expired++
			return
		}
		if f.last < oldest {
			victim, oldest = e, f.last
		}
	}
	if victim >= 0 {
		s.remove(victim)
		s.evicted++
	}
}

// remove deletes entry e: its index slot goes (later members of the probe
// run shift back), and the last entry moves into its place.
func (s *shard) remove(e int) {
	s.deleteSlot(s.slotOf(e))
	last := len(s.ents) - 1
	if e != last {
		j := s.slotOf(last)
		s.ents[e] = s.ents[last]
		s.idx[j] = s.idx[j]&^entMask | uint64(e+1)
	}
	s.ents[last] = flow{}
	s.ents = s.ents[:last]
}

func (s *shard) deleteSlot(i uint64) {
	s.idx[i] = 0
	for j := (i + 1) & s.mask; s.idx[j] != 0; j = (j + 1) & s.mask {
		home := (s.idx[j] >> 32) & s.mask
		// The entry at j may move to i when i lies cyclically in [home, j).
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			s.idx[i], s.idx[j] = s.idx[j], 0
			i = j
		}
	}
}

// sweep removes idle-expired flows.
func (s *shard) sweep(now int64, to *Timeouts) {
	for e := 0; e < len(s.ents); {
		if f := &s.ents[e]; now-f.last > to.of(f) {
			s.remove(e) // the last entry moved into e: look at e again
			s.expired++
			continue
		}
		e++
	}
}

// FlowInfo describes one flow, for replay output and diagnostics.
type FlowInfo struct {
	Src, Dst     netip.Addr // Src opened the flow
	Proto        uint8
	SPort, DPort uint16
	// Layer is the depth of the header pair (0: outermost) and Via how it
	// was carried.
	Layer       int
	Via         packet.Encap
	PickedUp    bool // TCP seen without its SYN, judged both ways
	Decision    match.Decision
	Packets     uint64
	Bytes       uint64
	Denied      uint64
	First, Last time.Time
}

// event copies what a denied-flow event says of f.
func (f *flow) event(revoked bool) deniedEvent {
	e := deniedEvent{src: netip.AddrFrom16(f.key.a).Unmap(), dst: netip.AddrFrom16(f.key.b).Unmap(),
		sport: f.key.pa, dport: f.key.pb, proto: f.key.proto, revoked: revoked, layer: f.layer}
	if !f.initA {
		e.src, e.dst, e.sport, e.dport = e.dst, e.src, e.dport, e.sport
	}
	return e
}

func (f *flow) info() FlowInfo {
	a, b := netip.AddrFrom16(f.key.a).Unmap(), netip.AddrFrom16(f.key.b).Unmap()
	fi := FlowInfo{Src: a, Dst: b, SPort: f.key.pa, DPort: f.key.pb, Proto: f.key.proto,
		Layer: int(f.layer), Via: f.via, PickedUp: f.nosyn,
		Decision: f.decision(), Packets: f.pkts, Bytes: f.bytes, Denied: f.denied,
		First: time.Unix(0, f.first), Last: time.Unix(0, f.last)}
	if !f.initA {
		fi.Src, fi.Dst, fi.SPort, fi.DPort = fi.Dst, fi.Src, fi.DPort, fi.SPort
	}
	return fi
}
