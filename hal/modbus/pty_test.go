package modbus_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"linkguard.dev/linkguard/hal/envtest"
	"linkguard.dev/linkguard/hal/modbus"
	"linkguard.dev/linkguard/hal/modbus/modbussim"
	"periph.io/x/conn/v3/physic"
)

const (
	meterID = 1
	boardID = 2
)

func simConfig() modbussim.Config {
	return modbussim.Config{
		MeterSlave: meterID, BoardSlave: boardID, Coils: 8, Seed: 1,
		Circuits: []modbussim.Circuit{
			{ID: "c1", Coil: 0, Phase: 0, Load: 5 * physic.KiloWatt},
			{ID: "c2", Coil: 1, Phase: 1, Load: 3 * physic.KiloWatt},
		},
	}
}

// startSim serves sim on a fresh pty and returns a Bus on its tty, opened
// through go.bug.st/serial like a hardware port.
func startSim(t testing.TB, sim *modbussim.Sim, line modbus.Line, cfg modbus.Config) *modbus.Bus {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	path, err := sim.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	port, err := modbus.OpenSerial(path, line)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { port.Close(); cancel() })
	cfg.Baud, cfg.CharBits = line.Baud, line.CharBits()
	return modbus.NewBus(port, cfg, nil)
}

func TestFunctionsOverPTY(t *testing.T) {
	sim := modbussim.New(simConfig())
	bus := startSim(t, sim, modbus.Line{Baud: 115200}, modbus.Config{Timeout: 200 * time.Millisecond, Retries: 1})
	ctx := context.Background()

	if err := bus.WriteSingleCoil(ctx, boardID, 0, true); err != nil {
		t.Fatal(err)
	}
	if err := bus.WriteMultipleCoils(ctx, boardID, 1, []bool{true, false, true}); err != nil {
		t.Fatal(err)
	}
	coils := make([]bool, 8)
	if err := bus.ReadCoils(ctx, boardID, 0, coils); err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, true, false, true, false, false, false, false}; !equal(coils, want) {
		t.Fatalf("coils = %v, want %v", coils, want)
	}
	regs := make([]uint16, 2)
	if err := bus.ReadInputRegisters(ctx, meterID, 0x34, regs); err != nil {
		t.Fatal(err)
	}
	if got := f32(regs); got < 7999 || got > 8001 { // c1 + c2 on, no noise configured
		t.Fatalf("total power register = %v W, want 8000", got)
	}

	var ex *modbus.Exception
	err := bus.ReadHoldingRegisters(ctx, meterID, 0, regs)
	if !errors.As(err, &ex) || ex.Code != modbus.IllegalFunction {
		t.Fatalf("holding registers on the meter: err = %v, want illegal function", err)
	}
	err = bus.ReadInputRegisters(ctx, meterID, 1, regs) // odd start: Eastron refuses it
	if !errors.As(err, &ex) || ex.Code != modbus.IllegalDataAddress {
		t.Fatalf("odd register start: err = %v, want illegal data address", err)
	}
	err = bus.WriteMultipleRegisters(ctx, boardID, 0, []uint16{1})
	if !errors.Is(err, modbus.ErrException) {
		t.Fatalf("registers on the board: err = %v, want an exception", err)
	}
	err = bus.ReadCoils(ctx, 9, 0, coils) // nobody at 9
	if !errors.Is(err, modbus.ErrTimeout) {
		t.Fatalf("absent slave: err = %v, want ErrTimeout", err)
	}
	if st := bus.Stats(); st.Timeouts != 2 || st.Retries != 1 || st.Exceptions != 3 {
		t.Fatalf("stats = %+v, want 2 timeouts, 1 retry, 3 exceptions", st)
	}
}

// TestJunkAndCRCErrors: with junk, corrupted CRCs and dropped answers on
// the line, every call either returns the device's true state or an error.
func TestJunkAndCRCErrors(t *testing.T) {
	cfg := simConfig()
	cfg.Junk, cfg.CorruptCRC, cfg.Drop = 0.3, 0.2, 0.05
	sim := modbussim.New(cfg)
	bus := startSim(t, sim, modbus.Line{Baud: 115200}, modbus.Config{Timeout: 40 * time.Millisecond, Retries: 4, Backoff: time.Millisecond})
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 7))
	coils := make([]bool, 8)
	okWrites, okReads := 0, 0
	for i := range 150 {
		c, on := uint16(rng.IntN(8)), rng.IntN(2) == 0
		if err := bus.WriteSingleCoil(ctx, boardID, c, on); err == nil {
			okWrites++
			if sim.Coil(int(c)) != on {
				t.Fatalf("step %d: write reported success but coil %d is %v", i, c, !on)
			}
		}
		if err := bus.ReadCoils(ctx, boardID, 0, coils); err == nil {
			okReads++
			for j := range coils {
				if coils[j] != sim.Coil(j) {
					t.Fatalf("step %d: read coil %d = %v, device has %v", i, j, coils[j], sim.Coil(j))
				}
			}
		}
	}
	st := bus.Stats()
	t.Logf("ok writes %d, ok reads %d of 150; injected %d; stats %+v", okWrites, okReads, sim.Injected(), st)
	if st.CRCErrors == 0 || st.JunkBytes == 0 {
		t.Fatalf("no CRC errors or junk seen (%+v): the injection did not happen", st)
	}
	if okWrites < 120 || okReads < 120 {
		t.Fatalf("too few successes with retries: %d writes, %d reads", okWrites, okReads)
	}
}

// TestSharedBus: several goroutines polling two slaves never interleave frames.
func TestSharedBus(t *testing.T) {
	sim := modbussim.New(simConfig())
	bus := startSim(t, sim, modbus.Line{Baud: 115200}, modbus.Config{Timeout: 200 * time.Millisecond})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			regs := make([]uint16, 20)
			coils := make([]bool, 8)
			for range 25 {
				var err error
				if g%2 == 0 {
					err = bus.ReadInputRegisters(ctx, meterID, 0, regs)
				} else {
					err = bus.ReadCoils(ctx, boardID, 0, coils)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := bus.Stats(); st.Requests != 100 || st.Timeouts+st.CRCErrors+st.JunkBytes != 0 {
		t.Fatalf("stats = %+v, want 100 clean requests", st)
	}
}

// TestSocatPair runs the same code over a socat pty pair, both ends opened
// through go.bug.st/serial, as the testbench wires simulated sites.
func TestSocatPair(t *testing.T) {
	a, b := envtest.SocatPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sp, err := modbus.OpenSerial(a, modbus.Line{Baud: 9600})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	sim := modbussim.New(simConfig())
	go sim.Serve(ctx, sp)
	cp, err := modbus.OpenSerial(b, modbus.Line{Baud: 9600})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	bus := modbus.NewBus(cp, modbus.Config{Baud: 9600, Timeout: 500 * time.Millisecond, Retries: 2}, nil)
	if err := bus.WriteSingleCoil(ctx, boardID, 1, true); err != nil {
		t.Fatal(err)
	}
	regs := make([]uint16, 2)
	if err := bus.ReadInputRegisters(ctx, meterID, 0x34, regs); err != nil {
		t.Fatal(err)
	}
	if got := f32(regs); got < 2999 || got > 3001 {
		t.Fatalf("total power = %v W over socat, want 3000", got)
	}
}

func equal(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func f32(r []uint16) float32 {
	return float32frombits(uint32(r[0])<<16 | uint32(r[1]))
}

func float32frombits(b uint32) float32 { return math.Float32frombits(b) }
