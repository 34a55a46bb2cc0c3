package feeds

import (
	"time"

	"linkguard.dev/linkguard/agent/report"
)

// Event types. Every relay operation, cap change, interlock hit and unmet
// cap is one of these; the first three are the names the console's
// contract knows (agent/report).
const (
	EventRelaySwitched   = report.RelayOperated   // the controller, a command, a re-assert or the technician switched a relay
	EventInterlock       = report.SafetyInterlock // an operation was refused or deferred by a rule
	EventThrottleChanged = report.ThrottleChanged // a cap was set, became active, or was cleared ("change" field)
	EventRelayError      = "relay.error"          // a relay could not be switched or read back
	EventRelayDrift      = "relay.drift"          // readback differs from the state the relay should be in
	EventProtectedOp     = "relay.override"       // a protected circuit was switched by an explicit override
	EventCapUnmet        = "cap.unmet"            // over the cap and nothing more may be shed: holding
	EventCapMet          = "cap.met"              // back under the cap after an unmet period
	EventMeterStale      = "meter.stale"          // no usable reading for stale_after: safe_state applies
	EventMeterOK         = "meter.ok"             // readings usable again
	EventTechnician      = "technician.override"  // the local override file appeared, changed or went away
	EventStateRestored   = "state.restored"       // persisted state loaded at start
)

// Throttle changes, in the "change" field of EventThrottleChanged.
const (
	ChangeSet     = "set"
	ChangeActive  = "active"
	ChangeCleared = "cleared"
)

// emit sends an event with the feed and time in its fields.
func (f *feed) emit(now time.Time, typ string, sev report.Severity, fields report.Fields) {
	if fields == nil {
		fields = report.Fields{}
	}
	fields["feed"] = f.spec.ID
	fields["at"] = now
	f.c.events.Emit(typ, sev, fields)
	lvl := f.log.Info
	if sev >= report.Warning {
		lvl = f.log.Warn
	}
	lvl("feed event", "type", typ, "severity", sev.String())
}
