package meter

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"linkguard.dev/linkguard/hal/modbus"
	"periph.io/x/conn/v3/physic"
)

// RegisterReader is what a Modbus meter needs from its bus (a *modbus.Bus).
type RegisterReader interface {
	ReadInputRegisters(ctx context.Context, slave byte, addr uint16, dst []uint16) error
	ReadHoldingRegisters(ctx context.Context, slave byte, addr uint16, dst []uint16) error
}

// ErrBackoff is returned while a meter that stopped answering is left alone
// for a while, so a vanished meter does not hold the shared bus in timeouts.
var ErrBackoff = errors.New("meter: backing off after failures")

// Modbus reads one meter on a Modbus bus through its register map.
type Modbus struct {
	bus    RegisterReader
	slave  byte
	m      Map
	blocks []block
	offs   []int // offset in regs of each block
	at     []int // index in regs of each field's first register
	regs   []uint16
	// Backoff after consecutive failures: MinBackoff doubled up to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	Now                    func() time.Time

	fails   int
	nextTry time.Time
}

var _ Reader = (*Modbus)(nil)

// NewModbus compiles m into read requests for the meter at slave.
func NewModbus(bus RegisterReader, slave byte, m Map) (*Modbus, error) {
	bs, err := m.compile()
	if err != nil {
		return nil, err
	}
	r := &Modbus{bus: bus, slave: slave, m: m, blocks: bs,
		MinBackoff: time.Second, MaxBackoff: 30 * time.Second, Now: time.Now}
	n := 0
	for _, b := range bs {
		r.offs = append(r.offs, n)
		n += int(b.count)
	}
	r.regs = make([]uint16, n)
	for _, f := range m.Fields {
		for i, b := range bs {
			if f.Reg >= b.start && f.Reg+2 <= b.start+b.count {
				r.at = append(r.at, r.offs[i]+int(f.Reg-b.start))
				break
			}
		}
	}
	return r, nil
}

// Requests returns how many Modbus requests one Read makes.
func (r *Modbus) Requests() int { return len(r.blocks) }

// Read polls the meter. It allocates nothing on success.
func (r *Modbus) Read(ctx context.Context) (Snapshot, error) {
	now := r.Now()
	if r.fails > 0 && now.Before(r.nextTry) {
		return Snapshot{Time: now}, fmt.Errorf("meter: slave %d: %w", r.slave, ErrBackoff)
	}
	for i, b := range r.blocks {
		dst := r.regs[r.offs[i] : r.offs[i]+int(b.count)]
		var err error
		if r.m.Function == modbus.ReadHoldingRegisters {
			err = r.bus.ReadHoldingRegisters(ctx, r.slave, b.start, dst)
		} else {
			err = r.bus.ReadInputRegisters(ctx, r.slave, b.start, dst)
		}
		if err != nil {
			r.fails++
			d := r.MinBackoff << min(r.fails-1, 16)
			if d > r.MaxBackoff || d <= 0 {
				d = r.MaxBackoff
			}
			r.nextTry = r.Now().Add(d)
			return Snapshot{Time: r.Now()}, fmt.Errorf("meter: slave %d: %w", r.slave, err)
		}
	}
	r.fails = 0
	s := Snapshot{Time: r.Now(), Quality: Good, NPhases: max(r.m.Phases, 1)}
	for i, f := range r.m.Fields {
		v := r.float(r.at[i]) * f.Scale
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return Snapshot{Time: s.Time}, fmt.Errorf("meter: slave %d: %s is not a number", r.slave, f.Quantity)
		}
		set(&s, f.Quantity, v)
	}
	return s, nil
}

func (r *Modbus) float(i int) float64 {
	hi, lo := r.regs[i], r.regs[i+1]
	if r.m.WordOrder == LowWordFirst {
		hi, lo = lo, hi
	}
	return float64(math.Float32frombits(uint32(hi)<<16 | uint32(lo)))
}

func set(s *Snapshot, q Quantity, v float64) {
	switch q {
	case VoltageL1, VoltageL2, VoltageL3:
		s.Phases[q-VoltageL1].Voltage = physic.ElectricPotential(v * float64(physic.Volt))
	case CurrentL1, CurrentL2, CurrentL3:
		s.Phases[q-CurrentL1].Current = physic.ElectricCurrent(v * float64(physic.Ampere))
	case PowerL1, PowerL2, PowerL3:
		s.Phases[q-PowerL1].Power = physic.Power(v * float64(physic.Watt))
	case TotalPower:
		s.Power = physic.Power(v * float64(physic.Watt))
	case Frequency:
		s.Frequency = physic.Frequency(v * float64(physic.Hertz))
	case ImportEnergy:
		s.ImportEnergy = Energy(math.Round(v))
	}
}
