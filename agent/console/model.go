package console

import (
	"slices"
	"sort"
	"strings"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
)

// Device is one device as the console sees it.
type Device struct {
	ID            string     `json:"id"`
	Site          string     `json:"site,omitempty"`
	Kind          string     `json:"kind,omitempty"`
	Version       string     `json:"version,omitempty"`
	Online        bool       `json:"online"`
	BootID        string     `json:"boot_id,omitempty"`
	PolicySerial  uint64     `json:"policy_serial"`
	PolicyExpires *time.Time `json:"policy_expires,omitempty"`
	Capabilities  []string   `json:"capabilities,omitempty"`
	StateAt       time.Time  `json:"state_at"`
	TelemetryAt   time.Time  `json:"telemetry_at"`
	Filter        *Filter    `json:"filter,omitempty"`
	Feeds         []*Feed    `json:"feeds,omitempty"`
	QueueDepth    int64      `json:"queue_depth"`
	// Verified: its last state was sealed by the device its topic names,
	// under the fleet CA (false when the console has none).
	Verified bool `json:"verified"`
	// Silent: its last state says online, but nothing came from it for
	// longer than Options.Silence, so it is shown offline.
	Silent bool `json:"silent,omitempty"`
	// TelemetryMissing counts telemetry seqs of this device that never
	// arrived (lost on the way or dropped by its queue).
	TelemetryMissing uint64    `json:"telemetry_missing,omitempty"`
	heard            time.Time // when the console last heard from it
	stateAsked       time.Time // when its retained state was last asked for again
	gaps             telemetryGaps
}

// Filter is what the console shows of a router's links telemetry section.
type Filter struct {
	PolicySerial uint64                   `json:"policy_serial"`
	Passed       uint64                   `json:"passed"`
	Denied       uint64                   `json:"denied"`
	DeniedFlows  uint64                   `json:"denied_flows"`
	Domestic     uint64                   `json:"domestic"`
	Approvals    []contract.ApprovalCount `json:"approvals"`
}

// Feed is one power feed of a relay controller.
type Feed struct {
	ID       string    `json:"id"`
	PowerW   float64   `json:"power_w"`
	CapW     float64   `json:"cap_w"` // 0: no cap
	Status   string    `json:"status,omitempty"`
	Circuits []Circuit `json:"circuits"`
	History  []Point   `json:"history,omitempty"`
}

// Circuit is one circuit's state.
type Circuit struct {
	ID        string `json:"id"`
	On        bool   `json:"on"`
	Protected bool   `json:"protected,omitempty"`
	Priority  int    `json:"priority,omitempty"`
	Mode      string `json:"mode,omitempty"` // auto, on/off by hand, technician-on/off
}

// Point is one sample of a feed's chart.
type Point struct {
	T   int64   `json:"t"` // Unix milliseconds
	P   float64 `json:"p"` // watts
	Cap float64 `json:"cap"`
}

// historyLen bounds each feed's chart (10 minutes at one report per 2 s).
const historyLen = 300

// feedStatus says in a few words how a feed stands.
func feedStatus(meterLost bool, unmet string, power, capKW *float64, pending, technician bool) string {
	switch {
	case technician:
		return "local technician override"
	case meterLost || power == nil:
		return "meter reading unknown: holding"
	case unmet != "":
		return "cap unmet: " + unmet
	case capKW == nil && pending:
		return "cap pending"
	case capKW == nil:
		return "no cap"
	case *power > *capKW:
		return "over cap: shedding"
	default:
		return "within cap"
	}
}

func (d *Device) applyState(s *contract.State) {
	// Brokers may deliver a device's state messages out of order (a
	// retained copy sent on subscribe racing a live one; mochi reorders QoS 1
	// deliveries): within one boot, an online state older than the one shown
	// is stale. Wills always apply: they are stamped when set, at connect.
	if s.Online && d.Online && s.BootID == d.BootID && s.TS.Before(d.StateAt) {
		return
	}
	d.Online, d.BootID, d.StateAt = s.Online, s.BootID, s.TS
	if !s.Online {
		return
	}
	if s.Site != "" {
		d.Site = s.Site
	}
	if s.Kind != "" {
		d.Kind = s.Kind
	}
	d.Version, d.Capabilities = s.Version, s.Capabilities
	if s.Policy != nil {
		d.PolicySerial, d.PolicyExpires = s.Policy.Serial, s.Policy.Expires
	}
}

// applyTelemetry takes t's sections decoded (nil: absent or malformed).
func (d *Device) applyTelemetry(t *contract.Telemetry, l *contract.Links, fs contract.Feeds) {
	d.gaps.see(t.BootID, t.Seq)
	d.TelemetryMissing = d.gaps.missing()
	if t.TS.Before(d.TelemetryAt) {
		return // a late redelivery: counted, but not newer than what is shown
	}
	d.TelemetryAt = t.TS
	d.QueueDepth = t.Agent.Queue.Depth
	if l != nil {
		d.Filter = &Filter{PolicySerial: l.PolicySerial, Passed: l.Passed, Denied: l.Denied, DeniedFlows: l.DeniedFlows,
			Domestic: l.Domestic, Approvals: l.Approvals}
	}
	for _, in := range fs {
		i := slices.IndexFunc(d.Feeds, func(f *Feed) bool { return f.ID == in.Feed })
		if i < 0 {
			d.Feeds = append(d.Feeds, &Feed{ID: in.Feed})
			i = len(d.Feeds) - 1
		}
		f := d.Feeds[i]
		f.PowerW, f.CapW = 0, 0
		if in.PowerKW != nil {
			f.PowerW = *in.PowerKW * 1000
		}
		if in.CapKW != nil {
			f.CapW = *in.CapKW * 1000
		}
		f.Status = feedStatus(in.MeterLost, in.Unmet, in.PowerKW, in.CapKW, in.Order != nil, in.Technician != nil)
		f.Circuits = make([]Circuit, 0, len(in.Circuits))
		for _, c := range in.Circuits {
			f.Circuits = append(f.Circuits, Circuit{ID: c.ID, On: c.On, Protected: c.Protected, Priority: c.Priority, Mode: c.Mode})
		}
		f.History = append(f.History, Point{T: t.TS.UnixMilli(), P: f.PowerW, Cap: f.CapW})
		if n := len(f.History); n > historyLen {
			f.History = slices.Delete(f.History, 0, n-historyLen)
		}
	}
	if len(fs) > 0 {
		sort.Slice(d.Feeds, func(i, j int) bool { return d.Feeds[i].ID < d.Feeds[j].ID })
	}
}

// clone copies d deeply enough for a reader outside the lock.
func (d *Device) clone() Device {
	c := *d
	c.gaps = telemetryGaps{} // the console's own bookkeeping
	if d.Filter != nil {
		f := *d.Filter
		f.Approvals = slices.Clone(f.Approvals)
		c.Filter = &f
	}
	c.Feeds = make([]*Feed, len(d.Feeds))
	for i, f := range d.Feeds {
		fc := *f
		fc.Circuits = slices.Clone(f.Circuits)
		fc.History = slices.Clone(f.History)
		c.Feeds[i] = &fc
	}
	return c
}

// EventRecord is one event the console received.
type EventRecord struct {
	N int64 `json:"n"` // the console's own arrival number
	contract.Event
}

// EventFilter selects events.
type EventFilter struct {
	Device   string
	Type     string // prefix: "policy" matches policy.applied and policy.rejected
	Severity string // minimum
	After    int64  // only events with N > After
	Limit    int
}

var sevRank = map[string]int{"info": 0, "notice": 1, "warning": 2, "error": 3, "critical": 4}

func (f *EventFilter) match(e *EventRecord) bool {
	if e.N <= f.After {
		return false
	}
	if f.Device != "" && e.Device != f.Device {
		return false
	}
	if f.Type != "" && !strings.HasPrefix(e.Type, f.Type) {
		return false
	}
	if f.Severity != "" && sevRank[e.Severity] < sevRank[f.Severity] {
		return false
	}
	return true
}

// Action is something the operator did and what the devices answered.
type Action struct {
	ID      string            `json:"id"`
	Kind    string            `json:"kind"` // revoke, approve, throttle.set, throttle.clear, rebirth
	Target  string            `json:"target"`
	Detail  string            `json:"detail"`
	At      time.Time         `json:"at"`
	Serial  uint64            `json:"serial,omitempty"`  // policy actions: the new serial
	Results []contract.Result `json:"results,omitempty"` // commands: each device's answer
	Applied []string          `json:"applied,omitempty"` // policy actions: devices now enforcing Serial
	By      []string          `json:"by,omitempty"`      // the operators who signed it
}
