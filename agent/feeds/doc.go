// Package feeds holds designated cross-border electricity feeds under the
// power caps the utility orders, by shedding and restoring switched circuits
// while protected circuits are never touched and relays are never switched
// faster than min_on, min_off and max_ops_per_hour allow.
//
// Each feed runs a control loop: it reads the meter (a stale or bad reading
// is unknown, never zero), applies the active cap (start, end, ramp, a
// randomised start offset), sheds the lowest-priority circuit when power
// stays over the cap for the confirmation window, restores the
// highest-priority one when power is below the cap minus the hysteresis and
// its learned load fits, and holds and reports when the cap cannot be met.
// Relays are read back and drift is re-asserted within the dwell rules. The
// state (orders, dwell timers, operation counts) is persisted in state_dir.
// A local technician override file wins over remote commands. A relay.set
// of a protected circuit needs the roster's protected threshold of grid
// signatures, or one while the override file allows it (allow_remote):
// never one remote key alone.
//
// Commands arrive as typed method calls (SetThrottle, ClearThrottle,
// SetRelay) with decoders for their JSON arguments, registered with the
// command dispatcher by RegisterCommands; events leave through
// report.Events and telemetry through a report.Telemetry section. It must
// not import MQTT or testbench: the MQTT link plugs into those interfaces.
package feeds
