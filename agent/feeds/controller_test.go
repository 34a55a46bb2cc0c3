package feeds_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/feeds"
	"linkguard.dev/linkguard/hal/meter"
)

func setCap(t testing.TB, p *plant, capKW float64) {
	t.Helper()
	if err := p.ctl.SetThrottle(context.Background(), feeds.ThrottleOrder{Feed: p.spec.ID, CapKW: capKW}); err != nil {
		t.Fatal(err)
	}
}

// TestCapMetAndHeld: 15 kW of load under a 10.5 kW cap. c1 (3 kW) then c2
// (2 kW) must go, within a bounded number of control periods (each shed
// waits the 3 s confirmation window), and the cap must then hold without
// another operation for an hour of noisy readings.
func TestCapMetAndHeld(t *testing.T) {
	p := newPlant(t, 1, "", defaultCircuits, nil)
	p.tick()
	setCap(t, p, 10.5)
	const bound = 2 * (3 + 2) // two sheds, each: confirmation window + one period to see it
	met := -1
	for i := range bound + 5 {
		p.tick()
		if p.power() <= kw(10.5) {
			met = i + 1
			break
		}
	}
	if met < 0 || met > bound {
		t.Fatalf("cap not met within %d periods (power %v)", bound, p.power())
	}
	if p.relays["c1"].On() || p.relays["c2"].On() || !p.relays["c3"].On() || !p.relays["hospital"].On() {
		t.Fatalf("wrong circuits shed: c1=%v c2=%v c3=%v", p.relays["c1"].On(), p.relays["c2"].On(), p.relays["c3"].On())
	}
	opsBefore := len(p.relays["c1"].Ops()) + len(p.relays["c2"].Ops()) + len(p.relays["c3"].Ops())
	for range 3600 {
		p.tick()
		if p.power() > kw(10.5) {
			t.Fatalf("cap broken while holding: %v", p.power())
		}
	}
	opsAfter := len(p.relays["c1"].Ops()) + len(p.relays["c2"].Ops()) + len(p.relays["c3"].Ops())
	if opsAfter != opsBefore {
		t.Fatalf("relays moved %d times while holding under the cap: oscillation", opsAfter-opsBefore)
	}
	tel := p.telemetry()
	if tel.CapKW == nil || *tel.CapKW != 10.5 || tel.PowerKW == nil || tel.Unmet != "" {
		t.Fatalf("telemetry %+v", tel)
	}
	// Clear: circuits come back, highest priority first, never faster than min_off.
	if err := p.ctl.ClearThrottle(context.Background(), p.spec.ID); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		p.tick()
	}
	if !p.relays["c1"].On() || !p.relays["c2"].On() {
		t.Fatal("circuits not restored after throttle.clear")
	}
	on1, on2 := p.relays["c1"].Ops(), p.relays["c2"].Ops()
	if !on2[len(on2)-1].Time.Before(on1[len(on1)-1].Time) {
		t.Fatal("c1 restored before c2: restore order must follow priority")
	}
}

// TestUnmetCapHolds: a cap below the protected load cannot be met; the
// controller sheds everything sheddable, then holds and reports, once.
func TestUnmetCapHolds(t *testing.T) {
	p := newPlant(t, 2, "", defaultCircuits, nil)
	setCap(t, p, 2)
	for range 600 {
		p.tick()
	}
	for _, id := range []string{"c1", "c2", "c3"} {
		if p.relays[id].On() || len(p.relays[id].Ops()) != 1 {
			t.Fatalf("%s: on=%v ops=%d, want shed once", id, p.relays[id].On(), len(p.relays[id].Ops()))
		}
	}
	if len(p.relays["hospital"].Ops()) != 0 || !p.relays["hospital"].On() {
		t.Fatal("protected circuit switched")
	}
	if n := p.events.count(feeds.EventCapUnmet); n != 1 {
		t.Fatalf("%d cap.unmet events, want exactly 1 (no flapping)", n)
	}
	if tel := p.telemetry(); tel.Unmet == "" {
		t.Fatal("telemetry does not report the unmet cap")
	}
}

func TestProtectedRelaySet(t *testing.T) {
	p := newPlant(t, 3, "", defaultCircuits, nil)
	ctx := context.Background()
	p.tick()
	p.now = p.now.Add(2 * time.Minute)
	err := p.ctl.SetRelay(ctx, feeds.RelayOrder{Feed: p.spec.ID, Circuit: "hospital", State: feeds.StateOff})
	if !errors.Is(err, feeds.ErrProtected) || !p.relays["hospital"].On() {
		t.Fatalf("relay.set off on a protected circuit: %v", err)
	}
	if p.events.count(feeds.EventInterlock) != 1 {
		t.Fatal("refusal not reported as an interlock event")
	}
	err = p.ctl.SetRelay(ctx, feeds.RelayOrder{Feed: p.spec.ID, Circuit: "hospital", State: feeds.StateOff, Override: true})
	if !errors.Is(err, feeds.ErrBadOrder) {
		t.Fatalf("override without a reason: %v, want ErrBadOrder", err)
	}
	err = p.ctl.SetRelay(ctx, feeds.RelayOrder{Feed: p.spec.ID, Circuit: "hospital", State: feeds.StateOff, Override: true, Reason: "transformer fire"})
	if err != nil || p.relays["hospital"].On() || p.events.count(feeds.EventProtectedOp) != 1 {
		t.Fatalf("override with reason: err %v on=%v", err, p.relays["hospital"].On())
	}
	// The dwell rules hold even for an override.
	err = p.ctl.SetRelay(ctx, feeds.RelayOrder{Feed: p.spec.ID, Circuit: "hospital", State: feeds.StateOn, Override: true, Reason: "fire out"})
	if !errors.Is(err, feeds.ErrInterlock) {
		t.Fatalf("switching back within min_off: %v, want ErrInterlock", err)
	}
	// The controller itself never touches it, even under a cap it cannot meet.
	setCap(t, p, 0)
	for range 300 {
		p.tick()
	}
	if len(p.relays["hospital"].Ops()) != 1 {
		t.Fatal("the controller switched a protected circuit")
	}
}

// TestStaleMeterNoDecisions: bad or stale readings are unknown, never zero.
func TestStaleMeterNoDecisions(t *testing.T) {
	for _, safe := range []feeds.SafeState{feeds.Hold, feeds.Restore} {
		p := newPlant(t, 4, "", defaultCircuits, func(s *feeds.Spec) { s.SafeState = safe })
		p.tick()
		setCap(t, p, 10.5)
		for range 20 {
			p.tick()
		}
		if p.relays["c1"].On() || p.relays["c2"].On() {
			t.Fatal("setup: cap not met")
		}
		sets := map[string]int{}
		for id, r := range p.relays {
			sets[id] = len(r.Ops())
		}
		// A failed read: quality bad, power zero. Also, an old good reading.
		last := p.snapshot()
		for i := range 300 {
			snap := meter.Snapshot{Time: p.now.Add(time.Second)} // bad quality
			if i%2 == 1 {
				snap = last // good but ever older
			}
			p.now = p.now.Add(time.Second)
			p.ctl.Step(context.Background(), p.spec.ID, snap)
			if i == 5 { // within stale_after: nothing at all may happen
				for id, r := range p.relays {
					if len(r.Ops()) != sets[id] {
						t.Fatalf("safe=%v: %s switched on unknown power within stale_after", safe, id)
					}
				}
			}
		}
		for id, r := range p.relays {
			ops := r.Ops()[sets[id]:]
			for _, op := range ops {
				if !op.On {
					t.Fatalf("safe=%v: %s shed while the meter was stale", safe, id)
				}
			}
			if safe == feeds.Hold && len(ops) != 0 {
				t.Fatalf("safe=hold: %s switched while the meter was lost", id)
			}
		}
		if safe == feeds.Restore && (!p.relays["c1"].On() || !p.relays["c2"].On()) {
			t.Fatal("safe=restore: shed circuits not restored after the meter was lost")
		}
		if p.events.count(feeds.EventMeterStale) != 1 {
			t.Fatalf("meter.stale events: %d, want 1", p.events.count(feeds.EventMeterStale))
		}
		if tel := p.telemetry(); tel.PowerKW != nil || !tel.MeterLost {
			t.Fatalf("telemetry shows a power for a lost meter: %+v", tel)
		}
	}
}

// TestRestartKeepsTimers: a restart mid-throttle keeps the order, the
// dwell clocks and the operation counts.
func TestRestartKeepsTimers(t *testing.T) {
	dir := t.TempDir()
	p := newPlant(t, 5, dir, defaultCircuits, nil)
	p.tick()
	setCap(t, p, 12.5)
	var shedAt time.Time
	for range 10 {
		p.tick()
		if !p.relays["c1"].On() && shedAt.IsZero() {
			shedAt = p.now
		}
	}
	if shedAt.IsZero() {
		t.Fatal("setup: c1 not shed")
	}
	// Restart 30 s later: a new controller on the same state dir and relays.
	p.now = p.now.Add(30 * time.Second)
	p.ctl = p.controller(t, dir)
	p.tick()
	tel := p.telemetry()
	if tel.Order == nil || tel.Order.CapKW != 12.5 {
		t.Fatalf("order lost across restart: %+v", tel.Order)
	}
	var c1 feeds.CircuitTelemetry
	for _, c := range tel.Circuits {
		if c.ID == "c1" {
			c1 = c
		}
	}
	if c1.On || c1.OpsLastHour != 1 || !c1.NextAllowed.Equal(shedAt.Add(2*time.Minute)) {
		t.Fatalf("c1 after restart: %+v, want off, 1 op, next allowed %v", c1, shedAt.Add(2*time.Minute))
	}
	// Clear the cap: c1 may come back only min_off after it was shed.
	if err := p.ctl.ClearThrottle(context.Background(), p.spec.ID); err != nil {
		t.Fatal(err)
	}
	for p.now.Before(shedAt.Add(2*time.Minute - time.Second)) {
		p.tick()
		if p.relays["c1"].On() {
			t.Fatalf("c1 restored at %v, %v after it was shed: min_off lost in the restart", p.now, p.now.Sub(shedAt))
		}
	}
	for range 3 {
		p.tick()
	}
	if !p.relays["c1"].On() {
		t.Fatal("c1 not restored after min_off")
	}
	if v := p.relays["c1"].CheckLimits(time.Minute, 2*time.Minute, 12); v != "" {
		t.Fatal(v)
	}
}

// TestDriftReasserted: a relay found in the wrong state is reported and put
// back once the dwell rules allow; a protected one only reported.
func TestDriftReasserted(t *testing.T) {
	p := newPlant(t, 6, "", defaultCircuits, nil)
	for range 5 {
		p.tick()
	}
	p.relays["c3"].Force(false)
	p.relays["hospital"].Force(false)
	for range 15 {
		p.tick()
	}
	if p.events.count(feeds.EventRelayDrift) != 2 {
		t.Fatalf("drift events: %d, want 2", p.events.count(feeds.EventRelayDrift))
	}
	if p.relays["c3"].On() {
		t.Fatal("drift re-asserted before min_off from its detection")
	}
	for range 130 {
		p.tick()
	}
	if !p.relays["c3"].On() {
		t.Fatal("drift never re-asserted")
	}
	if p.relays["hospital"].On() || len(p.relays["hospital"].Ops()) != 0 {
		t.Fatal("the controller switched a protected circuit back")
	}
}

func TestTechnicianOverride(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "override.json")
	p := newPlant(t, 7, "", defaultCircuits, func(s *feeds.Spec) { s.OverrideFile = file })
	ctx := context.Background()
	for range 130 {
		p.tick()
	}
	if err := os.WriteFile(file, []byte(`{"reason":"line work","circuits":{"c2":"off"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	p.ctl.ReloadOverrides()
	p.tick()
	if p.relays["c2"].On() {
		t.Fatal("technician override not applied")
	}
	err := p.ctl.SetRelay(ctx, feeds.RelayOrder{Feed: p.spec.ID, Circuit: "c2", State: feeds.StateOn})
	if !errors.Is(err, feeds.ErrTechnician) {
		t.Fatalf("remote relay.set under a technician override: %v", err)
	}
	if p.events.count(feeds.EventTechnician) != 1 {
		t.Fatal("override not reported")
	}
	os.Remove(file)
	p.ctl.ReloadOverrides()
	for range 130 {
		p.tick()
	}
	if !p.relays["c2"].On() {
		t.Fatal("control not handed back after the override file was removed")
	}
}

// TestPropertyDwellAndOpLimits: 1,000 random sequences of commands,
// readings (good, bad, stale), clock jumps and drift; in none may a relay
// break min_on, min_off or max_ops_per_hour, and the protected circuit is
// never switched (no override is sent).
func TestPropertyDwellAndOpLimits(t *testing.T) {
	seeds := 1000
	if testing.Short() {
		seeds = 100
	}
	ctx := context.Background()
	states := []string{feeds.StateOn, feeds.StateOff, feeds.StateAuto}
	for seed := range uint64(seeds) {
		p := newPlant(t, seed, "", defaultCircuits, func(s *feeds.Spec) { s.MaxOpsPerHour = 4; s.Confirm = 2 * time.Second })
		rng := rand.New(rand.NewPCG(seed, 42))
		ids := p.ids
		for range 200 {
			switch r := rng.IntN(100); {
			case r < 8:
				_ = p.ctl.SetThrottle(ctx, feeds.ThrottleOrder{Feed: p.spec.ID, CapKW: float64(rng.IntN(16))})
			case r < 11:
				_ = p.ctl.ClearThrottle(ctx, p.spec.ID)
			case r < 25:
				id := ids[rng.IntN(len(ids))]
				err := p.ctl.SetRelay(ctx, feeds.RelayOrder{Feed: p.spec.ID, Circuit: id, State: states[rng.IntN(3)]})
				if id == "hospital" && !errors.Is(err, feeds.ErrProtected) {
					t.Fatalf("seed %d: relay.set on protected: %v", seed, err)
				}
			case r < 28:
				p.relays[ids[rng.IntN(3)]].Force(rng.IntN(2) == 0)
			case r < 35:
				p.step(time.Duration(rng.IntN(20))*time.Second, meter.Snapshot{Time: p.now}) // bad
			default:
				p.now = p.now.Add(time.Duration(1+rng.IntN(40)) * time.Second)
				p.ctl.Step(ctx, p.spec.ID, p.snapshot())
			}
		}
		for _, id := range ids {
			if v := p.relays[id].CheckLimits(p.spec.MinOn, p.spec.MinOff, p.spec.MaxOpsPerHour); v != "" {
				t.Fatalf("seed %d: %s: %s", seed, id, v)
			}
		}
		if n := len(p.relays["hospital"].Ops()); n != 0 {
			t.Fatalf("seed %d: protected circuit switched %d times", seed, n)
		}
	}
}

func TestStepAllocatesNothing(t *testing.T) {
	p := newPlant(t, 8, "", defaultCircuits, nil)
	setCap(t, p, 10.5)
	for range 200 {
		p.tick()
	}
	p.noise = 0
	snap := p.snapshot()
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		p.now = p.now.Add(time.Second)
		snap.Time = p.now
		p.ctl.Step(ctx, p.spec.ID, snap)
	})
	if allocs != 0 {
		t.Fatalf("a control period with no switching allocates %.1f times", allocs)
	}
}

// BenchmarkStep is the control loop's decision cost per period (held under
// a cap, readback included every tenth period).
func BenchmarkStep(b *testing.B) {
	p := newPlant(b, 8, "", defaultCircuits, nil)
	setCap(b, p, 10.5)
	for range 200 {
		p.tick()
	}
	p.noise = 0
	snap := p.snapshot()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p.now = p.now.Add(time.Second)
		snap.Time = p.now
		p.ctl.Step(ctx, p.spec.ID, snap)
	}
}
