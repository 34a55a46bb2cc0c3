package modbus

import (
	"fmt"

	"go.bug.st/serial"
)

// Line describes the settings of a serial line.
type Line struct {
	Baud     int    // 0 means 9600
	DataBits int    // 0 means 8
	Parity   string // "none" (default), "even" or "odd"
	StopBits int    // 1 (default) or 2
}

// CharBits returns the bits one character takes on the wire.
func (l Line) CharBits() int {
	d := l.DataBits
	if d == 0 {
		d = 8
	}
	n := 1 + d + l.stop()
	if l.Parity == "even" || l.Parity == "odd" {
		n++
	}
	return n
}

func (l Line) stop() int {
	if l.StopBits == 2 {
		return 2
	}
	return 1
}

// OpenSerial opens a serial device (an RS-485 adapter, or a pty in tests)
// with go.bug.st/serial. Direction control of half-duplex adapters is left
// to the kernel driver (RS-485 mode) or the adapter's automatic switching:
// SetRTS is not used, since it fails on ptys and most USB adapters switch alone.
func OpenSerial(path string, l Line) (serial.Port, error) {
	m := &serial.Mode{BaudRate: l.Baud, DataBits: l.DataBits, StopBits: serial.OneStopBit}
	if m.BaudRate == 0 {
		m.BaudRate = 9600
	}
	if m.DataBits == 0 {
		m.DataBits = 8
	}
	if l.stop() == 2 {
		m.StopBits = serial.TwoStopBits
	}
	switch l.Parity {
	case "", "none":
		m.Parity = serial.NoParity
	case "even":
		m.Parity = serial.EvenParity
	case "odd":
		m.Parity = serial.OddParity
	default:
		return nil, fmt.Errorf("modbus: %s: parity %q: %w", path, l.Parity, ErrArgument)
	}
	p, err := serial.Open(path, m)
	if err != nil {
		return nil, fmt.Errorf("modbus: open %s: %w", path, err)
	}
	return p, nil
}
