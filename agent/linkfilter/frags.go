package linkfilter

import (
	"encoding/binary"
	"sync"

	"linkguard.dev/linkguard/agent/linkfilter/packet"
)

// fragTable remembers, per fragmented datagram, the verdict its first
// fragment got, so later fragments (which carry no ports) follow their
// flow, and the byte ranges seen, so an overlapping fragment drops the
// whole datagram (RFC 5722; the same for IPv4, whose overlaps are the
// classic way to rewrite a judged header). Fixed size, keyed by a seeded
// hash, overwritten in place: bounded whatever arrives.
type fragTable struct {
	mu      sync.Mutex
	seed    uint64
	entries [fragSlots]fragEntry
}

const (
	fragSlots = 4096
	fragTTL   = int64(60e9) // reassembly time of RFC 8200 hosts (longer than RFC 791's)
	// fragRanges bounds the disjoint byte ranges kept per datagram;
	// fragments in order coalesce into one. A datagram scattered into
	// more pieces than this is dropped.
	fragRanges = 8
)

type fragEntry struct {
	src, dst [16]byte
	id       uint32
	proto    uint8
	layer    uint8
	dropped  bool // an overlap was seen: every later fragment drops
	nr       uint8
	at       int64
	gen      uint64
	r        Result
	ranges   [fragRanges][2]uint32
}

func newFragTable(seed uint64) *fragTable { return &fragTable{seed: mix64(seed ^ 0x66726167)} }

func (t *fragTable) slot(l *packet.Layer, layer int) (*fragEntry, [16]byte, [16]byte) {
	s, d := l.Src.As16(), l.Dst.As16()
	h := t.seed ^ uint64(l.FragID) ^ uint64(l.Proto)<<32 ^ uint64(layer)<<40
	h = mix64(h ^ binary.LittleEndian.Uint64(s[:8]))
	h = mix64(h ^ binary.LittleEndian.Uint64(s[8:]))
	h = mix64(h ^ binary.LittleEndian.Uint64(d[:8]))
	h = mix64(h ^ binary.LittleEndian.Uint64(d[8:]))
	return &t.entries[h%fragSlots], s, d
}

func (e *fragEntry) is(s, d *[16]byte, l *packet.Layer, layer int, now int64) bool {
	return e.at != 0 && now-e.at <= fragTTL && e.src == *s && e.dst == *d && e.id == l.FragID && e.proto == l.Proto && e.layer == uint8(layer)
}

// first records a datagram's first fragment and the verdict it got. It
// reports an overlap when the datagram already has a first fragment.
func (t *fragTable) first(l *packet.Layer, layer int, r Result, gen uint64, now int64) bool {
	e, s, d := t.slot(l, layer)
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.is(&s, &d, l, layer, now) && e.gen == gen {
		e.dropped = true
		return true
	}
	*e = fragEntry{src: s, dst: d, id: l.FragID, proto: l.Proto, layer: uint8(layer), at: now, gen: gen, r: r, nr: 1}
	e.ranges[0] = [2]uint32{0, l.FragEnd}
	return false
}

// poison marks a datagram dropped: a fragment of it broke a rule the
// decoder enforces (a tiny first fragment, a later one reaching into the
// transport header), so no later fragment of it may pass.
func (t *fragTable) poison(l *packet.Layer, layer int, gen uint64, now int64) {
	e, s, d := t.slot(l, layer)
	t.mu.Lock()
	defer t.mu.Unlock()
	if !e.is(&s, &d, l, layer, now) || e.gen != gen {
		*e = fragEntry{src: s, dst: d, id: l.FragID, proto: l.Proto, layer: uint8(layer), at: now, gen: gen}
	}
	e.dropped = true
}

type fragState uint8

const (
	fragUnknown fragState = iota // no first fragment seen (or under an older policy)
	fragKnown
	fragOverlap
)

// later judges a later fragment: its datagram's verdict, unless it
// overlaps what was seen (then the datagram is dropped from here on).
func (t *fragTable) later(l *packet.Layer, layer int, gen uint64, now int64) (Result, fragState) {
	e, s, d := t.slot(l, layer)
	t.mu.Lock()
	defer t.mu.Unlock()
	if !e.is(&s, &d, l, layer, now) || e.gen != gen {
		return Result{}, fragUnknown
	}
	if e.dropped {
		return Result{}, fragOverlap
	}
	lo, hi := l.FragOff, l.FragEnd
	for i := range e.nr {
		if r := e.ranges[i]; lo < r[1] && hi > r[0] {
			e.dropped = true
			return Result{}, fragOverlap
		}
	}
	// Coalesce with an adjacent range, else add one.
	merged := false
	for i := range e.nr {
		r := &e.ranges[i]
		if r[1] == lo {
			r[1], merged = hi, true
			break
		}
		if r[0] == hi {
			r[0], merged = lo, true
			break
		}
	}
	if !merged {
		if e.nr == fragRanges {
			e.dropped = true
			return Result{}, fragOverlap
		}
		e.ranges[e.nr] = [2]uint32{lo, hi}
		e.nr++
	}
	r := e.r
	r.NewFlow, r.keep = false, false
	return r, fragKnown
}
