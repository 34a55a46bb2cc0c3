package contract

import (
	"encoding/json"
	"fmt"
	"time"
)

// Section names: the keys of a telemetry message's sections, one per
// reporting component. The telemetry schema admits these and no others.
const (
	SectionLinks = "links" // the packet filter (routers)
	SectionFeeds = "feeds" // the feed controller (relay controllers)
	// SectionRemotes is the international traffic since the last
	// telemetry, by remote prefix, service and verdict (routers).
	SectionRemotes = "remotes"
)

// Links is the packet filter's telemetry section: its counters since the
// agent started, the capture ports' kernel counters and the bridge's.
// Frames are counted as on the wire: a super-frame counts its segments.
type Links struct {
	Mode         string `json:"mode"` // inline | monitor
	PolicySerial uint64 `json:"policy_serial"`
	Passed       uint64 `json:"passed"`
	PassedBytes  uint64 `json:"passed_bytes"`
	// Denied frames were dropped (inline) or reported (monitor).
	Denied      uint64 `json:"denied"`
	DeniedBytes uint64 `json:"denied_bytes"`
	DeniedFlows uint64 `json:"denied_flows"`
	Domestic    uint64 `json:"domestic"`
	LinkControl uint64 `json:"link_control"`
	// Other frames are not IP and not link control: the filter cannot
	// classify them.
	Other            uint64 `json:"other"`
	Malformed        uint64 `json:"malformed"`
	Truncated        uint64 `json:"truncated"`
	SuperFrames      uint64 `json:"super_frames"` // GRO/GSO frames judged whole
	FragmentsUnknown uint64 `json:"fragments_unknown"`
	// Tunnelled frames carried more than one header pair (each judged);
	// Fragments are later fragments judged by their datagram;
	// FragmentOverlaps fragments dropped because their datagram overlapped.
	Tunnelled        uint64 `json:"tunnelled"`
	Fragments        uint64 `json:"fragments"`
	FragmentOverlaps uint64 `json:"fragment_overlaps"`
	// Spoofed frames had a source that does not belong on their side;
	// TCPNoSYN were segments of connections not seen opening;
	// LinkControlLimited link-control frames past their protocol's rate.
	Spoofed            uint64 `json:"spoofed"`
	TCPNoSYN           uint64 `json:"tcp_no_syn"`
	LinkControlLimited uint64 `json:"link_control_limited"`
	// Techniques counts frames denied (or reported) per evasion technique:
	// tunnel, spoofed, covert-link-control, ...
	Techniques       map[string]uint64 `json:"techniques,omitempty"`
	NewFlows         uint64            `json:"new_flows"`
	Flows            int               `json:"flows"` // in the table now
	FlowCap          int               `json:"flow_cap"`
	FlowsEvicted     uint64            `json:"flows_evicted"`
	FlowsExpired     uint64            `json:"flows_expired"`
	Events           uint64            `json:"events"`
	EventsSuppressed uint64            `json:"events_suppressed"`
	EvidenceFrames   uint64            `json:"evidence_frames"`
	Resets           uint64            `json:"resets"`
	PolicySwaps      uint64            `json:"policy_swaps"`
	// Approvals is the traffic each approval carried, by id; approvals
	// that carried nothing are left out.
	Approvals []ApprovalCount `json:"approvals"`
	Ports     []PortCounters  `json:"ports"`
	// WriteErrors counts frames a port refused to send; OffloadMismatches
	// super-frames dropped because their offload metadata did not match
	// their packet; ChecksumsCompleted frames that arrived with a partial
	// checksum (the sender's offload) and left with a complete one
	// (inline mode).
	WriteErrors        uint64 `json:"write_errors"`
	OffloadMismatches  uint64 `json:"offload_mismatches"`
	ChecksumsCompleted uint64 `json:"checksums_completed"`
}

// ApprovalCount is the traffic one approval carried.
type ApprovalCount struct {
	ID      string `json:"id"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// PortCounters are a capture port's kernel counters since the agent
// started.
type PortCounters struct {
	Name     string `json:"name"`
	Received uint64 `json:"received"`
	// RingDropped frames were lost because the receive ring was full: the
	// agent did not keep up.
	RingDropped uint64 `json:"ring_dropped"`
}

// Feeds is the feed controller's telemetry section: one entry per feed.
type Feeds []Feed

// Feed is the state of one feed. PowerKW is nil when the reading is unknown
// (stale or bad), never zero for unknown; CapKW is nil without a cap.
type Feed struct {
	Feed       string         `json:"feed"`
	Time       time.Time      `json:"time"`
	PowerKW    *float64       `json:"power_kw"`
	ReadingAt  time.Time      `json:"reading_at,omitzero"`
	MeterLost  bool           `json:"meter_lost,omitempty"`
	CapKW      *float64       `json:"cap_kw"`          // the effective cap now (ramp applied)
	Order      *ThrottleOrder `json:"order,omitempty"` // the accepted order, active or pending
	CapStart   time.Time      `json:"cap_start,omitzero"`
	Unmet      string         `json:"unmet,omitempty"` // why the cap cannot be met, while it cannot
	Technician *Override      `json:"technician,omitempty"`
	Circuits   []Circuit      `json:"circuits"`
}

// ThrottleOrder is an accepted throttle.set.
type ThrottleOrder struct {
	Feed  string    `json:"feed"`
	CapKW float64   `json:"cap_kw"`
	From  time.Time `json:"from,omitzero"`
	Until time.Time `json:"until,omitzero"`
	Ramp  string    `json:"ramp,omitempty"` // a Go duration: "2m0s"
}

// Override is a local technician's override of a feed.
type Override struct {
	Reason   string            `json:"reason"`
	Hold     bool              `json:"hold,omitempty"`
	Circuits map[string]string `json:"circuits,omitempty"` // circuit -> on | off
	// AllowRemote names protected circuits a relay.set may switch with one
	// grid signature while the file lists them: the technician at the
	// device is the second party.
	AllowRemote []string `json:"allow_remote,omitempty"`
}

// Circuit is the state of one circuit of a feed.
type Circuit struct {
	ID        string `json:"id"`
	On        bool   `json:"on"`
	Protected bool   `json:"protected,omitempty"`
	Priority  int    `json:"priority,omitempty"`
	// Mode is auto, on or off (set by hand), technician-on or
	// technician-off.
	Mode        string    `json:"mode"`
	Drift       bool      `json:"drift,omitempty"`
	LoadKW      float64   `json:"load_kw,omitempty"` // learned draw
	OpsLastHour int       `json:"ops_last_hour"`
	NextAllowed time.Time `json:"next_allowed,omitzero"` // when it may next change state, if later than now
}

// Links decodes the links section; nil when the message has none.
func (t *Telemetry) Links() (*Links, error) {
	raw, ok := t.Sections[SectionLinks]
	if !ok {
		return nil, nil
	}
	var l Links
	if err := json.Unmarshal(raw, &l); err != nil {
		return nil, fmt.Errorf("contract: %s section: %w", SectionLinks, err)
	}
	return &l, nil
}

// Feeds decodes the feeds section; nil when the message has none.
func (t *Telemetry) Feeds() (Feeds, error) {
	raw, ok := t.Sections[SectionFeeds]
	if !ok {
		return nil, nil
	}
	var f Feeds
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("contract: %s section: %w", SectionFeeds, err)
	}
	return f, nil
}

// MaxRemotes bounds the entries of a remotes section.
const MaxRemotes = 256

// Remotes is the router's international traffic since its last telemetry:
// the top remote prefixes (a /24 for IPv4, a /48 for IPv6) by service and
// verdict, heaviest first, at most MaxRemotes, and the rest summed in
// Other. A flow counts under the verdict it has now; flows that ended
// between two telemetry messages count in neither.
type Remotes struct {
	IntervalS float64         `json:"interval_s"`
	Top       []RemoteTraffic `json:"top"`
	Other     RemoteTotals    `json:"other"`
}

// RemoteTraffic is the traffic between the inside and one remote prefix
// for one service and verdict. Flows counts the flows that carried any of
// it; DPort is zero for a protocol without ports.
type RemoteTraffic struct {
	Prefix   string `json:"prefix"`
	Proto    string `json:"proto"`
	DPort    uint16 `json:"dport,omitempty"`
	Verdict  string `json:"verdict"`            // approved | denied | monitored
	Approval string `json:"approval,omitempty"` // the approval that carried it (approved)
	RemoteTotals
}

// RemoteTotals sums traffic.
type RemoteTotals struct {
	Flows   uint64 `json:"flows"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Remotes decodes the remotes section; nil when the message has none.
func (t *Telemetry) Remotes() (*Remotes, error) {
	raw, ok := t.Sections[SectionRemotes]
	if !ok {
		return nil, nil
	}
	var r Remotes
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("contract: %s section: %w", SectionRemotes, err)
	}
	if len(r.Top) > MaxRemotes {
		return nil, fmt.Errorf("contract: %s section: %d entries, at most %d", SectionRemotes, len(r.Top), MaxRemotes)
	}
	return &r, nil
}
