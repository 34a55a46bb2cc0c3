package meter_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"linkguard.dev/linkguard/hal/meter"
	"linkguard.dev/linkguard/hal/modbus"
	"linkguard.dev/linkguard/hal/modbus/modbussim"
	"periph.io/x/conn/v3/physic"
)

func startMeter(t testing.TB, cfg modbussim.Config, baud int) (*modbussim.Sim, *modbus.Bus) {
	t.Helper()
	sim := modbussim.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	path, err := sim.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	line := modbus.Line{Baud: baud}
	port, err := modbus.OpenSerial(path, line)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { port.Close(); cancel() })
	return sim, modbus.NewBus(port, modbus.Config{Baud: baud, CharBits: line.CharBits(), Timeout: 100 * time.Millisecond, Retries: 1}, nil)
}

func feedSim() modbussim.Config {
	return modbussim.Config{MeterSlave: 1, BoardSlave: 2, CoilsOn: true, Seed: 3,
		Circuits: []modbussim.Circuit{
			{ID: "a", Coil: 0, Phase: 0, Load: 4 * physic.KiloWatt},
			{ID: "b", Coil: 1, Phase: 1, Load: 2 * physic.KiloWatt},
			{ID: "c", Coil: 2, Phase: 2, Load: 1 * physic.KiloWatt},
		}}
}

func TestSDM630OverPTY(t *testing.T) {
	sim, bus := startMeter(t, feedSim(), 115200)
	m, err := meter.NewModbus(bus, 1, meter.SDM630)
	if err != nil {
		t.Fatal(err)
	}
	if m.Requests() != 1 {
		t.Errorf("SDM630 map compiles to %d requests, want 1 (74 registers fit in 80)", m.Requests())
	}
	s, err := m.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Quality != meter.Good || s.NPhases != 3 {
		t.Fatalf("snapshot %+v", s)
	}
	if got := s.Power; got < 6999*physic.Watt || got > 7001*physic.Watt {
		t.Errorf("total power %v, want 7kW", got)
	}
	want := [3]physic.Power{4 * physic.KiloWatt, 2 * physic.KiloWatt, 1 * physic.KiloWatt}
	for i, p := range s.Phases {
		if d := p.Power - want[i]; d > physic.Watt || d < -physic.Watt {
			t.Errorf("phase %d power %v, want %v", i+1, p.Power, want[i])
		}
		if p.Voltage < 229*physic.Volt || p.Voltage > 231*physic.Volt {
			t.Errorf("phase %d voltage %v", i+1, p.Voltage)
		}
		amps := float64(p.Power) / float64(p.Voltage) // W / V in the same scale
		if got := float64(p.Current) / float64(physic.Ampere); math.Abs(got-amps) > 0.05 {
			t.Errorf("phase %d current %vA, want %.2fA", i+1, got, amps)
		}
	}
	if s.Frequency != 50*physic.Hertz {
		t.Errorf("frequency %v", s.Frequency)
	}
	// Switch a circuit off: the meter follows the load model.
	sim.SetCoil(0, false)
	s, err = m.Read(context.Background())
	if err != nil || s.Power < 2999*physic.Watt || s.Power > 3001*physic.Watt {
		t.Fatalf("after shedding a: power %v err %v, want 3kW", s.Power, err)
	}
}

func TestVanishedMeterBacksOff(t *testing.T) {
	sim, bus := startMeter(t, feedSim(), 115200)
	m, err := meter.NewModbus(bus, 1, meter.SDM120)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	m.Now = func() time.Time { return now }
	sim.SetMeterDown(true)
	s, err := m.Read(context.Background())
	if !errors.Is(err, modbus.ErrTimeout) || s.Quality != meter.Bad || s.Power != 0 || s.Time != now {
		t.Fatalf("vanished meter: %+v, %v; want bad quality and a timeout", s, err)
	}
	if s.Usable(now, time.Hour) {
		t.Fatal("a bad snapshot is usable")
	}
	before := bus.Stats().Requests
	if _, err := m.Read(context.Background()); !errors.Is(err, meter.ErrBackoff) {
		t.Fatalf("second read: %v, want ErrBackoff", err)
	}
	if bus.Stats().Requests != before {
		t.Fatal("a backing-off meter still used the bus")
	}
	sim.SetMeterDown(false)
	now = now.Add(2 * time.Second)
	if s, err := m.Read(context.Background()); err != nil || s.Quality != meter.Good {
		t.Fatalf("after the meter came back: %+v %v", s, err)
	}
}

func TestGenericMapWordOrder(t *testing.T) {
	// A generic meter whose words are swapped, read from a fake register bank.
	m, err := meter.Generic(map[string]int{"total_power": 10, "voltage": 20, "import_energy": 30}, "little")
	if err != nil {
		t.Fatal(err)
	}
	bank := fakeBank{}
	put := func(reg int, v float32) { // little: low word first
		b := math.Float32bits(v)
		bank[reg], bank[reg+1] = uint16(b), uint16(b>>16)
	}
	put(10, 1234.5)
	put(20, 231)
	put(30, 12.5)
	r, err := meter.NewModbus(bank, 5, m)
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Power != 1234500*physic.MilliWatt || s.Phases[0].Voltage != 231*physic.Volt || s.ImportEnergy != 12500*meter.WattHour {
		t.Fatalf("generic read %+v", s)
	}
	for _, bad := range []map[string]int{{"voltage": 0}, {"total_power": 1, "bogus": 2}} {
		if _, err := meter.Generic(bad, "big"); !errors.Is(err, meter.ErrMap) {
			t.Errorf("Generic(%v) err = %v, want ErrMap", bad, err)
		}
	}
	if _, err := meter.Generic(map[string]int{"power": 1}, "middle"); !errors.Is(err, meter.ErrMap) {
		t.Error("word order middle accepted")
	}
}

func TestReadAllocatesNothing(t *testing.T) {
	r, err := meter.NewModbus(fakeBank{}, 1, meter.SDM630)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if a := testing.AllocsPerRun(100, func() { _, _ = r.Read(ctx) }); a != 0 {
		t.Fatalf("Read allocates %.0f times", a)
	}
}

type fakeBank map[int]uint16

func (f fakeBank) ReadInputRegisters(_ context.Context, _ byte, addr uint16, dst []uint16) error {
	for i := range dst {
		dst[i] = f[int(addr)+i]
	}
	return nil
}

func (f fakeBank) ReadHoldingRegisters(context.Context, byte, uint16, []uint16) error {
	return &modbus.Exception{Function: modbus.ReadHoldingRegisters, Code: modbus.IllegalFunction}
}

// BenchmarkPoll measures one SDM630 poll over the pty. A pty moves bytes at
// memory speed whatever the baud: the figure is software time plus the
// inter-frame silence the bus keeps; wire-µs/op is what the bytes would take
// on a real line at that baud (request + response, 8N1).
func BenchmarkPoll(b *testing.B) {
	for _, baud := range []int{9600, 115200} {
		b.Run(map[int]string{9600: "baud=9600", 115200: "baud=115200"}[baud], func(b *testing.B) {
			_, bus := startMeter(b, feedSim(), baud)
			r, err := meter.NewModbus(bus, 1, meter.SDM630)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Read(ctx); err != nil {
					b.Fatal(err)
				}
			}
			wire := modbus.WireTime(8+3+2*74+2, baud, 10)
			b.ReportMetric(float64(wire.Microseconds()), "wire-µs/op")
		})
	}
}
