package linkfilter

import (
	"sync"

	"linkguard.dev/linkguard/policy/match"
)

// fragTable remembers, per fragmented datagram, the verdict its first
// fragment got, so later fragments (which carry no ports) follow their
// flow. Fixed size, overwritten in place: bounded whatever arrives.
type fragTable struct {
	mu      sync.Mutex
	entries [fragSlots]fragEntry
}

const (
	fragSlots = 4096
	fragTTL   = int64(30e9) // reassembly time of RFC 791/8200 hosts
)

type fragEntry struct {
	src, dst [16]byte
	id       uint32
	proto    uint8
	at       int64
	gen      uint64
	d        match.Decision
}

func fragHash(src, dst *[16]byte, id uint32, proto uint8) uint32 {
	h := uint32(2166136261)
	for _, b := range src {
		h = (h ^ uint32(b)) * 16777619
	}
	for _, b := range dst {
		h = (h ^ uint32(b)) * 16777619
	}
	h = (h ^ id) * 16777619
	h = (h ^ uint32(proto)) * 16777619
	return h % fragSlots
}

func (t *fragTable) store(p *Packet, d match.Decision, gen uint64, now int64) {
	s, ds := p.Src.As16(), p.Dst.As16()
	i := fragHash(&s, &ds, p.FragID, p.Proto)
	t.mu.Lock()
	t.entries[i] = fragEntry{src: s, dst: ds, id: p.FragID, proto: p.Proto, at: now, gen: gen, d: d}
	t.mu.Unlock()
}

// lookup finds the verdict of p's datagram, if decided under policy
// generation gen (a swap since then makes later fragments unknown).
func (t *fragTable) lookup(p *Packet, gen uint64, now int64) (match.Decision, bool) {
	s, ds := p.Src.As16(), p.Dst.As16()
	i := fragHash(&s, &ds, p.FragID, p.Proto)
	t.mu.Lock()
	defer t.mu.Unlock()
	e := &t.entries[i]
	if e.at == 0 || e.src != s || e.dst != ds || e.id != p.FragID || e.proto != p.Proto || e.gen != gen || now-e.at > fragTTL {
		return match.Decision{}, false
	}
	return e.d, true
}
