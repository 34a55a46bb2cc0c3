package agent

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"periph.io/x/conn/v3/gpio/gpioreg"
	host "periph.io/x/host/v3"

	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/agent/feeds"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/hal/meter"
	"linkguard.dev/linkguard/hal/modbus"
	"linkguard.dev/linkguard/hal/relay"
)

// newFeeds opens the feeds' hardware through hw and builds the feed
// controller, reporting through up and taking its commands there. It
// returns the controller, how long its loops may stay silent before they
// count as hung, and what to close when the agent stops.
func newFeeds(cfg *config.Config, hw *Hardware, up reporting, log *slog.Logger) (*feeds.Controller, time.Duration, io.Closer, error) {
	log = log.With("part", "feeds")
	if hw.OpenFeeds == nil {
		return nil, 0, nil, missing("buses or relays for feeds")
	}
	specs, closer, err := hw.OpenFeeds(cfg, log)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("agent: %w", err)
	}
	ctl, err := feeds.New(feeds.Options{Feeds: specs, StateDir: cfg.StateDir, Events: up.events, Logger: log})
	if err == nil {
		err = ctl.RegisterCommands(up.commands)
	}
	if err != nil {
		closer.Close()
		return nil, 0, nil, fmt.Errorf("agent: %w", err)
	}
	up.telemetry.AddSection(contract.SectionFeeds, func() any { return feedsSection(ctl.Telemetry()) })
	return ctl, feeds.WatchdogAge(specs), closer, nil
}

// feedsSection puts the controller's telemetry in the contract's words;
// every field has its place there (TestFeedsSectionCarriesTelemetry).
func feedsSection(ts []feeds.FeedTelemetry) contract.Feeds {
	out := make(contract.Feeds, len(ts))
	for i, t := range ts {
		f := contract.Feed{Feed: t.Feed, Time: t.Time, PowerKW: t.PowerKW, ReadingAt: t.ReadingAt, MeterLost: t.MeterLost,
			CapKW: t.CapKW, CapStart: t.CapStart, Unmet: t.Unmet, Circuits: make([]contract.Circuit, len(t.Circuits))}
		if o := t.Order; o != nil {
			f.Order = &contract.ThrottleOrder{Feed: o.Feed, CapKW: o.CapKW, From: o.From, Until: o.Until}
			if o.Ramp != 0 {
				f.Order.Ramp = time.Duration(o.Ramp).String()
			}
		}
		if o := t.Technician; o != nil {
			f.Technician = &contract.Override{Reason: o.Reason, Hold: o.Hold, Circuits: o.Circuits, AllowRemote: o.AllowRemote}
		}
		for j, c := range t.Circuits {
			f.Circuits[j] = contract.Circuit{ID: c.ID, On: c.On, Protected: c.Protected, Priority: c.Priority, Mode: c.Mode,
				Drift: c.Drift, LoadKW: c.LoadKW, OpsLastHour: c.OpsLastHour, NextAllowed: c.NextAllowed}
		}
		out[i] = f
	}
	return out
}

// feedHardware is what openFeeds opened: the serial buses and their ports,
// to close when the agent stops.
type feedHardware struct {
	Buses map[string]*modbus.Bus
	ports []io.Closer
}

// Close closes the buses and their ports.
func (h *feedHardware) Close() error {
	var errs []error
	for _, b := range h.Buses {
		errs = append(errs, b.Close())
	}
	for _, p := range h.ports {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}

// openFeeds opens the live hardware the feeds section names (serial buses,
// meters, GPIO and Modbus relays) and translates the section into the
// controller's specs: the feeds package knows its specs, not the config.
func openFeeds(cfg *config.Config, log *slog.Logger) ([]feeds.Spec, *feedHardware, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hw := &feedHardware{Buses: map[string]*modbus.Bus{}}
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
	var specs []feeds.Spec
	fail := func(err error) ([]feeds.Spec, *feedHardware, error) {
		hw.Close()
		return nil, nil, err
	}
	for _, f := range cfg.Feeds {
		s := feeds.Spec{ID: f.ID, MinOn: f.MinOn, MinOff: f.MinOff, MaxOpsPerHour: f.MaxOpsPerHour,
			StaleAfter: f.StaleAfter, Hysteresis: f.Hysteresis.Power(),
			Confirm: f.Confirm, Period: f.Period, StartJitter: f.StartJitter, ReadbackEvery: f.Readback,
			OverrideFile: f.Override}
		if f.SafeState == "hold" {
			s.SafeState = feeds.Hold
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
			cs := feeds.CircuitSpec{ID: c.ID, Priority: c.Priority, Protected: c.Protected}
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
