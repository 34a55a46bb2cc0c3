package relay

import (
	"context"
	"errors"
	"fmt"

	"periph.io/x/conn/v3/gpio"
)

// Setter switches a circuit on (energised) or off.
type Setter interface {
	Set(ctx context.Context, on bool) error
}

// Getter reads back the actual state of a relay.
type Getter interface {
	Get(ctx context.Context) (on bool, err error)
}

// Relay is a relay that can be switched and read back.
type Relay interface {
	Setter
	Getter
}

// ErrNoReadback is returned by Get when the hardware cannot report its state.
var ErrNoReadback = errors.New("relay: no readback")

// GPIO drives a relay from a GPIO line.
type GPIO struct {
	pin       gpio.PinOut
	activeLow bool
}

var _ Relay = (*GPIO)(nil)

// NewGPIO returns a relay on pin; activeLow means a low level energises the
// circuit (common opto-isolated relay modules).
func NewGPIO(pin gpio.PinOut, activeLow bool) *GPIO { return &GPIO{pin: pin, activeLow: activeLow} }

// Set drives the line.
func (g *GPIO) Set(_ context.Context, on bool) error {
	if err := g.pin.Out(gpio.Level(on != g.activeLow)); err != nil {
		return fmt.Errorf("relay: %s: %w", g.pin, err)
	}
	return nil
}

// Get reads the line back, when the pin can be read (gpio.PinIO on Linux
// gpiochip and sysfs pins can: an output reads its driven level).
func (g *GPIO) Get(context.Context) (bool, error) {
	r, ok := g.pin.(interface{ Read() gpio.Level })
	if !ok {
		return false, fmt.Errorf("relay: %s: %w", g.pin, ErrNoReadback)
	}
	return bool(r.Read()) != g.activeLow, nil
}

// CoilBus is what a Modbus relay needs from its bus (a *modbus.Bus).
type CoilBus interface {
	WriteSingleCoil(ctx context.Context, slave byte, addr uint16, on bool) error
	ReadCoils(ctx context.Context, slave byte, addr uint16, dst []bool) error
}

// Coil is one relay of a Modbus RTU relay board (coil on = relay energised =
// circuit on, as the common boards wire their NO contacts).
type Coil struct {
	bus   CoilBus
	slave byte
	coil  uint16
	buf   [1]bool
}

var _ Relay = (*Coil)(nil)

// NewCoil returns the relay at coil of the board at slave.
func NewCoil(bus CoilBus, slave byte, coil uint16) *Coil {
	return &Coil{bus: bus, slave: slave, coil: coil}
}

// Set writes the coil (function 05).
func (c *Coil) Set(ctx context.Context, on bool) error {
	if err := c.bus.WriteSingleCoil(ctx, c.slave, c.coil, on); err != nil {
		return fmt.Errorf("relay: coil %d/%d: %w", c.slave, c.coil, err)
	}
	return nil
}

// Get reads the coil back (function 01). Not safe for concurrent use.
func (c *Coil) Get(ctx context.Context) (bool, error) {
	if err := c.bus.ReadCoils(ctx, c.slave, c.coil, c.buf[:]); err != nil {
		return false, fmt.Errorf("relay: coil %d/%d: %w", c.slave, c.coil, err)
	}
	return c.buf[0], nil
}

func (c *Coil) String() string { return fmt.Sprintf("modbus %d coil %d", c.slave, c.coil) }
