package config

import (
	"fmt"

	"periph.io/x/conn/v3/physic"
)

// MB is a size in mebibytes, as the *_mb keys give it.
type MB int

// Bytes is the size in bytes.
func (m MB) Bytes() int64 { return int64(m) << 20 }

func (m MB) String() string { return fmt.Sprintf("%d MB", int(m)) }

// Power is a power with its unit, as "500W" or "2kW" (periph's physic.Power
// parses it).
type Power physic.Power

// UnmarshalText parses a power with its unit.
func (p *Power) UnmarshalText(b []byte) error {
	var v physic.Power
	if err := v.Set(string(b)); err != nil {
		return fmt.Errorf("%q is not a power like 500W or 2kW (%w)", b, err)
	}
	*p = Power(v)
	return nil
}

// MarshalText writes the power back as UnmarshalText reads it.
func (p Power) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// Power is the value the feed controller takes.
func (p Power) Power() physic.Power { return physic.Power(p) }

func (p Power) String() string { return physic.Power(p).String() }
