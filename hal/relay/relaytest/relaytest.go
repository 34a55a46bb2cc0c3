// Package relaytest provides a fake relay that behaves like the hardware:
// its contacts take a dwell time to settle (readback shows the old state
// until then), it can weld (stuck), fail, or be switched behind the
// controller's back (drift), and it records every operation so tests can
// check rated switching limits. Production code never imports it.
package relaytest

import (
	"context"
	"errors"
	"sync"
	"time"

	"linkguard.dev/linkguard/hal/relay"
)

// Op is one commanded change of state.
type Op struct {
	Time time.Time
	On   bool
}

// ErrInjected is the error a relay returns when told to fail.
var ErrInjected = errors.New("relaytest: injected failure")

// Relay is a fake relay. The zero value is off, with no dwell, on the real clock.
type Relay struct {
	Now   func() time.Time // clock; nil means time.Now
	Dwell time.Duration    // contact settling time seen by Get

	mu        sync.Mutex
	commanded bool
	prev      bool
	changedAt time.Time
	stuck     bool
	fail      bool
	ops       []Op
	sets      int
}

var _ relay.Relay = (*Relay)(nil)

// New returns a relay in state on.
func New(on bool, now func() time.Time) *Relay {
	return &Relay{Now: now, commanded: on, prev: on}
}

func (r *Relay) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Set commands the relay. A change is recorded as an operation.
func (r *Relay) Set(_ context.Context, on bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sets++
	if r.fail {
		return ErrInjected
	}
	if r.stuck || on == r.commanded {
		return nil
	}
	now := r.now()
	r.prev, r.commanded, r.changedAt = r.commanded, on, now
	r.ops = append(r.ops, Op{Time: now, On: on})
	return nil
}

// Get reads the contacts: the previous state until Dwell has passed.
func (r *Relay) Get(context.Context) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return false, ErrInjected
	}
	if r.now().Sub(r.changedAt) < r.Dwell {
		return r.prev, nil
	}
	return r.commanded, nil
}

// Force changes the state behind the controller's back (manual switch,
// contactor dropout): drift. It is not recorded as a commanded operation.
func (r *Relay) Force(on bool) {
	r.mu.Lock()
	r.prev, r.commanded, r.changedAt = on, on, time.Time{}
	r.mu.Unlock()
}

// SetStuck welds the contacts: Set is accepted but changes nothing.
func (r *Relay) SetStuck(stuck bool) { r.mu.Lock(); r.stuck = stuck; r.mu.Unlock() }

// SetFail makes Set and Get fail.
func (r *Relay) SetFail(fail bool) { r.mu.Lock(); r.fail = fail; r.mu.Unlock() }

// On returns the commanded (settled or not) state.
func (r *Relay) On() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.commanded }

// Ops returns a copy of the recorded operations.
func (r *Relay) Ops() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Op(nil), r.ops...)
}

// Sets returns how many times Set was called (changing or not).
func (r *Relay) Sets() int { r.mu.Lock(); defer r.mu.Unlock(); return r.sets }

// CheckLimits returns the first violation in the recorded operations of the
// rules a relay controller must keep: at least minOn between switching on and
// off, minOff between off and on, and at most maxPerHour operations in any
// hour. It returns "" when none was broken.
func (r *Relay) CheckLimits(minOn, minOff time.Duration, maxPerHour int) string {
	return CheckLimits(r.Ops(), minOn, minOff, maxPerHour)
}

// CheckLimits checks a list of operations; see Relay.CheckLimits.
func CheckLimits(ops []Op, minOn, minOff time.Duration, maxPerHour int) string {
	for i := 1; i < len(ops); i++ {
		if ops[i].On == ops[i-1].On {
			continue // moved back after someone else moved it (drift): not a dwell pair
		}
		gap := ops[i].Time.Sub(ops[i-1].Time)
		if ops[i-1].On && gap < minOn {
			return "min_on broken at " + ops[i].Time.Format(time.RFC3339Nano) + " (on for " + gap.String() + ")"
		}
		if !ops[i-1].On && gap < minOff {
			return "min_off broken at " + ops[i].Time.Format(time.RFC3339Nano) + " (off for " + gap.String() + ")"
		}
	}
	for i := range ops {
		n := 0
		for j := i; j < len(ops) && ops[j].Time.Sub(ops[i].Time) < time.Hour; j++ {
			n++
		}
		if n > maxPerHour {
			return "max_ops_per_hour broken from " + ops[i].Time.Format(time.RFC3339Nano)
		}
	}
	return ""
}
