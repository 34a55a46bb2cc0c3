package meter

import (
	"context"
	"fmt"
	"time"

	"periph.io/x/conn/v3/physic"
)

// Quality says whether a Snapshot may be used. The zero value is Bad, so a
// snapshot nobody filled in is never taken for a measurement.
type Quality uint8

const (
	Bad  Quality = iota // the read failed or the meter is backing off: no values
	Good                // every field the meter provides was read together
)

func (q Quality) String() string {
	if q == Good {
		return "good"
	}
	return "bad"
}

// Energy is an amount of energy in watt-hours. (physic.Energy counts
// nanojoules in an int64, which overflows at 2.56 GWh, well inside the range
// of a feed's import register.)
type Energy int64

// Common energy units.
const (
	WattHour     Energy = 1
	KilowattHour Energy = 1000
)

func (e Energy) String() string { return fmt.Sprintf("%.3fkWh", float64(e)/1000) }

// Phase holds the per-phase values.
type Phase struct {
	Voltage physic.ElectricPotential
	Current physic.ElectricCurrent
	Power   physic.Power // active power; negative when exporting
}

// Snapshot is one reading of a meter.
type Snapshot struct {
	Time         time.Time // when the reading completed
	Quality      Quality
	Phases       [3]Phase
	NPhases      int          // 1 or 3
	Power        physic.Power // total active power
	ImportEnergy Energy
	Frequency    physic.Frequency
}

// Age returns how old the snapshot is at now.
func (s Snapshot) Age(now time.Time) time.Duration { return now.Sub(s.Time) }

// Usable reports whether the snapshot is good and younger than maxAge at now:
// anything else is unknown, never zero.
func (s Snapshot) Usable(now time.Time, maxAge time.Duration) bool {
	return s.Quality == Good && !s.Time.IsZero() && now.Sub(s.Time) <= maxAge
}

// Reader reads a meter. On error the returned snapshot has Quality Bad and
// carries the time of the attempt.
type Reader interface {
	Read(ctx context.Context) (Snapshot, error)
}
