package agent

import (
	"context"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/agent/feeds"
	"linkguard.dev/linkguard/hal/modbus/modbussim"
	"periph.io/x/conn/v3/physic"
)

// TestOpenFeedsRuns opens the hardware a feeds section names (here a
// simulated meter and board on a pty) and runs the controller on the real
// clock for a few periods.
func TestOpenFeedsRuns(t *testing.T) {
	sim := modbussim.New(modbussim.Config{MeterSlave: 1, BoardSlave: 2, Coils: 2, CoilsOn: true,
		Circuits: []modbussim.Circuit{{ID: "c1", Coil: 0, Load: 3 * physic.KiloWatt}, {ID: "h", Coil: 1, Load: physic.KiloWatt}}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path, err := sim.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		Buses: []config.Bus{{Port: path, Baud: 19200, Parity: "even", StopBits: 1, Timeout: 100 * time.Millisecond, Retries: new(1)}},
		Feeds: []config.Feed{{ID: "f", Meter: config.Meter{Bus: path, Model: "sdm630", Slave: 1},
			Circuits: []config.Circuit{
				{ID: "c1", Relay: config.Relay{Bus: path, Slave: 2, Coil: 0}, Priority: 1},
				{ID: "h", Relay: config.Relay{Bus: path, Slave: 2, Coil: 1}, Protected: true},
			},
			MinOn: time.Minute, MinOff: time.Minute, MaxOpsPerHour: 6, StaleAfter: time.Second, SafeState: "hold",
			Confirm: time.Second, Period: 20 * time.Millisecond, Readback: time.Second}},
	}
	specs, hw, err := openFeeds(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer hw.Close()
	if len(hw.Buses) != 1 {
		t.Fatalf("%d buses opened for one port", len(hw.Buses))
	}
	ctl, err := feeds.New(feeds.Options{Feeds: specs, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithTimeout(ctx, 300*time.Millisecond)
	defer stop()
	if err := ctl.Run(rctx); err != nil && rctx.Err() == nil {
		t.Fatal(err)
	}
	tel := ctl.Telemetry()[0]
	if tel.PowerKW == nil || *tel.PowerKW < 3.9 || *tel.PowerKW > 4.1 {
		t.Fatalf("telemetry power %v, want 4 kW read through the configured bus", tel.PowerKW)
	}
	if !ctl.Alive(time.Now(), time.Second) {
		t.Fatal("controller not alive after running")
	}
}
