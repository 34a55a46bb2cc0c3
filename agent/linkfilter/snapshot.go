package linkfilter

import "sort"

// ApprovalCount is the traffic one approval carried.
type ApprovalCount struct {
	ID      string `json:"id"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Snapshot is the filter's counters at one moment, for telemetry.
type Snapshot struct {
	Mode             string `json:"mode"`
	PolicySerial     uint64 `json:"policy_serial"`
	Passed           uint64 `json:"passed"` // frames as on the wire: a super-frame counts its segments
	PassedBytes      uint64 `json:"passed_bytes"`
	Denied           uint64 `json:"denied"` // dropped (inline) or reported (monitor)
	DeniedBytes      uint64 `json:"denied_bytes"`
	DeniedFlows      uint64 `json:"denied_flows"`
	Domestic         uint64 `json:"domestic"`
	LinkControl      uint64 `json:"link_control"`
	Other            uint64 `json:"other"` // non-IP frames the filter cannot classify
	Malformed        uint64 `json:"malformed"`
	Truncated        uint64 `json:"truncated"`
	SuperFrames      uint64 `json:"super_frames"` // GRO/GSO frames judged whole (ports carrying offloads)
	FragmentsUnknown uint64 `json:"fragments_unknown"`
	// Tunnelled frames carried more than one header pair (each judged);
	// Fragments are later fragments judged by their datagram;
	// FragmentOverlaps are fragments dropped because their datagram
	// overlapped (the overlapping one and every one after it).
	Tunnelled        uint64 `json:"tunnelled"`
	Fragments        uint64 `json:"fragments"`
	FragmentOverlaps uint64 `json:"fragment_overlaps"`
	// Spoofed frames had a source that does not belong on their side;
	// TCPNoSYN were TCP segments of connections not seen opening;
	// LinkControlLimited link-control frames past their protocol's rate.
	Spoofed            uint64 `json:"spoofed"`
	TCPNoSYN           uint64 `json:"tcp_no_syn"`
	LinkControlLimited uint64 `json:"link_control_limited"`
	// Techniques counts frames denied (or, in monitor mode, reported) per
	// technique: tunnel, spoofed, covert-link-control, ...
	Techniques       map[string]uint64 `json:"techniques,omitempty"`
	NewFlows         uint64            `json:"new_flows"`
	Flows            int               `json:"flows"` // in the table now
	FlowCap          int               `json:"flow_cap"`
	FlowsEvicted     uint64            `json:"flows_evicted"` // dropped from a full table
	FlowsExpired     uint64            `json:"flows_expired"`
	Events           uint64            `json:"events"`
	EventsSuppressed uint64            `json:"events_suppressed"`
	EvidenceFrames   uint64            `json:"evidence_frames"`
	Resets           uint64            `json:"resets"`
	PolicySwaps      uint64            `json:"policy_swaps"`
	Approvals        []ApprovalCount   `json:"approvals"`
}

// Snapshot reads the counters. Cheap enough for a telemetry tick; not for
// the packet path.
func (f *Filter) Snapshot() Snapshot {
	st := f.state.Load()
	s := Snapshot{
		Mode:               f.o.Mode.String(),
		Passed:             f.c.passed.Load(),
		PassedBytes:        f.c.passedBytes.Load(),
		Denied:             f.c.denied.Load(),
		DeniedBytes:        f.c.deniedBytes.Load(),
		DeniedFlows:        f.c.deniedFlows.Load(),
		Domestic:           f.c.domestic.Load(),
		LinkControl:        f.c.linkControl.Load(),
		Other:              f.c.other.Load(),
		Malformed:          f.c.malformed.Load(),
		Truncated:          f.c.truncated.Load(),
		SuperFrames:        f.c.superFrames.Load(),
		FragmentsUnknown:   f.c.fragUnknown.Load(),
		Tunnelled:          f.c.tunnelled.Load(),
		Fragments:          f.c.fragments.Load(),
		FragmentOverlaps:   f.c.fragOverlap.Load(),
		Spoofed:            f.c.spoofed.Load(),
		TCPNoSYN:           f.c.noSYN.Load(),
		LinkControlLimited: f.c.linkControlLimited.Load(),
		NewFlows:           f.c.newFlows.Load(),
		Events:             f.c.eventsSent.Load(),
		EventsSuppressed:   f.c.eventsQuiet.Load(),
		EvidenceFrames:     f.c.evidence.Load(),
		Resets:             f.c.resets.Load(),
		PolicySwaps:        f.c.swaps.Load(),
	}
	if st.m != nil {
		s.PolicySerial = st.m.Policy().Serial
	}
	for t := range f.c.techniques {
		if n := f.c.techniques[t].Load(); n > 0 {
			if s.Techniques == nil {
				s.Techniques = map[string]uint64{}
			}
			s.Techniques[Technique(t).String()] = n
		}
	}
	for _, sh := range f.shards {
		sh.mu.Lock()
		s.Flows += len(sh.ents)
		s.FlowCap += sh.limit
		s.FlowsEvicted += sh.evicted
		s.FlowsExpired += sh.expired
		s.Passed += sh.passed
		s.PassedBytes += sh.passedBytes
		s.Domestic += sh.domestic
		sh.mu.Unlock()
	}
	f.retiredMu.Lock()
	byID := make(map[string]ApprovalCount, len(f.retired)+len(st.counts))
	for id, c := range f.retired {
		byID[id] = c
	}
	f.retiredMu.Unlock()
	for i := range st.counts {
		a := st.m.Approval(int32(i))
		c := byID[a.ID]
		c.ID = a.ID
		c.Packets += st.counts[i].pkts.Load()
		c.Bytes += st.counts[i].bytes.Load()
		byID[a.ID] = c
	}
	for _, c := range byID {
		if c.Packets > 0 {
			s.Approvals = append(s.Approvals, c)
		}
	}
	sort.Slice(s.Approvals, func(i, j int) bool { return s.Approvals[i].ID < s.Approvals[j].ID })
	return s
}
