package feeds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sort"
	"time"

	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/hal/meter"
	"linkguard.dev/linkguard/hal/relay"
	"periph.io/x/conn/v3/physic"
)

// SafeState is what a feed does on start without state, or when its meter
// is lost: restore the shed circuits, or hold them as they are.
type SafeState uint8

const (
	Restore SafeState = iota
	Hold
)

// CircuitSpec describes one circuit.
type CircuitSpec struct {
	ID        string
	Relay     relay.Relay
	Priority  int // higher: shed last, restored first
	Protected bool
}

// Spec describes one feed.
type Spec struct {
	ID            string
	Meter         meter.Reader
	Circuits      []CircuitSpec
	MinOn, MinOff time.Duration
	MaxOpsPerHour int
	StaleAfter    time.Duration
	SafeState     SafeState
	Hysteresis    physic.Power
	Confirm       time.Duration // power must stay over (or under) this long
	Period        time.Duration // control period
	StartJitter   time.Duration // randomised start offset of caps, [0, StartJitter)
	ReadbackEvery time.Duration // relay readback period; 0 means 30 s
	OverrideFile  string        // local technician override; "" for none
}

// Circuit modes.
const (
	modeAuto = iota
	modeManualOn
	modeManualOff
)

var modeNames = [...]string{"auto", StateOn, StateOff}

type circuit struct {
	spec CircuitSpec

	on         bool      // the state we believe the relay is in (commanded, or read back)
	lastSwitch time.Time // our last operation (dwell reference)
	ops        []time.Time
	mode       int
	tech       int  // technician override: modeAuto (none), modeManualOn, modeManualOff
	drift      bool // the relay was found in the wrong state; want is where it belongs
	want       bool
	readErr    bool
	load       physic.Power // learned draw, from the step when it was shed or restored
	// pending learning: power before our last switch, learned at the next good reading
	learnFrom  physic.Power
	learnArmed bool
}

// feed is the controller of one feed. All fields are guarded by mu.
type feed struct {
	spec   Spec
	c      *Controller
	log    *slog.Logger
	byPrio []*circuit // switchable circuits, lowest priority first
	all    []*circuit

	order      *activeOrder
	started    time.Time
	lastGood   meter.Snapshot
	goodAt     time.Time
	meterLost  bool
	overSince  time.Time
	underSince time.Time
	unmet      string // reason while the cap is unmet
	lastRead   time.Time
	booted     bool
	overrides  overrideWatch
	override   *Override
	dirty      bool
}

func newFeed(c *Controller, s Spec) (*feed, error) {
	if s.ReadbackEvery <= 0 {
		s.ReadbackEvery = 30 * time.Second
	}
	if s.Period <= 0 || s.StaleAfter <= 0 || s.MaxOpsPerHour < 1 || s.Meter == nil {
		return nil, fmt.Errorf("feeds: %s: period, stale_after, max_ops_per_hour and a meter are required", s.ID)
	}
	f := &feed{spec: s, c: c, log: c.log.With("feed", s.ID), overrides: overrideWatch{path: s.OverrideFile}}
	seen := map[string]bool{}
	for _, cs := range s.Circuits {
		if seen[cs.ID] || cs.Relay == nil {
			return nil, fmt.Errorf("feeds: %s: circuit %q duplicated or without relay", s.ID, cs.ID)
		}
		seen[cs.ID] = true
		ci := &circuit{spec: cs, on: true, ops: make([]time.Time, 0, s.MaxOpsPerHour+1)}
		f.all = append(f.all, ci)
		if !cs.Protected {
			f.byPrio = append(f.byPrio, ci)
		}
	}
	sort.SliceStable(f.byPrio, func(i, j int) bool { return f.byPrio[i].spec.Priority < f.byPrio[j].spec.Priority })
	return f, nil
}

func (f *feed) circuit(id string) *circuit {
	for _, ci := range f.all {
		if ci.spec.ID == id {
			return ci
		}
	}
	return nil
}

// restore loads persisted state; without it, circuits take their read-back
// state and the dwell clock starts now (we cannot know when they last moved).
func (f *feed) restore(ctx context.Context, now time.Time) {
	f.started = now
	p, err := (*persisted)(nil), error(nil)
	if f.c.stateDir != "" {
		p, err = loadState(f.c.stateDir, f.spec.ID)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			f.log.Error("feed state unusable: starting from readback", "err", err)
			f.emit(now, EventStateRestored, report.Warning, report.Fields{"ok": false, "error": err.Error()})
		}
	}
	for _, ci := range f.all {
		ci.lastSwitch = now
		if on, err := ci.spec.Relay.Get(ctx); err == nil {
			ci.on = on
		}
		if p == nil {
			continue
		}
		pc, ok := p.Circuits[ci.spec.ID]
		if !ok {
			continue
		}
		ci.on, ci.lastSwitch, ci.load = pc.On, pc.LastSwitch, physic.Power(pc.LoadW*float64(physic.Watt))
		ci.ops = append(ci.ops[:0], pc.Ops...)
		for i, n := range modeNames {
			if n == pc.Mode {
				ci.mode = i
			}
		}
		if ci.spec.Protected {
			ci.mode = modeAuto
		}
	}
	for _, ci := range f.all {
		ci.want = ci.on
	}
	if p != nil {
		f.order = p.Order
		f.emit(now, EventStateRestored, report.Info, report.Fields{"ok": true, "saved": p.Saved, "order": p.Order != nil})
	}
	f.booted = true
}

func (f *feed) persist(now time.Time) {
	if f.c.stateDir == "" {
		return
	}
	p := &persisted{Version: 1, Saved: now, Order: f.order, Circuits: map[string]persistedCircuit{}}
	for _, ci := range f.all {
		p.Circuits[ci.spec.ID] = persistedCircuit{On: ci.on, Mode: modeNames[ci.mode], LastSwitch: ci.lastSwitch,
			Ops: ci.ops, LoadW: float64(ci.load) / float64(physic.Watt)}
	}
	if err := saveState(f.c.stateDir, f.spec.ID, p); err != nil {
		f.log.Error("cannot persist feed state", "err", err)
	}
}

// opsInHour drops operations older than an hour and returns the rest's count.
func (ci *circuit) opsInHour(now time.Time) int {
	n := 0
	for _, t := range ci.ops {
		if now.Sub(t) < time.Hour {
			ci.ops[n] = t
			n++
		}
	}
	ci.ops = ci.ops[:n]
	return n
}

// Interlock reasons (constant strings, shared by events and errors).
const (
	whyMinOn   = "min_on"
	whyMinOff  = "min_off"
	whyMaxOps  = "max_ops_per_hour"
	whyNoState = ""
)

// blocked returns why switching ci to on is not allowed now, or "".
func (f *feed) blocked(ci *circuit, on bool, now time.Time) string {
	if ci.on == on {
		return whyNoState
	}
	if ci.opsInHour(now) >= f.spec.MaxOpsPerHour {
		return whyMaxOps
	}
	if !ci.lastSwitch.IsZero() {
		if on && now.Sub(ci.lastSwitch) < f.spec.MinOff {
			return whyMinOff
		}
		if !on && now.Sub(ci.lastSwitch) < f.spec.MinOn {
			return whyMinOn
		}
	}
	return whyNoState
}

// nextAllowed returns when ci may next change state.
func (f *feed) nextAllowed(ci *circuit, now time.Time) time.Time {
	t := ci.lastSwitch.Add(f.spec.MinOn)
	if !ci.on {
		t = ci.lastSwitch.Add(f.spec.MinOff)
	}
	if n := ci.opsInHour(now); n >= f.spec.MaxOpsPerHour {
		if u := ci.ops[n-f.spec.MaxOpsPerHour].Add(time.Hour); u.After(t) {
			t = u
		}
	}
	if t.Before(now) {
		return now
	}
	return t
}

// switchTo operates ci's relay if the dwell rules allow. It is the only
// place a relay is switched.
func (f *feed) switchTo(ctx context.Context, ci *circuit, on bool, now time.Time, by string, power physic.Power, havePower bool) error {
	if ci.on == on {
		return nil
	}
	if why := f.blocked(ci, on, now); why != whyNoState {
		return fmt.Errorf("feeds: %s/%s: %s: %w", f.spec.ID, ci.spec.ID, why, ErrInterlock)
	}
	if err := ci.spec.Relay.Set(ctx, on); err != nil {
		f.emit(now, EventRelayError, report.Warning, report.Fields{"circuit": ci.spec.ID, "on": on, "error": err.Error()})
		return fmt.Errorf("feeds: %s/%s: %w", f.spec.ID, ci.spec.ID, err)
	}
	ci.on, ci.want, ci.lastSwitch = on, on, now
	ci.ops = append(ci.ops, now)
	ci.learnFrom, ci.learnArmed = power, havePower && by == "controller"
	fields := report.Fields{"circuit": ci.spec.ID, "on": on, "by": by}
	if havePower {
		fields["power_kw"] = kw(power)
	}
	f.emit(now, EventRelaySwitched, report.Info, fields)
	f.dirty = true
	return nil
}

func kw(p physic.Power) float64 { return float64(p) / float64(physic.KiloWatt) }

func fromKW(v float64) physic.Power { return physic.Power(v * float64(physic.KiloWatt)) }

// capAt returns the effective cap at now and whether one applies.
func (f *feed) capAt(now time.Time, power physic.Power, havePower bool) (physic.Power, bool) {
	o := f.order
	if o == nil {
		return 0, false
	}
	if !o.Until.IsZero() && !now.Before(o.Until) {
		f.order = nil
		f.dirty = true
		f.emit(now, EventThrottleChanged, report.Info, report.Fields{"change": ChangeCleared, "why": "until reached"})
		return 0, false
	}
	if now.Before(o.Start) {
		return 0, false
	}
	if !o.Started {
		o.Started = true
		o.Baseline = o.CapKW
		if havePower {
			o.Baseline = kw(power)
		}
		f.dirty = true
		f.emit(now, EventThrottleChanged, report.Info, report.Fields{"change": ChangeActive, "cap_kw": o.CapKW, "baseline_kw": o.Baseline, "offset": time.Duration(o.Offset).String()})
	}
	return f.effectiveCap(now)
}

// effectiveCap is the cap of a started order at now, ramp applied.
func (f *feed) effectiveCap(now time.Time) (physic.Power, bool) {
	o := f.order
	capW := fromKW(o.CapKW)
	ramp := time.Duration(o.Ramp)
	if el := now.Sub(o.Start); ramp > 0 && el < ramp && o.Baseline > o.CapKW {
		base := fromKW(o.Baseline)
		return base - physic.Power(float64(base-capW)*float64(el)/float64(ramp)), true
	}
	return capW, true
}

// step is one control period: snap is the latest meter reading (any quality).
// It allocates nothing when no relay moves and no event fires.
func (f *feed) step(ctx context.Context, now time.Time, snap meter.Snapshot) {
	if !f.booted {
		f.restore(ctx, now)
	}
	good := snap.Usable(now, f.spec.StaleAfter)
	if good {
		f.lastGood, f.goodAt = snap, now
		if f.meterLost {
			f.meterLost = false
			f.emit(now, EventMeterOK, report.Info, report.Fields{"power_kw": kw(snap.Power)})
		}
		f.learn(snap.Power)
	} else {
		ref := f.goodAt
		if ref.IsZero() {
			ref = f.started
		}
		if !f.meterLost && now.Sub(ref) > f.spec.StaleAfter {
			f.meterLost = true
			f.emit(now, EventMeterStale, report.Warning, report.Fields{"last_good": f.goodAt, "safe_state": safeNames[f.spec.SafeState]})
		}
	}
	if now.Sub(f.lastRead) >= f.spec.ReadbackEvery {
		f.lastRead = now
		f.readback(ctx, now)
	}
	f.reassert(ctx, now, snap.Power, good)
	f.applyPinned(ctx, now, snap.Power, good)

	capW, active := f.capAt(now, snap.Power, good)
	switch {
	case f.override != nil && f.override.Hold:
		f.overSince, f.underSince = time.Time{}, time.Time{}
	case f.meterLost:
		f.overSince, f.underSince = time.Time{}, time.Time{}
		if f.spec.SafeState == Restore {
			f.restoreOne(ctx, now, 0, false, "safe_state")
		}
	case !good:
		// Unknown power: no decisions on bad data, and confirmation restarts.
		f.overSince, f.underSince = time.Time{}, time.Time{}
	case !active:
		f.overSince, f.underSince = time.Time{}, time.Time{}
		f.setUnmet(now, "", snap.Power, capW)
		f.restoreOne(ctx, now, snap.Power, true, "controller")
	default:
		f.regulate(ctx, now, snap.Power, capW)
	}
	if f.dirty {
		f.dirty = false
		f.persist(now)
	}
}

var safeNames = [...]string{"restore", "hold"}

// learn records the draw of the circuit switched last, from the first good
// reading after the switch.
func (f *feed) learn(p physic.Power) {
	for _, ci := range f.byPrio {
		if !ci.learnArmed {
			continue
		}
		ci.learnArmed = false
		d := ci.learnFrom - p
		if ci.on {
			d = -d
		}
		if d > 0 {
			ci.load = d
			f.dirty = true
		}
	}
}

func (f *feed) regulate(ctx context.Context, now time.Time, p, capW physic.Power) {
	switch {
	case p > capW:
		f.underSince = time.Time{}
		if f.overSince.IsZero() {
			f.overSince = now
		}
		if now.Sub(f.overSince) < f.spec.Confirm {
			return
		}
		why := "nothing left to shed"
		for _, ci := range f.byPrio { // lowest priority first
			if !ci.on || ci.drift || ci.mode != modeAuto || ci.tech != modeAuto {
				continue
			}
			if b := f.blocked(ci, false, now); b != whyNoState {
				why = "dwell: " + b
				continue
			}
			if err := f.switchTo(ctx, ci, false, now, "controller", p, true); err == nil {
				f.overSince = time.Time{} // wait for the effect before shedding more
				return
			}
			why = "relay error"
		}
		f.setUnmet(now, why, p, capW)
	case p < capW-f.spec.Hysteresis:
		f.overSince = time.Time{}
		f.setUnmet(now, "", p, capW)
		if f.underSince.IsZero() {
			f.underSince = now
		}
		if now.Sub(f.underSince) < f.spec.Confirm {
			return
		}
		if f.restoreOne(ctx, now, p, true, "controller") {
			f.underSince = time.Time{}
		}
	default:
		f.overSince, f.underSince = time.Time{}, time.Time{}
		f.setUnmet(now, "", p, capW)
	}
}

// restoreOne restores the highest-priority shed circuit if its dwell allows
// and, under a cap, its learned load fits below cap - hysteresis. It never
// skips to a lower priority: that would invert priorities and oscillate.
func (f *feed) restoreOne(ctx context.Context, now time.Time, p physic.Power, havePower bool, by string) bool {
	capW, active := physic.Power(0), false
	if havePower {
		capW, active = f.capAt(now, p, true)
	}
	for i := len(f.byPrio) - 1; i >= 0; i-- {
		ci := f.byPrio[i]
		if ci.on || ci.drift || ci.mode != modeAuto || ci.tech != modeAuto {
			continue
		}
		if f.blocked(ci, true, now) != whyNoState {
			return false
		}
		if active && p+ci.load >= capW-f.spec.Hysteresis {
			return false
		}
		return f.switchTo(ctx, ci, true, now, by, p, havePower) == nil
	}
	return false
}

func (f *feed) setUnmet(now time.Time, why string, p, capW physic.Power) {
	if why == f.unmet {
		return
	}
	if why != "" && f.unmet != "" { // still unmet, for another reason: telemetry only
		f.unmet = why
		return
	}
	if why == "" {
		f.emit(now, EventCapMet, report.Info, report.Fields{"power_kw": kw(p), "cap_kw": kw(capW)})
	} else {
		f.emit(now, EventCapUnmet, report.Critical, report.Fields{"power_kw": kw(p), "cap_kw": kw(capW), "why": why})
	}
	f.unmet = why
}

// applyPinned drives manually set and technician-overridden circuits toward
// their pinned state, as soon as the dwell rules allow.
func (f *feed) applyPinned(ctx context.Context, now time.Time, p physic.Power, good bool) {
	for _, ci := range f.all {
		want, by := ci.mode, "command"
		if ci.tech != modeAuto {
			want, by = ci.tech, "technician"
		}
		if want == modeAuto {
			continue
		}
		on := want == modeManualOn
		if ci.on != on && f.blocked(ci, on, now) == whyNoState {
			if f.switchTo(ctx, ci, on, now, by, p, good) == nil {
				ci.drift = false
			}
		}
	}
}

// readback compares each relay with the state we believe it is in. A
// mismatch is drift: reported, and re-asserted by reassert as the dwell
// rules allow, counting from the moment it was seen (the true moment the
// relay moved is unknown, so the conservative choice). Protected circuits
// are never touched: their drift is reported and adopted.
func (f *feed) readback(ctx context.Context, now time.Time) {
	for _, ci := range f.all {
		if now.Sub(ci.lastSwitch) < f.spec.Period {
			continue // contacts may still be settling
		}
		on, err := ci.spec.Relay.Get(ctx)
		if errors.Is(err, relay.ErrNoReadback) {
			continue
		}
		if err != nil {
			if !ci.readErr {
				ci.readErr = true
				f.emit(now, EventRelayError, report.Warning, report.Fields{"circuit": ci.spec.ID, "readback": true, "error": err.Error()})
			}
			continue
		}
		ci.readErr = false
		if on == ci.on {
			continue
		}
		if ci.drift && on == ci.want {
			ci.on, ci.drift = on, false // put back by someone else
			continue
		}
		f.emit(now, EventRelayDrift, report.Warning, report.Fields{"circuit": ci.spec.ID, "want": ci.on, "actual": on, "protected": ci.spec.Protected})
		if !ci.drift && !ci.spec.Protected {
			ci.drift, ci.want = true, ci.on
		}
		ci.on, ci.lastSwitch = on, now
		f.dirty = true
	}
}

// reassert switches drifted relays back once the dwell rules allow.
func (f *feed) reassert(ctx context.Context, now time.Time, p physic.Power, good bool) {
	for _, ci := range f.byPrio {
		if !ci.drift || f.blocked(ci, ci.want, now) != whyNoState {
			continue
		}
		if f.switchTo(ctx, ci, ci.want, now, "reassert", p, good) == nil {
			ci.drift = false
		}
	}
}

// jitter returns a start offset in [0, max).
func jitter(r *rand.Rand, max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return time.Duration(r.Int64N(int64(max)))
}
