package console

import "slices"

// maxHoles bounds the seqs a device's gap tracker remembers as missing
// (they may still arrive: a clustered broker redelivers out of order);
// beyond it the oldest is counted lost for good.
const maxHoles = 64

// telemetryGaps follows one device's telemetry sequence numbers within a
// boot. A device numbers its telemetry 1, 2, 3 … per boot and queues what
// it cannot send, so a seq that never arrives was lost on the way (or
// dropped by the device's full queue, which its telemetry also counts).
type telemetryGaps struct {
	boot  string
	max   uint64
	holes []uint64 // seqs below max not yet seen, ascending
	lost  uint64   // holes given up (more than maxHoles open)
	got   uint64   // distinct seqs received
	dup   uint64   // seqs received more than once, or of a boot gone by
	boots int      // boots seen
	past  []string // the boots before this one, newest last (a few)
}

// see records seq of boot.
func (g *telemetryGaps) see(boot string, seq uint64) {
	if boot != g.boot && slices.Contains(g.past, boot) {
		g.dup++ // a straggler of a boot gone by: it was counted lost
		return
	}
	if boot != g.boot {
		if g.boot != "" {
			g.past = append(g.past, g.boot)
			if len(g.past) > 4 {
				g.past = g.past[1:]
			}
		}
		// A new boot starts a new sequence. What the last boot left open
		// stays open: a straggler of it no longer counts, so it is lost.
		g.lost += uint64(len(g.holes))
		g.boot, g.max, g.holes = boot, 0, g.holes[:0]
		g.boots++
	}
	switch {
	case seq == 0:
		return
	case g.max == 0:
		// First heard of this boot: the console may have started after it,
		// so what came before is not counted missing.
		g.max, g.got = seq, g.got+1
	case seq > g.max:
		from := g.max + 1
		if seq-from > maxHoles {
			// A jump wider than the holes kept (a hostile seq may be
			// near 2^64): what cannot be remembered is lost at once.
			g.lost += uint64(len(g.holes)) + (seq - maxHoles - from)
			g.holes = g.holes[:0]
			from = seq - maxHoles
		}
		for s := from; s < seq; s++ {
			g.holes = append(g.holes, s)
			if len(g.holes) > maxHoles {
				g.holes = g.holes[1:]
				g.lost++
			}
		}
		g.max, g.got = seq, g.got+1
	default:
		if i, ok := slices.BinarySearch(g.holes, seq); ok {
			g.holes = slices.Delete(g.holes, i, i+1)
			g.got++
		} else {
			g.dup++
		}
	}
}

// missing is what has not arrived: open holes and those given up.
func (g *telemetryGaps) missing() uint64 { return g.lost + uint64(len(g.holes)) }

// TelemetryStats is the console's count of the fleet's telemetry.
type TelemetryStats struct {
	Received   uint64 `json:"received"`   // distinct (device, boot, seq)
	Missing    uint64 `json:"missing"`    // seqs skipped and not arrived since
	Duplicates uint64 `json:"duplicates"` // delivered again (QoS 1 redelivery), or late from a boot gone by
	Devices    int    `json:"devices"`
}

// Telemetry counts the telemetry received, missing and delivered twice,
// over every device heard since the console started.
func (c *Console) Telemetry() TelemetryStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s TelemetryStats
	for _, d := range c.devices {
		g := &d.gaps
		if g.boots == 0 {
			continue
		}
		s.Devices++
		s.Received += g.got
		s.Missing += g.missing()
		s.Duplicates += g.dup
	}
	return s
}
