package console

import (
	"errors"
	"sync"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
)

// Unverified is a report the console refused to believe: not sealed by the
// device its topic names (contract.ReportVerifier), or an event its
// device's signed chain contradicts. It is shown as such and never merged
// into that device's state or history.
type Unverified struct {
	At      time.Time `json:"at"`
	Topic   string    `json:"topic"`
	Device  string    `json:"device"`            // the topic's
	Claimed string    `json:"claimed,omitempty"` // the payload's, when it names another
	Kind    string    `json:"kind"`
	Reason  string    `json:"reason"`
}

// maxUnverified bounds the refused reports kept for display.
const maxUnverified = 500

// gate decides which reports the console believes. Without a fleet CA
// (Options.FleetCA nil) it believes every report whose payload names its
// topic's device, and the console says its devices are unverified.
type gate struct {
	verifier *contract.ReportVerifier // nil: no fleet CA
	chains   contract.ChainTracker

	mu      sync.Mutex
	refused []Unverified // newest last, bounded
	total   uint64
}

func newGate(opt Options) *gate {
	g := &gate{}
	if opt.FleetCA != nil {
		g.verifier = &contract.ReportVerifier{Roots: opt.FleetCA, Revoked: opt.Revoked, Now: opt.Now}
	}
	return g
}

// admit judges a state, telemetry or result report of dev. verified says a
// fleet CA vouched for it.
func (g *gate) admit(now time.Time, topic, dev, kind string, payload []byte) (ok, verified bool) {
	if g.verifier == nil {
		return true, false
	}
	if _, err := g.verifier.Verify(kind, dev, payload); err != nil {
		g.refuse(Unverified{At: now, Topic: topic, Device: dev, Kind: kind, Reason: contract.ReasonOf(err)})
		return false, false
	}
	return true, true
}

// admitEvent takes an event of dev (its payload names dev) and returns the
// events now believed, oldest first: with a fleet CA, those its device's
// signature vouches for, which may include earlier events that waited for
// this one; without, the event itself.
func (g *gate) admitEvent(now time.Time, topic, dev string, payload []byte, ev contract.Event) []contract.Event {
	if g.verifier == nil {
		return []contract.Event{ev}
	}
	_, err := g.verifier.Verify(contract.KindEvents, dev, payload)
	if err != nil && !errors.Is(err, contract.ErrUnsigned) {
		g.refuse(Unverified{At: now, Topic: topic, Device: dev, Kind: contract.KindEvents, Reason: contract.ReasonOf(err)})
		return nil
	}
	out := g.chains.Add(dev, append([]byte(nil), payload...), ev, err == nil)
	for range out.Rejected {
		g.refuse(Unverified{At: now, Topic: topic, Device: dev, Kind: contract.KindEvents,
			Reason: "not vouched for by the device's signed chain"})
	}
	evs := make([]contract.Event, len(out.Verified))
	for i, v := range out.Verified {
		evs[i] = v.Event
	}
	return evs
}

func (g *gate) refuse(u Unverified) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total++
	g.refused = append(g.refused, u)
	if n := len(g.refused); n > maxUnverified {
		g.refused = append(g.refused[:0:0], g.refused[n-maxUnverified:]...)
	}
}

// Unverified lists the newest reports refused (newest first) and how many
// were refused in all.
func (c *Console) Unverified() ([]Unverified, uint64) {
	g := c.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Unverified, len(g.refused))
	for i, u := range g.refused {
		out[len(out)-1-i] = u
	}
	return out, g.total
}

// Verifying says whether reports are checked against a fleet CA.
func (c *Console) Verifying() bool { return c.gate.verifier != nil }
