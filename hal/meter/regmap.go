package meter

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"linkguard.dev/linkguard/hal/modbus"
)

// Quantity is a value a meter register holds.
type Quantity uint8

// The quantities a Snapshot carries.
const (
	VoltageL1 Quantity = iota
	VoltageL2
	VoltageL3
	CurrentL1
	CurrentL2
	CurrentL3
	PowerL1
	PowerL2
	PowerL3
	TotalPower
	Frequency
	ImportEnergy
	numQuantities
)

var quantityNames = [numQuantities]string{
	"voltage_l1", "voltage_l2", "voltage_l3", "current_l1", "current_l2", "current_l3",
	"power_l1", "power_l2", "power_l3", "total_power", "frequency", "import_energy",
}

func (q Quantity) String() string {
	if q < numQuantities {
		return quantityNames[q]
	}
	return fmt.Sprintf("quantity(%d)", q)
}

// ParseQuantity maps a configuration name to a Quantity; "voltage", "current"
// and "power" are the single-phase aliases of the L1 values.
func ParseQuantity(s string) (Quantity, error) {
	switch s {
	case "voltage":
		return VoltageL1, nil
	case "current":
		return CurrentL1, nil
	case "power":
		return PowerL1, nil
	}
	for i, n := range quantityNames {
		if n == s {
			return Quantity(i), nil
		}
	}
	return 0, fmt.Errorf("meter: unknown quantity %q", s)
}

// WordOrder is the order of the two 16-bit registers of a float32.
type WordOrder uint8

const (
	HighWordFirst WordOrder = iota // "big": Eastron and most meters
	LowWordFirst                   // "little": some meters swap the words
)

// Field places one quantity: a float32 across two registers at Reg, times
// Scale into the base unit (V, A, W, Hz, Wh).
type Field struct {
	Quantity Quantity
	Reg      uint16
	Scale    float64
}

// Map describes a meter model's registers as data.
type Map struct {
	Name      string
	Function  modbus.FunctionCode // ReadInputRegisters (Eastron) or ReadHoldingRegisters
	WordOrder WordOrder
	MaxRegs   int // registers per request; Eastron meters take at most 80
	Phases    int
	Fields    []Field
}

// Eastron register maps: input registers, IEEE-754 float32, high word first.
var (
	SDM120 = Map{Name: "sdm120", Function: modbus.ReadInputRegisters, MaxRegs: 80, Phases: 1,
		Fields: []Field{
			{VoltageL1, 0x0000, 1}, {CurrentL1, 0x0006, 1}, {PowerL1, 0x000C, 1},
			{TotalPower, 0x000C, 1}, {Frequency, 0x0046, 1}, {ImportEnergy, 0x0048, 1000},
		}}
	SDM630 = Map{Name: "sdm630", Function: modbus.ReadInputRegisters, MaxRegs: 80, Phases: 3,
		Fields: []Field{
			{VoltageL1, 0x0000, 1}, {VoltageL2, 0x0002, 1}, {VoltageL3, 0x0004, 1},
			{CurrentL1, 0x0006, 1}, {CurrentL2, 0x0008, 1}, {CurrentL3, 0x000A, 1},
			{PowerL1, 0x000C, 1}, {PowerL2, 0x000E, 1}, {PowerL3, 0x0010, 1},
			{TotalPower, 0x0034, 1}, {Frequency, 0x0046, 1}, {ImportEnergy, 0x0048, 1000},
		}}
)

// ErrMap reports a register map that cannot be read.
var ErrMap = errors.New("meter: invalid register map")

// Generic builds a map from configuration: quantity name -> register, read
// with function 04, values in base units except import_energy in kWh.
func Generic(registers map[string]int, wordOrder string) (Map, error) {
	m := Map{Name: "generic", Function: modbus.ReadInputRegisters, MaxRegs: 80, Phases: 1}
	switch wordOrder {
	case "", "big":
	case "little":
		m.WordOrder = LowWordFirst
	default:
		return Map{}, fmt.Errorf("%w: word order %q", ErrMap, wordOrder)
	}
	names := make([]string, 0, len(registers))
	for n := range registers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		q, err := ParseQuantity(n)
		if err != nil {
			return Map{}, fmt.Errorf("%w: %w", ErrMap, err)
		}
		r := registers[n]
		if r < 0 || r > 0xFFFE {
			return Map{}, fmt.Errorf("%w: %s: register %d out of range", ErrMap, n, r)
		}
		scale := 1.0
		if q == ImportEnergy {
			scale = 1000
		}
		if q == VoltageL2 || q == VoltageL3 || q == CurrentL2 || q == CurrentL3 || q == PowerL2 || q == PowerL3 {
			m.Phases = 3
		}
		m.Fields = append(m.Fields, Field{q, uint16(r), scale})
	}
	if n := registers["power"]; n != 0 && registers["total_power"] == 0 {
		m.Fields = append(m.Fields, Field{TotalPower, uint16(n), 1})
	}
	if !slices.ContainsFunc(m.Fields, func(f Field) bool { return f.Quantity == TotalPower }) {
		return Map{}, fmt.Errorf("%w: no total_power (or power) register", ErrMap)
	}
	return m, nil
}

// block is one read request of a compiled map.
type block struct {
	start, count uint16
}

// compile groups the fields into as few requests as MaxRegs allows.
func (m Map) compile() ([]block, error) {
	if len(m.Fields) == 0 || m.MaxRegs < 2 || m.MaxRegs > modbus.MaxReadRegisters {
		return nil, fmt.Errorf("%w: %s: no fields or bad request size", ErrMap, m.Name)
	}
	if m.Function != modbus.ReadInputRegisters && m.Function != modbus.ReadHoldingRegisters {
		return nil, fmt.Errorf("%w: %s: function %s cannot read registers", ErrMap, m.Name, m.Function)
	}
	regs := make([]uint16, 0, len(m.Fields))
	for _, f := range m.Fields {
		if f.Quantity >= numQuantities {
			return nil, fmt.Errorf("%w: %s: %s", ErrMap, m.Name, f.Quantity)
		}
		regs = append(regs, f.Reg)
	}
	slices.Sort(regs)
	regs = slices.Compact(regs)
	var bs []block
	for _, r := range regs {
		if n := len(bs); n > 0 && int(r)+2-int(bs[n-1].start) <= m.MaxRegs {
			bs[n-1].count = r + 2 - bs[n-1].start
			continue
		}
		bs = append(bs, block{r, 2})
	}
	return bs, nil
}
