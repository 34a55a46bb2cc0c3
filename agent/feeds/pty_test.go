package feeds_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/feeds"
	"linkguard.dev/linkguard/hal/meter"
	"linkguard.dev/linkguard/hal/modbus"
	"linkguard.dev/linkguard/hal/modbus/modbussim"
	"linkguard.dev/linkguard/hal/relay"
	"periph.io/x/conn/v3/physic"
)

// TestOverPTYWithLineFaults runs the controller against the simulated meter
// and relay board on a real pty, through the same serial code as on
// hardware, with junk bytes, corrupted CRCs and lost answers on the line.
// The cap must be met within a bounded number of periods and held, the
// protected coil never written, and no coil switched that the controller did
// not decide to switch.
func TestOverPTYWithLineFaults(t *testing.T) {
	sim := modbussim.New(modbussim.Config{MeterSlave: 1, BoardSlave: 2, Coils: 4, CoilsOn: true, Seed: 5,
		BaseLoad: physic.KiloWatt, Junk: 0.2, CorruptCRC: 0.1, Drop: 0.03,
		Circuits: []modbussim.Circuit{
			{ID: "c1", Coil: 0, Phase: 0, Load: 3 * physic.KiloWatt, Noise: 100 * physic.Watt},
			{ID: "c2", Coil: 1, Phase: 1, Load: 2 * physic.KiloWatt, Noise: 100 * physic.Watt},
			{ID: "c3", Coil: 2, Phase: 2, Load: 4 * physic.KiloWatt, Noise: 100 * physic.Watt},
			{ID: "hospital", Coil: 3, Phase: 0, Load: 5 * physic.KiloWatt},
		}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path, err := sim.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	port, err := modbus.OpenSerial(path, modbus.Line{Baud: 115200})
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	bus := modbus.NewBus(port, modbus.Config{Baud: 115200, CharBits: 10, Timeout: 30 * time.Millisecond, Retries: 3, Backoff: time.Millisecond}, nil)

	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	m, err := meter.NewModbus(bus, 1, meter.SDM630)
	if err != nil {
		t.Fatal(err)
	}
	m.Now = clock
	spec := feeds.Spec{ID: "f", Meter: m, MinOn: time.Minute, MinOff: 2 * time.Minute, MaxOpsPerHour: 12,
		StaleAfter: 10 * time.Second, Hysteresis: physic.KiloWatt, Confirm: 3 * time.Second, Period: time.Second,
		ReadbackEvery: 5 * time.Second}
	for i, c := range []struct {
		id   string
		prio int
	}{{"c1", 1}, {"c2", 2}, {"c3", 3}, {"hospital", 0}} {
		spec.Circuits = append(spec.Circuits, feeds.CircuitSpec{ID: c.id, Relay: relay.NewCoil(bus, 2, uint16(i)),
			Priority: c.prio, Protected: c.prio == 0})
	}
	rec := &recorder{}
	ctl, err := feeds.New(feeds.Options{Feeds: []feeds.Spec{spec}, Events: rec, Now: clock, Rand: rand.New(rand.NewPCG(1, 1))})
	if err != nil {
		t.Fatal(err)
	}
	tick := func() {
		now = now.Add(time.Second)
		snap, _ := m.Read(ctx)
		ctl.Step(ctx, "f", snap)
	}
	for range 121 { // let the dwell clocks that start with the controller run out
		tick()
	}
	if err := ctl.SetThrottle(ctx, feeds.ThrottleOrder{Feed: "f", CapKW: 10.5}); err != nil {
		t.Fatal(err)
	}
	met := 0
	for i := 1; i <= 30 && met == 0; i++ {
		tick()
		if sim.Power() <= 10500*physic.Watt {
			met = i
		}
	}
	// Two sheds of (3 s confirmation + 1 period) each; a faulty read costs at
	// most a period and the meter backs off for at most another.
	if met == 0 || met > 16 {
		t.Fatalf("cap met after %d periods, want within 16 (power %v)", met, sim.Power())
	}
	for range 200 {
		tick()
		if sim.Power() > 10500*physic.Watt {
			t.Fatalf("cap broken while holding: %v", sim.Power())
		}
	}
	if sim.CoilOps(3) != 0 || !sim.Coil(3) {
		t.Fatal("protected coil written")
	}
	if sim.CoilOps(0) != 1 || sim.CoilOps(1) != 1 || sim.CoilOps(2) != 0 {
		t.Fatalf("coil operations %d %d %d, want 1 1 0", sim.CoilOps(0), sim.CoilOps(1), sim.CoilOps(2))
	}
	for i, c := range ctl.Telemetry()[0].Circuits {
		if c.On != sim.Coil(i) {
			t.Fatalf("%s: controller believes %v, board has %v", c.ID, c.On, sim.Coil(i))
		}
	}
	st := bus.Stats()
	t.Logf("bus %+v; injected %d faults; drift events %d", st, sim.Injected(), rec.count(feeds.EventRelayDrift))
	if st.CRCErrors == 0 || st.JunkBytes == 0 {
		t.Fatalf("no line faults seen (%+v): the test did not test them", st)
	}
	if rec.count(feeds.EventRelayDrift) != 0 {
		t.Fatal("line faults were taken for relay drift")
	}
}
