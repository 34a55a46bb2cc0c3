package linkfilter

import (
	"context"
	"net/netip"
	"sort"
	"time"

	"linkguard.dev/linkguard/agent/linkfilter/packet"
	"linkguard.dev/linkguard/hal/capture"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/match"
)

// ReplayFlow is one flow of a replayed capture.
type ReplayFlow struct {
	Src      netip.Addr `json:"src"` // the end that sent the first frame seen
	Dst      netip.Addr `json:"dst"`
	Proto    string     `json:"proto"`
	SPort    uint16     `json:"sport"`
	DPort    uint16     `json:"dport"`
	Verdict  string     `json:"verdict"` // of the flow's last frame
	Reason   string     `json:"reason"`
	Approval string     `json:"approval,omitempty"`
	// Via is how a flow inside a tunnel was carried ("ipip 192.0.2.1 ->
	// 192.0.2.2"), Technique what a denied flow was (tunnel, spoofed, ...).
	Via       string    `json:"via,omitempty"`
	Technique string    `json:"technique,omitempty"`
	Packets   uint64    `json:"packets"`
	Bytes     uint64    `json:"bytes"`
	Dropped   uint64    `json:"dropped"` // frames inline mode would drop
	First     time.Time `json:"first"`
}

// ReplayResult is what a policy did to a capture.
type ReplayResult struct {
	Frames   uint64            `json:"frames"`
	Passed   uint64            `json:"passed"`
	Dropped  uint64            `json:"dropped"`
	Verdicts map[string]uint64 `json:"verdicts"` // frames per verdict
	Kinds    map[string]uint64 `json:"kinds"`    // frames per kind (ip, link-control, other, malformed)
	// Techniques counts denied frames per technique (tunnel, spoofed,
	// covert-link-control, ...).
	Techniques map[string]uint64 `json:"techniques,omitempty"`
	Flows      []ReplayFlow      `json:"flows"`
	Error      string            `json:"error,omitempty"` // why reading stopped early (damaged file)
	Counters   Snapshot          `json:"counters"`
}

// Replay runs every frame of src through f as inline mode would and
// collects per-flow verdicts. Reading stops at the end of the capture, at a
// damaged record (reported in Error, not returned) or when ctx ends.
func Replay(ctx context.Context, f *Filter, src capture.Reader) *ReplayResult {
	res := &ReplayResult{Verdicts: map[string]uint64{}, Kinds: map[string]uint64{}, Techniques: map[string]uint64{}}
	flows := map[FlowRef]*ReplayFlow{}
	var order []FlowRef
	err := judgeEach(ctx, f, src, SideUnknown, func(frame []byte, info capture.Info, p *packet.Packet, r Result) {
		res.Frames++
		res.Kinds[p.Kind.String()]++
		if r.Technique != TechNone && (r.Action == Drop || r.Verdict == match.Monitored) {
			res.Techniques[r.Technique.String()]++
		}
		if r.Action == Drop {
			res.Dropped++
		} else {
			res.Passed++
		}
		v := r.Verdict.String()
		if r.Verdict == 0 {
			v = "pass"
		}
		res.Verdicts[v]++
		if r.Flow == (FlowRef{}) {
			return
		}
		rf := flows[r.Flow]
		if rf == nil {
			l := &p.L[r.Layer]
			rf = &ReplayFlow{Src: l.Src, Dst: l.Dst, Proto: policy.ProtoName(l.Proto), SPort: l.SPort, DPort: l.DPort,
				First: info.Timestamp, Via: p.Via(r.Layer)}
			flows[r.Flow] = rf
			order = append(order, r.Flow)
		}
		rf.Verdict, rf.Reason, rf.Approval, rf.Technique = v, r.Reason.String(), "", r.Technique.String()
		if m := f.Matcher(); m != nil && r.Verdict == match.Approved {
			if a := m.Approval(r.Approval); a != nil {
				rf.Approval = a.ID
			}
		}
		rf.Packets++
		rf.Bytes += uint64(info.Length)
		if r.Action == Drop {
			rf.Dropped++
		}
	})
	if err != nil {
		res.Error = err.Error()
	}
	for _, k := range order {
		res.Flows = append(res.Flows, *flows[k])
	}
	sort.SliceStable(res.Flows, func(i, j int) bool { return res.Flows[i].First.Before(res.Flows[j].First) })
	res.Counters = f.Snapshot()
	return res
}
