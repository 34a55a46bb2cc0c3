package feeds_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/feeds"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/hal/meter"
	"linkguard.dev/linkguard/hal/relay/relaytest"
	"periph.io/x/conn/v3/physic"
)

// plant is a feed in memory: fake relays with readback, and a meter whose
// reading is the sum of the loads that are on, plus noise, on a fake clock.
type plant struct {
	now    time.Time
	rng    *rand.Rand
	base   physic.Power
	noise  physic.Power
	ids    []string
	loads  map[string]physic.Power
	relays map[string]*relaytest.Relay
	events *recorder
	ctl    *feeds.Controller
	spec   feeds.Spec
}

type circuitDef struct {
	id        string
	load      physic.Power
	prio      int
	protected bool
}

var defaultCircuits = []circuitDef{
	{"c1", 3 * physic.KiloWatt, 1, false},
	{"c2", 2 * physic.KiloWatt, 2, false},
	{"c3", 4 * physic.KiloWatt, 3, false},
	{"hospital", 5 * physic.KiloWatt, 0, true},
}

func newPlant(t testing.TB, seed uint64, stateDir string, defs []circuitDef, tune func(*feeds.Spec)) *plant {
	t.Helper()
	p := &plant{now: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC), rng: rand.New(rand.NewPCG(seed, 1)),
		base: physic.KiloWatt, noise: 100 * physic.Watt, loads: map[string]physic.Power{},
		relays: map[string]*relaytest.Relay{}, events: &recorder{}}
	spec := feeds.Spec{ID: "tachileik-1", Meter: nil, MinOn: 60 * time.Second, MinOff: 120 * time.Second,
		MaxOpsPerHour: 12, StaleAfter: 10 * time.Second, SafeState: feeds.Restore, Hysteresis: physic.KiloWatt,
		Confirm: 3 * time.Second, Period: time.Second, ReadbackEvery: 10 * time.Second}
	for _, d := range defs {
		r := relaytest.New(true, p.clock)
		r.Dwell = 20 * time.Millisecond
		p.ids = append(p.ids, d.id)
		p.relays[d.id], p.loads[d.id] = r, d.load
		spec.Circuits = append(spec.Circuits, feeds.CircuitSpec{ID: d.id, Relay: r, Priority: d.prio, Protected: d.protected})
	}
	spec.Meter = p
	if tune != nil {
		tune(&spec)
	}
	p.spec = spec
	p.ctl = p.controller(t, stateDir)
	// Without saved state the controller starts every dwell clock at its
	// start (it cannot know when a relay last moved): let them run out.
	for range int(max(spec.MinOn, spec.MinOff)/spec.Period) + 1 {
		p.tick()
	}
	p.events.reset()
	return p
}

func (p *plant) controller(t testing.TB, stateDir string) *feeds.Controller {
	t.Helper()
	ctl, err := feeds.New(feeds.Options{Feeds: []feeds.Spec{p.spec}, StateDir: stateDir, Events: p.events,
		Now: p.clock, Rand: rand.New(rand.NewPCG(9, 9))})
	if err != nil {
		t.Fatal(err)
	}
	return ctl
}

func (p *plant) clock() time.Time { return p.now }

// Read is the plant's meter.
func (p *plant) Read(context.Context) (meter.Snapshot, error) { return p.snapshot(), nil }

func (p *plant) power() physic.Power {
	total := p.base
	for id, r := range p.relays {
		if r.On() {
			total += p.loads[id]
		}
	}
	return total
}

func (p *plant) snapshot() meter.Snapshot {
	n := physic.Power((p.rng.Float64()*2 - 1) * float64(p.noise))
	return meter.Snapshot{Time: p.now, Quality: meter.Good, NPhases: 1, Power: p.power() + n}
}

// step advances the clock by d and runs one control period on snap.
func (p *plant) step(d time.Duration, snap meter.Snapshot) {
	p.now = p.now.Add(d)
	if !snap.Time.IsZero() && snap.Quality == meter.Good && snap.Time.Before(p.now.Add(-time.Hour)) {
		snap.Time = p.now
	}
	p.ctl.Step(context.Background(), p.spec.ID, snap)
}

// tick advances one period with a fresh good reading.
func (p *plant) tick() {
	p.now = p.now.Add(p.spec.Period)
	p.ctl.Step(context.Background(), p.spec.ID, p.snapshot())
}

func (p *plant) telemetry() feeds.FeedTelemetry { return p.ctl.Telemetry()[0] }

// recorder counts events by type.
type recorder struct {
	mu sync.Mutex
	ev []string
	f  []report.Fields
}

func (r *recorder) Emit(typ string, _ report.Severity, f report.Fields) {
	r.mu.Lock()
	r.ev, r.f = append(r.ev, typ), append(r.f, f)
	r.mu.Unlock()
}

func (r *recorder) count(typ string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.ev {
		if e == typ {
			n++
		}
	}
	return n
}

func (r *recorder) reset() { r.mu.Lock(); r.ev, r.f = nil, nil; r.mu.Unlock() }

func kw(v float64) physic.Power { return physic.Power(v * float64(physic.KiloWatt)) }
