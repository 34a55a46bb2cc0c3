package feeds

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"periph.io/x/conn/v3/gpio/gpioreg"
	host "periph.io/x/host/v3"

	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/hal/meter"
	"linkguard.dev/linkguard/hal/modbus"
	"linkguard.dev/linkguard/hal/relay"
)

// Hardware is what FromConfig opened: the serial ports, to close on exit.
type Hardware struct {
	Buses map[string]*modbus.Bus
	ports []io.Closer
}

// Close closes the buses and their ports.
func (h *Hardware) Close() error {
	var errs []error
	for _, b := range h.Buses {
		errs = append(errs, b.Close())
	}
	for _, p := range h.ports {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}

// FromConfig opens the hardware the feeds section names (serial buses,
// meters, GPIO and Modbus relays) and returns the feed specs for New.
func FromConfig(cfg *config.Config, log *slog.Logger) ([]Spec, *Hardware, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hw := &Hardware{Buses: map[string]*modbus.Bus{}}
	bus := func(port string) (*modbus.Bus, error) {
		if b := hw.Buses[port]; b != nil {
			return b, nil
		}
		bc := cfg.Bus(port)
		line := modbus.Line{Baud: bc.Baud, Parity: bc.Parity.String(), StopBits: bc.StopBits}
		p, err := modbus.OpenSerial(port, line)
		if err != nil {
			return nil, err
		}
		hw.ports = append(hw.ports, p)
		b := modbus.NewBus(p, modbus.Config{Baud: bc.Baud, CharBits: line.CharBits(), Timeout: bc.Timeout,
			Retries: *bc.Retries}, log.With("bus", port))
		hw.Buses[port] = b
		return b, nil
	}
	gpioReady := false
	var specs []Spec
	fail := func(err error) ([]Spec, *Hardware, error) {
		hw.Close()
		return nil, nil, err
	}
	for _, f := range cfg.Feeds {
		s := Spec{ID: f.ID, MinOn: f.MinOn, MinOff: f.MinOff, MaxOpsPerHour: f.MaxOpsPerHour,
			StaleAfter: f.StaleAfter, Hysteresis: f.Hysteresis.Power(),
			Confirm: f.Confirm, Period: f.Period, StartJitter: f.StartJitter, ReadbackEvery: f.Readback,
			OverrideFile: f.Override}
		if f.SafeState == "hold" {
			s.SafeState = Hold
		}
		var m meter.Map
		switch f.Meter.Model {
		case "sdm120":
			m = meter.SDM120
		case "sdm630":
			m = meter.SDM630
		default:
			var err error
			if m, err = meter.Generic(f.Meter.Registers, f.Meter.WordOrder.String()); err != nil {
				return fail(fmt.Errorf("feeds: %s: %w", f.ID, err))
			}
		}
		if f.Meter.WordOrder == "little" {
			m.WordOrder = meter.LowWordFirst
		}
		b, err := bus(f.Meter.Bus)
		if err != nil {
			return fail(fmt.Errorf("feeds: %s: meter: %w", f.ID, err))
		}
		if s.Meter, err = meter.NewModbus(b, byte(f.Meter.Slave), m); err != nil {
			return fail(fmt.Errorf("feeds: %s: %w", f.ID, err))
		}
		for _, c := range f.Circuits {
			cs := CircuitSpec{ID: c.ID, Priority: c.Priority, Protected: c.Protected}
			if c.Relay.GPIO != "" {
				if !gpioReady {
					if _, err := host.Init(); err != nil {
						return fail(fmt.Errorf("feeds: gpio drivers: %w", err))
					}
					gpioReady = true
				}
				pin := gpioreg.ByName(c.Relay.GPIO)
				if pin == nil {
					return fail(fmt.Errorf("feeds: %s/%s: no GPIO line %q", f.ID, c.ID, c.Relay.GPIO))
				}
				cs.Relay = relay.NewGPIO(pin, c.Relay.ActiveLow)
			} else {
				b, err := bus(c.Relay.Bus)
				if err != nil {
					return fail(fmt.Errorf("feeds: %s/%s: %w", f.ID, c.ID, err))
				}
				cs.Relay = relay.NewCoil(b, byte(c.Relay.Slave), uint16(c.Relay.Coil))
			}
			s.Circuits = append(s.Circuits, cs)
		}
		specs = append(specs, s)
	}
	return specs, hw, nil
}

// WatchdogAge is how long the watchdog waits for a control step before it
// stops feeding: ten periods of the slowest feed, at least 30 s (a meter
// read that times out with retries may take a few seconds).
func WatchdogAge(specs []Spec) time.Duration {
	d := 30 * time.Second
	for _, s := range specs {
		d = max(d, 10*s.Period)
	}
	return d
}
