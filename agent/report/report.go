package report

import (
	"fmt"
	"sync"
)

// Severity orders events by how much an operator should care.
type Severity uint8

// Severities, lowest first.
const (
	Info Severity = iota
	Notice
	Warning
	Error
	Critical
)

var severityNames = [...]string{"info", "notice", "warning", "error", "critical"}

// String is the lower-case name used on the wire.
func (s Severity) String() string {
	if int(s) < len(severityNames) {
		return severityNames[s]
	}
	return fmt.Sprintf("severity(%d)", s)
}

// ParseSeverity reverses String.
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if n == s {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("report: unknown severity %q", s)
}

// Fields are an event's details. Values must marshal to JSON.
type Fields map[string]any

// Event types emitted by LinkGuard components. Components may emit other
// types; these are the ones the console's contract names.
const (
	PolicyApplied    = "policy.applied"
	PolicyRejected   = "policy.rejected"
	RosterApplied    = "roster.applied"
	RosterRejected   = "roster.rejected"
	LinkDenied       = "link.denied"
	ApprovalRevoked  = "approval.revoked"
	ThrottleChanged  = "throttle.changed"
	RelayOperated    = "relay.operated"
	SafetyInterlock  = "safety.interlock"
	CommandAccepted  = "command.accepted"
	CommandRefused   = "command.refused"
	AgentError       = "agent.error"
	AgentStarted     = "agent.started"
	QueueDropped     = "queue.dropped"
	LogLevelChanged  = "log.level"
	EvidenceUploaded = "evidence.uploaded"
)

// Events is where components emit events. Emit must not block on the
// network: implementations queue durably and return.
type Events interface {
	Emit(typ string, sev Severity, f Fields)
}

// Telemetry is where components register a section of the periodic
// telemetry message; collect is called once per report and must be cheap and
// safe for concurrent use with the component's own work.
type Telemetry interface {
	AddSection(name string, collect func() any)
}

// Discard drops every event.
var Discard Events = discard{}

type discard struct{}

func (discard) Emit(string, Severity, Fields) {}

// Recorder keeps emitted events in memory, for tests of components that
// emit events.
type Recorder struct {
	mu     sync.Mutex
	events []Recorded
}

// Recorded is one event a Recorder received.
type Recorded struct {
	Type     string
	Severity Severity
	Fields   Fields
}

var _ Events = (*Recorder)(nil)

// Emit records the event.
func (r *Recorder) Emit(typ string, sev Severity, f Fields) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, Recorded{typ, sev, f})
}

// Events returns a copy of what was recorded.
func (r *Recorder) Events() []Recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Recorded(nil), r.events...)
}
