package modbussim_test

import (
	"context"
	"testing"
	"time"

	"linkguard.dev/linkguard/hal/modbus"
	"linkguard.dev/linkguard/hal/modbus/modbussim"
	"periph.io/x/conn/v3/physic"
)

func TestLoadModelFollowsRelays(t *testing.T) {
	sim := modbussim.New(modbussim.Config{MeterSlave: 1, BoardSlave: 2, Coils: 2, BaseLoad: 600 * physic.Watt,
		Circuits: []modbussim.Circuit{
			{ID: "a", Coil: 0, Phase: 0, Load: physic.KiloWatt},
			{ID: "gpio", Coil: -1, Phase: 1, Load: 2 * physic.KiloWatt},
		}})
	if got := sim.Power(); got != 600*physic.Watt {
		t.Fatalf("all off: %v", got)
	}
	sim.SetCoil(0, true)
	sim.SetExternal("gpio", true)
	if got := sim.Power(); got != 3600*physic.Watt {
		t.Fatalf("all on: %v", got)
	}
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
	bus := modbus.NewBus(port, modbus.Config{Timeout: 50 * time.Millisecond}, nil)
	if err := bus.WriteSingleCoil(ctx, 2, 0, false); err != nil {
		t.Fatal(err)
	}
	if sim.CoilOps(0) != 1 || sim.Power() != 2600*physic.Watt {
		t.Fatalf("after a coil write: ops %d power %v", sim.CoilOps(0), sim.Power())
	}
	sim.SetMeterDown(true)
	regs := make([]uint16, 2)
	if err := bus.ReadInputRegisters(ctx, 1, 0x34, regs); err == nil {
		t.Fatal("a vanished meter answered")
	}
	if err := bus.ReadInputRegisters(ctx, 1, 0, make([]uint16, 82)); err == nil {
		t.Fatal("the meter answered more than 80 registers")
	}
}
