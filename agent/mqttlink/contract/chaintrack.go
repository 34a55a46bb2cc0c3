package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"sync"
)

// ChainTracker decides, per device, which events the device's signature
// vouches for, as they arrive. A device signs some events (at most a few a
// second; the rest within a moment by a signed chain.checkpoint event), and
// a signed event vouches for every event before it that it reaches through
// unbroken prev hashes. So an unsigned event waits here until a signed
// successor reaches it; one that a signed successor contradicts is
// rejected. Events may arrive out of order and twice (QoS 1). Memory is
// bounded per device and in devices. Safe for concurrent use.
type ChainTracker struct {
	// MaxPending bounds the unsigned events waiting per device (default
	// 1024); the oldest is rejected beyond it.
	MaxPending int

	mu   sync.Mutex
	devs map[string]*devChain
}

// TrackedEvent is an event with the exact bytes it came in.
type TrackedEvent struct {
	Raw   []byte
	Event Event
}

type devChain struct {
	pending map[uint64][]TrackedEvent // unsigned, not yet vouched for: the candidates for each seq
	need    map[uint64]string         // seq -> the hash a vouched successor says it has
	done    map[uint64]string         // recently vouched: seq -> hash, to drop redeliveries
	doneMax uint64
}

const (
	defaultMaxPending = 1024
	maxTrackedDevices = 1 << 17
	doneWindow        = 4096
	maxCandidates     = 4 // unsigned events claiming one seq
)

// Outcome is what one Add decided.
type Outcome struct {
	Verified  []TrackedEvent // now vouched for, oldest first (the added event among them if so)
	Rejected  []TrackedEvent // contradicted by a signed successor, or pushed out unvouched
	Duplicate bool           // an identical copy of an event already vouched for
}

// Add takes one event of dev (whose topic, payload and, when signed,
// certificate were already checked to name dev); signed says its own
// signature verified.
func (t *ChainTracker) Add(dev string, raw []byte, ev Event, signed bool) Outcome {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.devs == nil || len(t.devs) >= maxTrackedDevices && t.devs[dev] == nil {
		t.devs = map[string]*devChain{}
	}
	d := t.devs[dev]
	if d == nil {
		d = &devChain{pending: map[uint64][]TrackedEvent{}, need: map[uint64]string{}, done: map[uint64]string{}}
		t.devs[dev] = d
	}
	h := hashHex(raw)
	if d.done[ev.Seq] == h {
		return Outcome{Duplicate: true}
	}
	te := TrackedEvent{Raw: raw, Event: ev}
	var out Outcome
	if !signed {
		want, ok := d.need[ev.Seq]
		if !ok {
			// Several candidates may claim a seq (a forger beside the
			// device); the signed successor picks, so none displaces
			// another.
			cands := d.pending[ev.Seq]
			for _, p := range cands {
				if hashHex(p.Raw) == h {
					return Outcome{Duplicate: true}
				}
			}
			if len(cands) >= maxCandidates {
				out.Rejected = append(out.Rejected, te)
				return out
			}
			d.pending[ev.Seq] = append(cands, te)
			t.bound(d, &out)
			return out
		}
		if want != h {
			out.Rejected = append(out.Rejected, te)
			return out
		}
		delete(d.need, ev.Seq)
	}
	for _, p := range d.pending[ev.Seq] {
		if hashHex(p.Raw) != h {
			out.Rejected = append(out.Rejected, p)
		}
	}
	delete(d.pending, ev.Seq)
	out.Verified = append(out.Verified, te)
	d.vouch(ev.Seq, h)
	// Walk back through the waiting events this one reaches.
	seq, prev := ev.Seq-1, ev.Prev
	for seq > 0 && prev != Genesis {
		if d.done[seq] == prev {
			break
		}
		cands := d.pending[seq]
		delete(d.pending, seq)
		var p *TrackedEvent
		for i := range cands {
			if hashHex(cands[i].Raw) == prev {
				p = &cands[i]
			} else {
				out.Rejected = append(out.Rejected, cands[i])
			}
		}
		if p == nil {
			d.need[seq] = prev
			break
		}
		out.Verified = append(out.Verified, *p)
		d.vouch(seq, prev)
		seq, prev = seq-1, p.Event.Prev
	}
	sort.Slice(out.Verified, func(i, j int) bool { return out.Verified[i].Event.Seq < out.Verified[j].Event.Seq })
	t.bound(d, &out)
	return out
}

// Pending is how many of dev's events wait to be vouched for.
func (t *ChainTracker) Pending(dev string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d := t.devs[dev]; d != nil {
		n := 0
		for _, c := range d.pending {
			n += len(c)
		}
		return n
	}
	return 0
}

func (d *devChain) vouch(seq uint64, h string) {
	d.done[seq] = h
	if seq > d.doneMax {
		d.doneMax = seq
	}
	if len(d.done) > doneWindow {
		for s := range d.done {
			if s+doneWindow < d.doneMax {
				delete(d.done, s)
			}
		}
	}
}

// bound rejects the oldest waiting events and forgets the oldest needs
// beyond MaxPending.
func (t *ChainTracker) bound(d *devChain, out *Outcome) {
	limit := t.MaxPending
	if limit <= 0 {
		limit = defaultMaxPending
	}
	for len(d.pending) > limit {
		low := lowest(d.pending)
		out.Rejected = append(out.Rejected, d.pending[low]...)
		delete(d.pending, low)
	}
	for len(d.need) > limit {
		delete(d.need, lowest(d.need))
	}
}

func lowest[V any](m map[uint64]V) uint64 {
	first, low := true, uint64(0)
	for s := range m {
		if first || s < low {
			first, low = false, s
		}
	}
	return low
}

func hashHex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
