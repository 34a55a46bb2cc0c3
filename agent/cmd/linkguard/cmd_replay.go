package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/agent/linkfilter"
	"linkguard.dev/linkguard/agent/linkfilter/packet"
	"linkguard.dev/linkguard/hal/capture"
	"linkguard.dev/linkguard/hal/capture/pcapfile"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/match"
)

func newReplayCmd() *cobra.Command {
	var ps policySource
	var compare string
	var asJSON bool
	var top int
	cmd := &cobra.Command{
		Use:   "replay {--policy FILE --trust PUB... | --draft FILE | --config FILE} [--site S] [--compare NEW] CAPTURE|DIR...",
		Short: "Run captures through the real classifier and print per-flow verdicts and totals",
		Long: "Runs every frame of pcap or pcapng captures (files, or directories of *.pcap, *.pcapng, *.cap)\n" +
			"through the packet filter as inline mode would, and prints what the policy does to each flow,\n" +
			"then totals per approval, per remote prefix and per service: what a policy would do to real\n" +
			"traffic before it is rolled out. Flows are judged at --at (default: now), not at the capture's time.\n" +
			"A capture of a link type the filter does not decode (802.11, ARCNET, ...) is reported as skipped,\n" +
			"never as denied. --compare NEW judges the same traffic under a second policy (signed, verified with\n" +
			"the same trust, or an unsigned YAML draft) and lists the flows whose verdict changes.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			j, err := ps.load(cmd, "replaying")
			if err != nil {
				return err
			}
			var next *judged
			if compare != "" {
				if next, err = ps.loadCompare(cmd, compare, j); err != nil {
					return err
				}
			}
			ms := []*match.Matcher{j.m}
			if next != nil {
				ms = append(ms, next.m)
			}
			if err := checkSite(j.site, j.deviceSite, ms...); err != nil {
				return err
			}
			files, err := captureFiles(args)
			if err != nil {
				return err
			}
			rep := &replayReport{Policy: j.label}
			if next != nil {
				rep.Compare = next.label
			}
			for _, name := range files {
				c, err := replayFile(cmd, name, j, next)
				if err != nil {
					return err
				}
				rep.Captures = append(rep.Captures, c)
			}
			rep.total(j.m, top)
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			printReport(cmd.OutOrStdout(), rep, j.draft)
			return nil
		},
	}
	ps.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&compare, "compare", "", "a second policy (signed, or an unsigned YAML draft) to judge the same traffic with")
	fl.IntVar(&top, "top", 10, "rows in the per-remote and per-service totals")
	fl.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// loadCompare loads the policy --compare names: a signed envelope is
// verified with the same trust as the first; a YAML document is an
// unsigned draft, labelled as one.
func (s *policySource) loadCompare(cmd *cobra.Command, path string, first *judged) (*judged, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	j := &judged{now: first.now, site: first.site}
	var p *policy.Policy
	if looksSigned(data) {
		v, err := s.verifyFile(cmd.ErrOrStderr(), path, first.now)
		if v == nil {
			return nil, err
		}
		p, j.label = v.Policy, "serial "+fmt.Sprint(v.Policy.Serial)
	} else {
		if p, err = loadDraft(path); err != nil {
			return nil, err
		}
		j.draft, j.label = true, "UNSIGNED DRAFT, serial "+fmt.Sprint(p.Serial)
	}
	j.m = match.Compile(p)
	return j, nil
}

// captureFiles expands directories into the captures they hold, sorted.
func captureFiles(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		ents, err := os.ReadDir(a)
		if err != nil {
			return nil, err
		}
		n := len(out)
		for _, e := range ents {
			switch filepath.Ext(e.Name()) {
			case ".pcap", ".pcapng", ".cap":
				if e.Type().IsRegular() {
					out = append(out, filepath.Join(a, e.Name()))
				}
			}
		}
		if len(out) == n {
			return nil, fmt.Errorf("%s: no *.pcap, *.pcapng or *.cap files in the directory", a)
		}
	}
	return out, nil
}

// replayReport is what one or two policies did to a set of captures.
type replayReport struct {
	Policy   string          `json:"policy"`
	Compare  string          `json:"compare,omitempty"`
	Captures []captureReport `json:"captures"`
	// Totals over every decoded capture, under Policy.
	Approvals []total `json:"approvals"`
	Remotes   []total `json:"remotes"`
	Services  []total `json:"services"`
	// Changes lists the flows whose verdict differs under Compare.
	Changes []flowChange `json:"changes,omitempty"`
}

// captureReport is one capture: skipped when its link type is not decoded.
type captureReport struct {
	File     string                   `json:"file"`
	LinkType string                   `json:"link_type"`
	Skipped  uint64                   `json:"skipped,omitempty"` // frames of an undecoded link type
	Result   *linkfilter.ReplayResult `json:"result,omitempty"`
	Compared *linkfilter.ReplayResult `json:"compared,omitempty"`
	// icmp holds the type and code each ICMP flow opened with.
	icmp map[flowKey][2]uint8
}

// total is one row of a breakdown.
type total struct {
	Key     string `json:"key"`
	Flows   int    `json:"flows"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	Dropped uint64 `json:"dropped"`
}

// flowChange is a flow judged differently by the second policy.
type flowChange struct {
	File   string `json:"file"`
	Change string `json:"change"` // newly denied, newly allowed, changed
	Flow   string `json:"flow"`
	Before string `json:"before"`
	After  string `json:"after"`
}

// flowKey names a flow the same way in both runs and in the ICMP notes.
type flowKey struct {
	src, dst     netip.Addr
	proto        string
	sport, dport uint16
	via          string
}

func keyOf(f *linkfilter.ReplayFlow) flowKey {
	return flowKey{f.Src, f.Dst, f.Proto, f.SPort, f.DPort, f.Via}
}

// replayFile replays one capture under j (and next, if set).
func replayFile(cmd *cobra.Command, name string, j, next *judged) (captureReport, error) {
	c := captureReport{File: name}
	run := func(jj *judged, notes bool) (*linkfilter.ReplayResult, error) {
		src, err := capture.OpenFile(name)
		if err != nil {
			return nil, err
		}
		defer src.Close()
		lt := src.LinkType()
		c.LinkType = linkName(lt)
		f := linkfilter.New(linkfilter.Options{Site: jj.site, MaxFlows: 1 << 20, DecideAt: jj.now.UnixNano()})
		if !f.NewDecoder(lt).Supported() {
			c.Skipped, err = countFrames(src)
			return nil, err
		}
		f.SetMatcher(jj.m)
		var r capture.Reader = src
		if notes {
			c.icmp = map[flowKey][2]uint8{}
			r = &icmpNotes{File: src, dec: f.NewDecoder(lt), seen: c.icmp}
		}
		return linkfilter.Replay(cmd.Context(), f, r), nil
	}
	var err error
	if c.Result, err = run(j, true); err != nil || c.Result == nil || next == nil {
		return c, err
	}
	c.Compared, err = run(next, false)
	return c, err
}

// linkName names a link type with its number, as captures and tcpdump's
// -L list spell them.
func linkName(lt pcapfile.LinkType) string {
	n := lt.Name()
	if n == "" {
		n = "unknown"
	}
	return fmt.Sprintf("%d (%s)", uint16(lt), n)
}

// countFrames reads a capture to its end, counting its frames.
func countFrames(src capture.Reader) (uint64, error) {
	buf := make([]byte, 1<<16)
	var n uint64
	for {
		_, err := src.ReadFrame(buf)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
	}
}

// icmpNotes passes frames through to the filter, noting the ICMP type and
// code each ICMP flow's first frame carries: the filter keys ICMP flows by
// their echo identifier, which a technician should not read as a port.
type icmpNotes struct {
	*capture.File
	dec  *packet.Decoder
	p    packet.Packet
	seen map[flowKey][2]uint8
}

func (n *icmpNotes) ReadFrame(buf []byte) (capture.Info, error) {
	info, err := n.File.ReadFrame(buf)
	if err != nil {
		return info, err
	}
	n.dec.Decode(buf[:info.CaptureLength], info.Truncated(), &n.p)
	for i := range n.p.N {
		l := &n.p.L[i]
		if !l.L4 || (l.Proto != packet.ProtoICMP && l.Proto != packet.ProtoICMPv6) {
			continue
		}
		k := flowKey{l.Src, l.Dst, policy.ProtoName(l.Proto), l.SPort, l.DPort, n.p.Via(i)}
		if _, ok := n.seen[k]; !ok {
			n.seen[k] = [2]uint8{l.ICMPType, l.ICMPCode}
		}
	}
	return info, nil
}

func (n *icmpNotes) LinkType() pcapfile.LinkType { return n.File.LinkType() }

// total fills the breakdowns and the changes.
func (r *replayReport) total(m *match.Matcher, top int) {
	apps, remotes, svcs := map[string]*total{}, map[string]*total{}, map[string]*total{}
	add := func(into map[string]*total, key string, f *linkfilter.ReplayFlow) {
		t := into[key]
		if t == nil {
			t = &total{Key: key}
			into[key] = t
		}
		t.Flows++
		t.Packets += f.Packets
		t.Bytes += f.Bytes
		t.Dropped += f.Dropped
	}
	for ci := range r.Captures {
		c := &r.Captures[ci]
		if c.Result == nil {
			continue
		}
		for i := range c.Result.Flows {
			f := &c.Result.Flows[i]
			add(apps, outcome(f), f)
			if rem, ok := remoteOf(m, f); ok {
				add(remotes, rem, f)
			}
			add(svcs, c.service(f), f)
		}
		if c.Compared != nil {
			r.Changes = append(r.Changes, c.changes()...)
		}
	}
	r.Approvals = sorted(apps, 0)
	r.Remotes = sorted(remotes, top)
	r.Services = sorted(svcs, top)
}

// outcome is what a flow's totals are filed under: its approval, or its
// verdict in parentheses.
func outcome(f *linkfilter.ReplayFlow) string {
	if f.Approval != "" {
		return f.Approval
	}
	return "(" + f.Verdict + ")"
}

// remoteOf is the international end of a flow as a prefix (/24 for IPv4,
// /48 for IPv6, where one customer's or provider's hosts sit together);
// false for a domestic flow.
func remoteOf(m *match.Matcher, f *linkfilter.ReplayFlow) (string, bool) {
	a := f.Dst.Unmap()
	if m.IsDomestic(a) {
		if a = f.Src.Unmap(); m.IsDomestic(a) {
			return "", false
		}
	}
	if !a.IsValid() {
		return "", false
	}
	bits := 24
	if a.Is6() {
		bits = 48
	}
	p, _ := a.Prefix(bits)
	return p.String(), true
}

func sorted(in map[string]*total, top int) []total {
	out := make([]total, 0, len(in))
	for _, t := range in {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b total) int {
		if c := cmp.Compare(b.Bytes, a.Bytes); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	if top > 0 && len(out) > top {
		out = out[:top]
	}
	return out
}

// service names what a flow was opened to: tcp/443, or icmp 8/0.
func (c *captureReport) service(f *linkfilter.ReplayFlow) string {
	if tc, ok := c.icmp[keyOf(f)]; ok {
		return fmt.Sprintf("%s %d/%d %s", f.Proto, tc[0], tc[1], icmpName(f.Proto, tc[0]))
	}
	if f.DPort == 0 {
		return f.Proto
	}
	return fmt.Sprintf("%s/%d", f.Proto, f.DPort)
}

// icmpName names the common ICMP and ICMPv6 types.
func icmpName(proto string, t uint8) string {
	names := map[uint8]string{0: "echo-reply", 3: "unreachable", 5: "redirect", 8: "echo-request", 11: "time-exceeded"}
	if proto == "icmpv6" {
		names = map[uint8]string{1: "unreachable", 2: "too-big", 3: "time-exceeded", 128: "echo-request", 129: "echo-reply"}
	}
	return names[t]
}

// changes pairs the flows of both runs and lists those judged differently.
func (c *captureReport) changes() []flowChange {
	after := make(map[flowKey]*linkfilter.ReplayFlow, len(c.Compared.Flows))
	for i := range c.Compared.Flows {
		f := &c.Compared.Flows[i]
		after[keyOf(f)] = f
	}
	var out []flowChange
	for i := range c.Result.Flows {
		b := &c.Result.Flows[i]
		a := after[keyOf(b)]
		if a == nil || (a.Verdict == b.Verdict && a.Approval == b.Approval) {
			continue
		}
		ch := flowChange{File: c.File, Change: "changed", Flow: c.flowName(b), Before: judgedAs(b), After: judgedAs(a)}
		switch {
		case a.Dropped > 0 && b.Dropped == 0:
			ch.Change = "newly denied"
		case a.Dropped == 0 && b.Dropped > 0:
			ch.Change = "newly allowed"
		}
		out = append(out, ch)
	}
	return out
}

func judgedAs(f *linkfilter.ReplayFlow) string {
	if f.Approval != "" {
		return f.Verdict + " " + f.Approval
	}
	return f.Verdict + " (" + f.Reason + ")"
}

func (c *captureReport) flowName(f *linkfilter.ReplayFlow) string {
	return fmt.Sprintf("%s %s -> %s", f.Proto, c.endpoint(f, f.Src, f.SPort), c.endpoint(f, f.Dst, f.DPort))
}

// endpoint spells one end of a flow: an address with its port, or for
// ICMP the destination with the message's type and code.
func (c *captureReport) endpoint(f *linkfilter.ReplayFlow, a netip.Addr, port uint16) string {
	if tc, ok := c.icmp[keyOf(f)]; ok {
		if a == f.Dst {
			return fmt.Sprintf("%s type %d/%d", a, tc[0], tc[1])
		}
		return a.String()
	}
	if port == 0 {
		return a.String()
	}
	return netip.AddrPortFrom(a, port).String()
}

func printReport(w io.Writer, r *replayReport, draft bool) {
	if draft || strings.HasPrefix(r.Compare, "UNSIGNED") {
		fmt.Fprintln(w, "UNSIGNED DRAFT: a policy below is not signed; no device enforces it until the committee signs it")
	}
	fmt.Fprintf(w, "policy: %s\n", r.Policy)
	if r.Compare != "" {
		fmt.Fprintf(w, "compare: %s\n", r.Compare)
	}
	for i := range r.Captures {
		c := &r.Captures[i]
		fmt.Fprintln(w)
		if c.Result == nil {
			fmt.Fprintf(w, "%s: link type %s not decoded: %d frames skipped\n", c.File, c.LinkType, c.Skipped)
			continue
		}
		printReplay(w, c)
	}
	if len(r.Captures) == 0 {
		return
	}
	fmt.Fprintf(w, "\nper approval (flows under %s):\n", r.Policy)
	printTotals(w, "APPROVAL", r.Approvals)
	fmt.Fprintln(w, "\nper remote prefix:")
	printTotals(w, "REMOTE", r.Remotes)
	fmt.Fprintln(w, "\nper service:")
	printTotals(w, "SERVICE", r.Services)
	if r.Compare == "" {
		return
	}
	fmt.Fprintf(w, "\nchanges under %s: %d flows\n", r.Compare, len(r.Changes))
	per := map[string]int{}
	for _, ch := range r.Changes {
		fmt.Fprintf(w, "  %-13s %-60s %s -> %s\n", ch.Change, ch.Flow, ch.Before, ch.After)
		per[ch.Change]++
	}
	if len(r.Changes) > 0 {
		fmt.Fprintf(w, "  %d newly denied, %d newly allowed, %d otherwise changed\n", per["newly denied"], per["newly allowed"], per["changed"])
	}
	printApprovalChanges(w, r)
}

// printApprovalChanges says, per approval of either policy, how many flows
// it covers before and after.
func printApprovalChanges(w io.Writer, r *replayReport) {
	before, after := map[string]int{}, map[string]int{}
	for _, c := range r.Captures {
		if c.Result == nil || c.Compared == nil {
			continue
		}
		for i := range c.Result.Flows {
			before[outcome(&c.Result.Flows[i])]++
		}
		for i := range c.Compared.Flows {
			after[outcome(&c.Compared.Flows[i])]++
		}
	}
	var keys []string
	for k := range before {
		keys = append(keys, k)
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	fmt.Fprintf(w, "  %-24s %7s %7s\n", "APPROVAL", "BEFORE", "AFTER")
	for _, k := range keys {
		mark := ""
		if before[k] != after[k] {
			mark = "  *"
		}
		fmt.Fprintf(w, "  %-24s %7d %7d%s\n", k, before[k], after[k], mark)
	}
}

func printTotals(w io.Writer, head string, ts []total) {
	fmt.Fprintf(w, "  %-28s %6s %9s %11s %9s\n", head, "FLOWS", "PKTS", "BYTES", "DROPPED")
	for _, t := range ts {
		fmt.Fprintf(w, "  %-28s %6d %9d %11d %9d\n", t.Key, t.Flows, t.Packets, t.Bytes, t.Dropped)
	}
}

func printReplay(w io.Writer, c *captureReport) {
	r := c.Result
	fmt.Fprintf(w, "%-9s %-6s %-41s %-47s %7s %9s %7s  %s\n", "VERDICT", "PROTO", "FROM", "TO", "PKTS", "BYTES", "DROPPED", "APPROVAL / REASON")
	for i := range r.Flows {
		fl := &r.Flows[i]
		why := fl.Approval
		if why == "" {
			why = fl.Reason
		}
		if fl.Technique != "" {
			why += " [" + fl.Technique + "]"
		}
		if fl.Via != "" {
			why += " via " + fl.Via
		}
		fmt.Fprintf(w, "%-9s %-6s %-41s %-47s %7d %9d %7d  %s\n", fl.Verdict, fl.Proto,
			c.endpoint(fl, fl.Src, fl.SPort), c.endpoint(fl, fl.Dst, fl.DPort), fl.Packets, fl.Bytes, fl.Dropped, why)
	}
	fmt.Fprintf(w, "\n%s: %d frames, %d flows: %d passed, %d dropped inline\n", c.File, r.Frames, len(r.Flows), r.Passed, r.Dropped)
	for _, k := range []string{"domestic", "approved", "monitored", "denied", "pass"} {
		if n := r.Verdicts[k]; n > 0 {
			fmt.Fprintf(w, "  %-10s %d frames\n", k, n)
		}
	}
	cn := r.Counters
	fmt.Fprintf(w, "  not in a flow: %d link control, %d other non-IP, %d malformed, %d unknown fragments\n",
		cn.LinkControl, cn.Other, cn.Malformed, cn.FragmentsUnknown)
	if len(r.Techniques) > 0 {
		names := make([]string, 0, len(r.Techniques))
		for k := range r.Techniques {
			names = append(names, k)
		}
		slices.Sort(names)
		fmt.Fprintf(w, "  evasions:")
		for _, k := range names {
			fmt.Fprintf(w, " %s %d", k, r.Techniques[k])
		}
		fmt.Fprintln(w)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  stopped early: %s\n", r.Error)
	}
}
