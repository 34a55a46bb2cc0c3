package contract

import (
	"encoding/json"
	"time"
)

// State is the retained message on .../state, and, with Online false, the
// last will.
type State struct {
	Online       bool         `json:"online"`
	Device       string       `json:"device"`
	Site         string       `json:"site,omitempty"`
	Kind         string       `json:"kind,omitempty"`
	Version      string       `json:"version,omitempty"`
	BootID       string       `json:"boot_id"`
	Policy       *PolicyState `json:"policy,omitempty"`
	Roster       *RosterState `json:"roster,omitempty"`
	Capabilities []string     `json:"capabilities,omitempty"`
	TS           time.Time    `json:"ts"`
}

// PolicyState names the enforced policy.
type PolicyState struct {
	Serial  uint64     `json:"serial"`
	Expires *time.Time `json:"expires,omitempty"`
}

// RosterState names the roster in force (serial 0: none yet). A device
// past Expires refuses every command until a newer roster arrives.
type RosterState struct {
	Serial  uint64     `json:"serial"`
	Expires *time.Time `json:"expires,omitempty"`
}

// Telemetry is one periodic report.
type Telemetry struct {
	Device   string                     `json:"device"`
	BootID   string                     `json:"boot_id"`
	Seq      uint64                     `json:"seq"`
	TS       time.Time                  `json:"ts"`
	Agent    AgentHealth                `json:"agent"`
	Sections map[string]json.RawMessage `json:"sections,omitempty"`
}

// AgentHealth is the agent's own health in each telemetry message.
type AgentHealth struct {
	RSSBytes   uint64     `json:"rss_bytes"`
	Goroutines int        `json:"goroutines"`
	Uptime     float64    `json:"uptime_s"`
	Queue      QueueStats `json:"queue"`
}

// QueueStats is the store-and-forward queue's state.
type QueueStats struct {
	Depth   int64        `json:"depth"`
	Bytes   int64        `json:"bytes"`
	Dropped DroppedStats `json:"dropped"`
}

// DroppedStats counts records dropped to keep the queue bounded, per class.
type DroppedStats struct {
	Telemetry uint64 `json:"telemetry"`
	Events    uint64 `json:"events"`
}

// Event is one message on .../events. Prev is the hex SHA-256 of the exact
// bytes of the device's previous event message (64 zeros for the first).
type Event struct {
	ID       string         `json:"id"`
	TS       time.Time      `json:"ts"`
	Seq      uint64         `json:"seq"`
	Device   string         `json:"device"`
	BootID   string         `json:"boot_id"`
	Severity string         `json:"severity"`
	Type     string         `json:"type"`
	Prev     string         `json:"prev"`
	Fields   map[string]any `json:"fields,omitempty"`
}

// Genesis is the prev of a device's first event.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// Result answers a command, on .../cmd/result: every one carried out, and
// refusals up to a per-topic budget (the rest are counted in a
// command.flood event), so a flood of junk cannot become a flood of answers.
type Result struct {
	CmdID  string    `json:"cmd_id"`
	OK     bool      `json:"ok"`
	Error  string    `json:"error,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Device string    `json:"device"`
	Type   string    `json:"type,omitempty"`
	Result any       `json:"result,omitempty"`
	TS     time.Time `json:"ts"`
}
