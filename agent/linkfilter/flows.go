package linkfilter

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"sync"
	"time"

	"linkguard.dev/linkguard/agent/linkfilter/packet"
	"linkguard.dev/linkguard/policy/match"
)

// flowKey is a 5-tuple in canonical order, and the depth of the header
// pair it was read from: both directions of a flow give the same key
// (side a is the lower address/port pair), and a flow inside a tunnel is
// a flow of its own. Addresses are held as the two big-endian words of
// their 16-byte form (IPv4 mapped), so keys compare and hash a word at a
// time.
type flowKey struct {
	ahi, alo, bhi, blo uint64
	pa, pb             uint16
	proto              uint8
	layer              uint8
}

// addrWords returns the big-endian words of a's 16-byte form.
func addrWords(a netip.Addr) (hi, lo uint64) {
	if a.Is4() {
		v := a.As4()
		return 0, 0xffff<<32 | uint64(binary.BigEndian.Uint32(v[:]))
	}
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

// wordsAddr is the inverse of addrWords (IPv4 stays mapped: Unmap it).
func wordsAddr(hi, lo uint64) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	return netip.AddrFrom16(b)
}

func (k *flowKey) addrA() netip.Addr { return wordsAddr(k.ahi, k.alo) }
func (k *flowKey) addrB() netip.Addr { return wordsAddr(k.bhi, k.blo) }

// keyOf sets k to the canonical key of header pair l at depth layer, and
// reports whether l travels from side a to b.
func keyOf(l *packet.Layer, layer int, k *flowKey) bool {
	shi, slo := addrWords(l.Src)
	dhi, dlo := addrWords(l.Dst)
	fwd := shi < dhi || shi == dhi && (slo < dlo || slo == dlo && l.SPort <= l.DPort)
	k.proto, k.layer = l.Proto, uint8(layer)
	if fwd {
		k.ahi, k.alo, k.bhi, k.blo, k.pa, k.pb = shi, slo, dhi, dlo, l.SPort, l.DPort
	} else {
		k.ahi, k.alo, k.bhi, k.blo, k.pa, k.pb = dhi, dlo, shi, slo, l.DPort, l.SPort
	}
	return fwd
}

// eq is k == *o, a word at a time (== on the struct calls memequal).
func (k *flowKey) eq(o *flowKey) bool {
	return k.alo == o.alo && k.blo == o.blo && k.pa == o.pa && k.pb == o.pb &&
		k.proto == o.proto && k.layer == o.layer && k.ahi == o.ahi && k.bhi == o.bhi
}

// hash mixes the key with a per-table random seed, so nobody outside can
// aim a flood of tuples at one probe run. As in wyhash: keyed 64x64->128
// multiplies, each operand a word of the key; the two addresses' run in
// parallel (ports, protocol and depth folded into the second), and a last
// one mixes their results.
func (k *flowKey) hash(seed uint64) uint64 {
	rest := uint64(k.pa) | uint64(k.pb)<<16 | uint64(k.proto)<<32 | uint64(k.layer)<<40
	a := mum(k.ahi^seed^0xa0761d6478bd642f, k.alo^seed^0xe7037ed1a0b428db)
	b := mum(k.bhi^rest^seed^0x8ebc6af09c88c6e3, k.blo^seed^0x589965cc75374cc3)
	return mum(a^rest^0x1d8e4e27c47d124f, b^seed^0xeb44accab455d165)
}

func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
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

// flow is one entry of the table. Kept small (120 bytes): a full default
// table of 65,536 flows is under 8 MB with its index.
type flow struct {
	key      flowKey
	tag      uint32 // low 32 bits of key's hash: where its index slot's probe starts
	initA    bool   // side a opened the flow
	nosyn    bool   // TCP picked up without its SYN: judged both ways
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

// seen accounts a frame of header pair l (fwd: from side a; tcp: with its
// TCP header) to the flow, and moves its TCP state on.
func (f *flow) seen(l *packet.Layer, fwd, tcp bool, segs uint64, wireLen int, now int64) {
	f.last = now
	f.pkts += segs
	f.bytes += uint64(wireLen)
	if fwd != f.initA {
		f.seenBack = true
	}
	if tcp {
		switch {
		case l.TCPFlags&(packet.TCPFin|packet.TCPRst) != 0:
			f.tcp = tcpClosing
		case f.tcp == tcpOpening && f.seenBack:
			f.tcp = tcpEstablished
		}
	}
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

// shortest is the least of the timeouts.
func (t *Timeouts) shortest() int64 {
	return int64(min(t.TCPEstablished, t.TCPOpening, t.TCPClosing, t.UDP, t.ICMP, t.Other))
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
	// Counts of frames the fast path passed (judgeCached), kept under mu
	// beside the lock it holds anyway instead of in shared atomics.
	passed, passedBytes, domestic uint64
	_                             [16]byte // keep shards' locks off one cache line
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
			if e := int(v&entMask) - 1; s.ents[e].key.eq(k) {
				return e
			}
		}
	}
}

// slotOf returns the index slot pointing at entry e.
func (s *shard) slotOf(e int) uint64 {
	for i := uint64(s.ents[e].tag) & s.mask; ; i = (i + 1) & s.mask {
		if int(s.idx[i]&entMask) == e+1 {
			return i
		}
	}
}

// insert adds k (absent) and returns its entry; in a full shard it takes
// the place of the flow evictOne frees (no entry moves).
func (s *shard) insert(k *flowKey, h uint64, now int64, to *Timeouts) int {
	e := len(s.ents)
	if e >= s.limit {
		e = s.evictOne(now, to)
		s.ents[e] = flow{key: *k, tag: uint32(h)}
	} else {
		s.ents = append(s.ents, flow{key: *k, tag: uint32(h)})
	}
	i := h & s.mask
	for s.idx[i] != 0 {
		i = (i + 1) & s.mask
	}
	s.idx[i] = uint64(uint32(h))<<32 | uint64(e+1)
	return e
}

// evictOne frees one entry of a full shard and returns it, out of the
// index, for the caller to overwrite: an idle-expired flow if the clock
// hand finds one among the next 8, else the least recently seen of those
// 8.
func (s *shard) evictOne(now int64, to *Timeouts) int {
	victim, oldest := -1, int64(1<<63-1)
	// A flow seen within the shortest timeout cannot have expired: most
	// of a busy table, judged without the per-state switch.
	fresh := to.shortest()
	for k := 0; k < 8 && k < len(s.ents); k++ {
		if s.cursor >= len(s.ents) {
			s.cursor = 0
		}
		e := s.cursor
		s.cursor++
		f := &s.ents[e]
		if idle := now - f.last; idle > fresh && idle > to.of(f) {
			s.deleteSlot(s.slotOf(e))
			s.expired++
			return e
		}
		if f.last < oldest {
			victim, oldest = e, f.last
		}
	}
	s.deleteSlot(s.slotOf(victim))
	s.evicted++
	return victim
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
	e := deniedEvent{src: f.key.addrA().Unmap(), dst: f.key.addrB().Unmap(),
		sport: f.key.pa, dport: f.key.pb, proto: f.key.proto, revoked: revoked, layer: f.layer}
	if !f.initA {
		e.src, e.dst, e.sport, e.dport = e.dst, e.src, e.dport, e.sport
	}
	return e
}

func (f *flow) info() FlowInfo {
	a, b := f.key.addrA().Unmap(), f.key.addrB().Unmap()
	fi := FlowInfo{Src: a, Dst: b, SPort: f.key.pa, DPort: f.key.pb, Proto: f.key.proto,
		Layer: int(f.layer), Via: f.via, PickedUp: f.nosyn,
		Decision: f.decision(), Packets: f.pkts, Bytes: f.bytes, Denied: f.denied,
		First: time.Unix(0, f.first), Last: time.Unix(0, f.last)}
	if !f.initA {
		fi.Src, fi.Dst, fi.SPort, fi.DPort = fi.Dst, fi.Src, fi.DPort, fi.SPort
	}
	return fi
}
