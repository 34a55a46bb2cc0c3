package agent

import (
	"cmp"
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"slices"
	"sync"
	"time"

	"linkguard.dev/linkguard/agent/linkfilter"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/match"
)

// remotes builds the telemetry's remotes section: what crossed the border
// since the last message, by remote prefix, service and verdict. It reads
// the flow table at telemetry time (Filter.Flows) and takes each flow's
// increase since the previous read, so the packet path does no work for
// it. Its memory is two counters per flow in the table (bounded by
// links.max_flows) and one entry per distinct remote × service × verdict.
type remotes struct {
	flows func() []linkfilter.FlowInfo
	// matcher names the approval of a decision (nil: no policy yet).
	matcher func() *match.Matcher
	top     int

	mu   sync.Mutex
	seed maphash.Seed
	last time.Time
	// prev and cur are each flow's counters at the last read and this
	// one, by a hash of the flow's identity; swapped at each read.
	prev, cur map[uint64]flowCount
	index     map[remoteKey]int // into agg
	agg       []remoteAgg
}

type remoteAgg struct {
	k remoteKey
	t contract.RemoteTotals
}

type flowCount struct{ packets, bytes uint64 }

type remoteKey struct {
	prefix   netip.Prefix
	proto    uint8
	dport    uint16
	verdict  match.Verdict
	approval int32
}

func newRemotes(f *linkfilter.Filter) *remotes {
	return &remotes{flows: f.Flows, matcher: f.Matcher, top: contract.MaxRemotes, seed: maphash.MakeSeed(),
		prev: map[uint64]flowCount{}, cur: map[uint64]flowCount{}, index: map[remoteKey]int{}}
}

// flowID hashes what tells a flow from every other: its ends, ports,
// layer and when it opened (a 5-tuple reused later is another flow).
func (r *remotes) flowID(h *maphash.Hash, fl *linkfilter.FlowInfo) uint64 {
	h.Reset()
	var b [16 + 16 + 2 + 2 + 1 + 1 + 8]byte
	s, d := fl.Src.As16(), fl.Dst.As16()
	copy(b[0:], s[:])
	copy(b[16:], d[:])
	binary.LittleEndian.PutUint16(b[32:], fl.SPort)
	binary.LittleEndian.PutUint16(b[34:], fl.DPort)
	b[36], b[37] = fl.Proto, byte(fl.Layer)
	binary.LittleEndian.PutUint64(b[38:], uint64(fl.First.UnixNano()))
	h.Write(b[:])
	return h.Sum64()
}

// remotePrefix is the prefix an international end is reported under.
func remotePrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p
}

// section is the remotes section for a telemetry message taken now.
func (r *remotes) section() any { return r.read(time.Now()) }

func (r *remotes) read(now time.Time) contract.Remotes {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := contract.Remotes{Top: []contract.RemoteTraffic{}}
	if !r.last.IsZero() {
		out.IntervalS = now.Sub(r.last).Seconds()
	}
	r.last = now
	var h maphash.Hash
	h.SetSeed(r.seed)
	clear(r.cur)
	clear(r.index)
	r.agg = r.agg[:0]
	var m *match.Matcher
	if r.matcher != nil {
		m = r.matcher()
	}
	if m == nil {
		return out // no policy yet: nothing is judged international
	}
	for _, fl := range r.flows() {
		d := &fl.Decision
		if d.Verdict == match.Domestic {
			continue
		}
		// The flow table keeps both ends, not which was judged: the
		// international one is the end outside domestic space.
		remote := fl.Dst
		if m.IsDomestic(remote) {
			remote = fl.Src
		}
		id := r.flowID(&h, &fl)
		c := flowCount{fl.Packets, fl.Bytes}
		r.cur[id] = c
		was := r.prev[id]
		if c.packets < was.packets || c.bytes < was.bytes {
			was = flowCount{} // not the same flow after all
		}
		dp, db := c.packets-was.packets, c.bytes-was.bytes
		if dp == 0 && db == 0 {
			continue
		}
		k := remoteKey{prefix: remotePrefix(remote), proto: fl.Proto, verdict: d.Verdict, approval: -1}
		if match.HasPorts(fl.Proto) {
			k.dport = fl.DPort
		}
		if d.Verdict == match.Approved {
			k.approval = d.Approval
		}
		i, ok := r.index[k]
		if !ok {
			i = len(r.agg)
			r.index[k] = i
			r.agg = append(r.agg, remoteAgg{k: k})
		}
		t := &r.agg[i].t
		t.Flows++
		t.Packets += dp
		t.Bytes += db
	}
	r.prev, r.cur = r.cur, r.prev
	slices.SortFunc(r.agg, func(a, b remoteAgg) int {
		x, y := a.k, b.k
		return cmp.Or(cmp.Compare(b.t.Bytes, a.t.Bytes), cmp.Compare(b.t.Packets, a.t.Packets), x.prefix.Addr().Compare(y.prefix.Addr()),
			cmp.Compare(x.proto, y.proto), cmp.Compare(x.dport, y.dport), cmp.Compare(x.verdict, y.verdict))
	})
	for i := range r.agg {
		k, t := r.agg[i].k, r.agg[i].t
		if i >= r.top {
			out.Other.Flows += t.Flows
			out.Other.Packets += t.Packets
			out.Other.Bytes += t.Bytes
			continue
		}
		e := contract.RemoteTraffic{Prefix: k.prefix.String(), Proto: policy.ProtoName(k.proto), DPort: k.dport, Verdict: k.verdict.String(), RemoteTotals: t}
		if a := m.Approval(k.approval); a != nil {
			e.Approval = a.ID
		}
		out.Top = append(out.Top, e)
	}
	return out
}
