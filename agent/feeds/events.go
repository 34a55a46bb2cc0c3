package feeds

import (
	"log/slog"
	"time"
)

// Severity ranks an event.
type Severity uint8

const (
	Info Severity = iota
	Warning
	Critical
)

func (s Severity) String() string {
	switch s {
	case Warning:
		return "warning"
	case Critical:
		return "critical"
	}
	return "info"
}

// MarshalText makes severities read as words in JSON.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Event types. Every relay operation, cap change, interlock hit and unmet
// cap is one of these.
const (
	EventRelaySwitched = "relay.switched"      // the controller, a command or the technician switched a relay
	EventRelayError    = "relay.error"         // a relay could not be switched or read back
	EventRelayDrift    = "relay.drift"         // readback differs from the desired state
	EventInterlock     = "interlock"           // an operation was refused or deferred by a rule
	EventProtectedOp   = "relay.override"      // a protected circuit was switched by an explicit override
	EventCapSet        = "cap.set"             // throttle.set accepted
	EventCapCleared    = "cap.cleared"         // throttle.clear, or the order's end
	EventCapActive     = "cap.active"          // the order's start (after the offset) was reached
	EventCapUnmet      = "cap.unmet"           // over the cap and nothing more may be shed: holding
	EventCapMet        = "cap.met"             // back under the cap after an unmet period
	EventMeterStale    = "meter.stale"         // no usable reading for stale_after: safe_state applies
	EventMeterOK       = "meter.ok"            // readings usable again
	EventTechnician    = "technician.override" // the local override file changed
	EventStateRestored = "state.restored"      // persisted state loaded at start
)

// Event is something operators must hear about.
type Event struct {
	Type     string
	Severity Severity
	Time     time.Time
	Feed     string
	Fields   map[string]any
}

// Emitter takes events; the MQTT link publishes them. Emit must not block
// for long: the control loop calls it.
type Emitter interface {
	Emit(Event)
}

// LogEmitter writes events to a logger: the fallback when nothing else listens.
type LogEmitter struct{ Logger *slog.Logger }

var _ Emitter = LogEmitter{}

// Emit logs the event at a level matching its severity.
func (l LogEmitter) Emit(e Event) {
	lvl := slog.LevelInfo
	switch e.Severity {
	case Warning:
		lvl = slog.LevelWarn
	case Critical:
		lvl = slog.LevelError
	}
	attrs := make([]any, 0, 2*len(e.Fields)+4)
	attrs = append(attrs, "type", e.Type, "feed", e.Feed)
	for k, v := range e.Fields {
		attrs = append(attrs, k, v)
	}
	l.Logger.Log(nil, lvl, "feed event", attrs...)
}

// multiEmitter sends to both the configured emitter and the log.
type multiEmitter []Emitter

func (m multiEmitter) Emit(e Event) {
	for _, x := range m {
		x.Emit(e)
	}
}
