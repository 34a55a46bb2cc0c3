package linkfilter

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"time"

	"linkguard.dev/linkguard/policy/match"
)

// flowKey is a 5-tuple in canonical order: both directions of a flow give
// the same key (side a is the lower address/port pair).
type flowKey struct {
	a, b   [16]byte
	pa, pb uint16
	proto  uint8
}

// keyOf returns p's canonical key and whether p travels from side a to b.
func keyOf(p *Packet) (flowKey, bool) {
	s, d := p.Src.As16(), p.Dst.As16()
	k := flowKey{proto: p.Proto}
	fwd := less(&s, p.SPort, &d, p.DPort)
	if fwd {
		k.a, k.b, k.pa, k.pb = s, d, p.SPort, p.DPort
	} else {
		k.a, k.b, k.pa, k.pb = d, s, p.DPort, p.SPort
	}
	return k, fwd
}

func less(x *[16]byte, px uint16, y *[16]byte, py uint16) bool {
	for i := range x {
		if x[i] != y[i] {
			return x[i] < y[i]
		}
	}
	return px <= py
}

// hash mixes the key with a per-table random seed, so nobody outside can
// aim a flood of tuples at one probe run.
func (k *flowKey) hash(seed uint64) uint64 {
	h := seed ^ (uint64(k.proto) | uint64(k.pa)<<8 | uint64(k.pb)<<24)
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

// flow is one entry of the table.
type flow struct {
	key      flowKey
	used     bool
	initA    bool // side a opened the flow
	seenBack bool // a packet went the other way
	tcp      uint8
	decided  match.Decision
	gen      uint64 // policy generation decided under
	first    int64  // Unix nanos
	last     int64
	pkts     uint64
	bytes    uint64
	denied   uint64 // packets dropped (inline) or reported (monitor)
	evidence uint8  // frames of this flow written to the evidence ring
	resets   uint8  // RST pairs sent (monitor mode)
	reported bool   // a denied-flow event was emitted for the current verdict
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
	case 6:
		switch f.tcp {
		case tcpEstablished:
			return int64(t.TCPEstablished)
		case tcpClosing:
			return int64(t.TCPClosing)
		}
		return int64(t.TCPOpening)
	case 17:
		return int64(t.UDP)
	case 1, 58:
		return int64(t.ICMP)
	}
	return int64(t.Other)
}

// shard is one lock's worth of the flow table: open addressing with linear
// probing, at most half full, backward-shift deletion. Fixed size: it never
// allocates after construction.
type shard struct {
	mu      sync.Mutex
	slots   []flow
	mask    uint64
	n       int
	limit   int
	cursor  uint64 // eviction clock hand
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
	return &shard{slots: make([]flow, size), mask: uint64(size - 1), limit: limit, seed: seed}
}

// find returns the slot holding k, or -1.
func (s *shard) find(k *flowKey, h uint64) int {
	for i := h & s.mask; ; i = (i + 1) & s.mask {
		f := &s.slots[i]
		if !f.used {
			return -1
		}
		if f.key == *k {
			return int(i)
		}
	}
}

// insert places k (absent) and returns its slot, evicting first if full.
func (s *shard) insert(k *flowKey, h uint64, now int64, to *Timeouts) int {
	if s.n >= s.limit {
		s.evictOne(now, to)
	}
	i := h & s.mask
	for s.slots[i].used {
		i = (i + 1) & s.mask
	}
	s.slots[i] = flow{key: *k, used: true}
	s.n++
	return int(i)
}

// evictOne frees one slot: an idle-expired flow if the clock hand finds one
// within a short scan, else the least recently seen of those it passed.
func (s *shard) evictOne(now int64, to *Timeouts) {
	victim, oldest := -1, int64(1<<63-1)
	// Look at up to 32 live flows (the table is at most half full, so
	// about 64 slots).
	for seen, scanned := 0, 0; seen < 32 && scanned < len(s.slots); scanned++ {
		i := int(s.cursor & s.mask)
		s.cursor++
		f := &s.slots[i]
		if !f.used {
			continue
		}
		seen++
		if now-f.last > to.of(f) {
			s.remove(i)
			s.expired++
			return
		}
		if f.last < oldest {
			victim, oldest = i, f.last
		}
	}
	if victim >= 0 {
		s.remove(victim)
		s.evicted++
	}
}

// remove deletes slot i, shifting later members of its probe run back.
func (s *shard) remove(i int) {
	s.slots[i] = flow{}
	s.n--
	j := i
	for {
		j = int((uint64(j) + 1) & s.mask)
		f := &s.slots[j]
		if !f.used {
			return
		}
		home := int(f.key.hash(s.seed) & s.mask)
		// f may move to i when i lies cyclically in [home, j).
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			s.slots[i] = *f
			*f = flow{}
			i = j
		}
	}
}

// sweep removes idle-expired flows.
func (s *shard) sweep(now int64, to *Timeouts) {
	for i := 0; i < len(s.slots); {
		f := &s.slots[i]
		if f.used && now-f.last > to.of(f) {
			s.remove(i)
			s.expired++
			continue // a later entry may have shifted into i
		}
		i++
	}
}

// FlowInfo describes one flow, for replay output and diagnostics.
type FlowInfo struct {
	Src, Dst     netip.Addr // Src opened the flow
	Proto        uint8
	SPort, DPort uint16
	Decision     match.Decision
	Packets      uint64
	Bytes        uint64
	Denied       uint64
	First, Last  time.Time
}

func (f *flow) info() FlowInfo {
	a, b := netip.AddrFrom16(f.key.a).Unmap(), netip.AddrFrom16(f.key.b).Unmap()
	fi := FlowInfo{Src: a, Dst: b, SPort: f.key.pa, DPort: f.key.pb, Proto: f.key.proto,
		Decision: f.decided, Packets: f.pkts, Bytes: f.bytes, Denied: f.denied,
		First: time.Unix(0, f.first), Last: time.Unix(0, f.last)}
	if !f.initA {
		fi.Src, fi.Dst, fi.SPort, fi.DPort = fi.Dst, fi.Src, fi.DPort, fi.SPort
	}
	return fi
}
