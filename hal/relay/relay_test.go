package relay_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"linkguard.dev/linkguard/hal/modbus"
	"linkguard.dev/linkguard/hal/modbus/modbussim"
	"linkguard.dev/linkguard/hal/relay"
	"linkguard.dev/linkguard/hal/relay/relaytest"
	"periph.io/x/conn/v3/gpio"
)

func TestGPIOActiveLow(t *testing.T) {
	ctx := context.Background()
	for _, activeLow := range []bool{false, true} {
		pin := &fakePin{PinIO: gpio.INVALID}
		r := relay.NewGPIO(pin, activeLow)
		for _, on := range []bool{true, false, true} {
			if err := r.Set(ctx, on); err != nil {
				t.Fatal(err)
			}
			if want := gpio.Level(on != activeLow); pin.L != want {
				t.Fatalf("activeLow=%v on=%v: line %v, want %v", activeLow, on, pin.L, want)
			}
			got, err := r.Get(ctx)
			if err != nil || got != on {
				t.Fatalf("activeLow=%v: readback %v %v, want %v", activeLow, got, err, on)
			}
		}
	}
}

// fakePin is a GPIO line that keeps its level, like a gpiochip line
// configured as output: what is driven reads back. (periph's gpiotest would
// pull in github.com/jonboulle/clockwork for this.)
type fakePin struct {
	gpio.PinIO
	L gpio.Level
}

func (p *fakePin) Out(l gpio.Level) error { p.L = l; return nil }
func (p *fakePin) Read() gpio.Level       { return p.L }
func (p *fakePin) String() string         { return "GPIO17" }

// outOnly is a pin that cannot be read.
type outOnly struct{ gpio.PinOut }

func TestGPIOWithoutReadback(t *testing.T) {
	r := relay.NewGPIO(outOnly{&fakePin{PinIO: gpio.INVALID}}, false)
	if _, err := r.Get(context.Background()); !errors.Is(err, relay.ErrNoReadback) {
		t.Fatalf("Get on an output-only pin: %v, want ErrNoReadback", err)
	}
}

func TestCoilOverPTY(t *testing.T) {
	sim := modbussim.New(modbussim.Config{BoardSlave: 3, Coils: 4})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path, err := sim.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	port, err := modbus.OpenSerial(path, modbus.Line{Baud: 19200})
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	bus := modbus.NewBus(port, modbus.Config{Baud: 19200, Timeout: 200 * time.Millisecond}, nil)
	r := relay.NewCoil(bus, 3, 2)
	if err := r.Set(ctx, true); err != nil {
		t.Fatal(err)
	}
	if !sim.Coil(2) || sim.Coil(1) {
		t.Fatal("wrong coil switched")
	}
	sim.SetCoil(2, false) // someone switched it by hand
	if on, err := r.Get(ctx); err != nil || on {
		t.Fatalf("readback %v %v, want off", on, err)
	}
	if err := relay.NewCoil(bus, 3, 9).Set(ctx, true); !errors.Is(err, modbus.ErrException) {
		t.Fatalf("coil beyond the board: %v, want an exception", err)
	}
}

func TestFakeDwellAndLimits(t *testing.T) {
	now := time.Unix(0, 0)
	r := relaytest.New(true, func() time.Time { return now })
	r.Dwell = 50 * time.Millisecond
	ctx := context.Background()
	_ = r.Set(ctx, false)
	if on, _ := r.Get(ctx); !on {
		t.Fatal("readback changed before the dwell")
	}
	now = now.Add(60 * time.Millisecond)
	if on, _ := r.Get(ctx); on {
		t.Fatal("readback did not change after the dwell")
	}
	now = now.Add(time.Second)
	_ = r.Set(ctx, true)
	if v := r.CheckLimits(0, 2*time.Second, 10); v == "" {
		t.Fatal("CheckLimits missed a min_off violation")
	}
	if v := r.CheckLimits(0, time.Second, 1); v == "" {
		t.Fatal("CheckLimits missed a max_ops violation")
	}
	if v := r.CheckLimits(0, time.Second, 2); v != "" {
		t.Fatalf("CheckLimits: %s", v)
	}
}

// BenchmarkCoilReadback measures one relay-board poll (read 4 coils) over
// the pty. The pty moves bytes at memory speed whatever the baud, so the
// time is software plus the inter-frame silence the bus keeps; wire-µs/op
// is what the 14 bytes (8 request + 6 response, 8N1) take on a real line.
func BenchmarkCoilReadback(b *testing.B) {
	for _, baud := range []int{9600, 115200} {
		name := "baud=9600"
		if baud == 115200 {
			name = "baud=115200"
		}
		b.Run(name, func(b *testing.B) {
			sim := modbussim.New(modbussim.Config{BoardSlave: 2, Coils: 4})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			path, err := sim.Start(ctx)
			if err != nil {
				b.Fatal(err)
			}
			port, err := modbus.OpenSerial(path, modbus.Line{Baud: baud})
			if err != nil {
				b.Fatal(err)
			}
			defer port.Close()
			bus := modbus.NewBus(port, modbus.Config{Baud: baud, CharBits: 10, Timeout: 200 * time.Millisecond}, nil)
			coils := make([]bool, 4)
			b.ReportAllocs()
			for b.Loop() {
				if err := bus.ReadCoils(ctx, 2, 0, coils); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(modbus.WireTime(14, baud, 10).Microseconds()), "wire-µs/op")
		})
	}
}
