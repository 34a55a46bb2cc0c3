package linkfilter

import (
	"math/rand/v2"
	"testing"
)

// TestShardAgainstMap drives one shard with random inserts, removals,
// evictions and sweeps and checks it against a map after every step.
func TestShardAgainstMap(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	to := Timeouts{}
	to.defaults()
	s := newShard(64, 99)
	model := map[flowKey]bool{}
	key := func() flowKey { return flowKey{pa: uint16(r.IntN(300)), proto: 17} }
	now := int64(1)
	for step := range 20000 {
		now += int64(r.IntN(int(2 * to.UDP / 64)))
		k := key()
		h := k.hash(s.seed)
		switch op := r.IntN(10); {
		case op < 6: // packet: find or insert
			if e := s.find(&k, h); e >= 0 {
				if !model[k] {
					t.Fatalf("step %d: found absent key", step)
				}
				s.ents[e].last = now
				break
			}
			if model[k] {
				t.Fatalf("step %d: lost a key", step)
			}
			e := s.insert(&k, h, now, &to)
			s.ents[e].last = now
		case op < 9: // remove a random live flow
			if len(s.ents) > 0 {
				s.remove(r.IntN(len(s.ents)))
			}
		default:
			s.sweep(now, &to)
		}
		// Resync the model: the shard may have evicted or expired flows.
		clear(model)
		for i := range s.ents {
			model[s.ents[i].key] = true
			if s.find(&s.ents[i].key, s.ents[i].key.hash(s.seed)) != i {
				t.Fatalf("step %d: flow %d unreachable", step, i)
			}
		}
		used := 0
		for _, v := range s.idx {
			if v != 0 {
				used++
			}
		}
		if used != len(s.ents) || len(s.ents) > s.limit || len(model) != len(s.ents) {
			t.Fatalf("step %d: %d index slots, %d flows (%d distinct), limit %d", step, used, len(s.ents), len(model), s.limit)
		}
	}
}
