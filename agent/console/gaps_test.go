package console

import "testing"

// TestTelemetryGaps: a console that counts what a device numbered knows
// what was lost, forgives reordering and redelivery (a clustered broker
// does both), and starts afresh at a new boot.
func TestTelemetryGaps(t *testing.T) {
	var g telemetryGaps
	steps := []struct {
		boot            string
		seq             uint64
		got, miss, dups uint64
	}{
		{"b1", 5, 1, 0, 0}, // joined mid-boot: 1-4 are not missing
		{"b1", 6, 2, 0, 0},
		{"b1", 9, 3, 2, 0},  // 7, 8 open
		{"b1", 8, 4, 1, 0},  // late, out of order
		{"b1", 8, 4, 1, 1},  // redelivered
		{"b1", 10, 5, 1, 0}, // dups counted once only above
		{"b2", 1, 6, 1, 0},  // new boot: 7 of b1 is lost for good
		{"b1", 7, 6, 1, 1},  // a straggler of the old boot does not fill it
		{"b2", 2, 7, 1, 0},
	}
	var dups uint64
	for i, s := range steps {
		g.see(s.boot, s.seq)
		dups += s.dups
		if g.got != s.got || g.missing() != s.miss || g.dup != dups {
			t.Fatalf("step %d (%s/%d): got %d missing %d dup %d, want %d %d %d", i, s.boot, s.seq, g.got, g.missing(), g.dup, s.got, s.miss, dups)
		}
	}
	// A burst far ahead is bounded: at most maxHoles are remembered, the
	// rest counted lost at once.
	g.see("b3", 1)
	g.see("b3", 1000)
	if len(g.holes) != maxHoles || g.missing() != 1+998 {
		t.Fatalf("after a gap of 998: %d holes, %d missing", len(g.holes), g.missing())
	}
}

// TestTelemetryGapsHostileSeq: a seq near 2^64 costs no more than a small
// jump (no loop over the gap) and is counted once.
func TestTelemetryGapsHostileSeq(t *testing.T) {
	var g telemetryGaps
	g.see("b", 1)
	g.see("b", 1<<63)
	g.see("b", ^uint64(0))
	if len(g.holes) != maxHoles || g.missing() != ^uint64(0)-3 || g.got != 3 {
		t.Fatalf("%d holes, %d missing, %d received", len(g.holes), g.missing(), g.got)
	}
}
