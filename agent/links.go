package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/agent/linkfilter"
	"linkguard.dev/linkguard/agent/linkfilter/packet"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/hal/capture"
	"linkguard.dev/linkguard/hal/capture/pcapfile"
	"linkguard.dev/linkguard/policy/store"
)

// links is the packet filter part: the filter, the loop that feeds it
// frames from the ports, and the ports' counters for telemetry.
type links struct {
	f       *linkfilter.Filter
	kernel  *linkfilter.Kernel // links.enforce: nftables; nil otherwise
	loop    interface{ Run(context.Context) error }
	stats   *linkStats
	release func() // closes the ports and evidence, undoes PrepareInline
}

// newLinks builds the packet filter on the ports hw opens for the
// configured interfaces (inline bridge or monitor), makes it follow the
// policy store's swaps, and reports through up.
func newLinks(site string, l *config.Links, hw *Hardware, policy *store.Store, up reporting, log *slog.Logger) (*links, error) {
	log = log.With("part", "links")
	mode, err := linkfilter.ParseMode(l.Mode.String())
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	// With the kernel fast path the kernel bridges and filters; the pcap
	// path watches the same ports as a monitor.
	kernelPath := l.Enforce == config.EnforceNftables
	if kernelPath {
		mode = linkfilter.ModeMonitor
	}
	if hw.OpenPort == nil {
		return nil, missing("capture ports for links")
	}
	var closers []func() error
	release := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			_ = closers[i]()
		}
	}
	fail := func(err error) (*links, error) {
		release()
		return nil, fmt.Errorf("agent: links: %w", err)
	}
	var ev *linkfilter.Evidence
	if l.Evidence.Dir != "" && l.Evidence.MaxMB > 0 {
		if ev, err = linkfilter.OpenEvidence(l.Evidence.Dir, int64(l.Evidence.MaxMB)<<20, pcapfile.LinkTypeEthernet); err != nil {
			return fail(err)
		}
		closers = append(closers, ev.Close)
	}
	ingress, err := linkfilter.ParseIngress(l.Ingress.String())
	if err != nil {
		return fail(err)
	}
	var linkLocal packet.LinkLocal
	if l.LinkLocal != nil {
		if linkLocal, err = packet.ParseLinkLocal(*l.LinkLocal); err != nil {
			return fail(err)
		}
	}
	grace := linkfilter.DefaultPickupGrace
	if l.PickupGrace != nil {
		grace = *l.PickupGrace
		if grace == 0 {
			grace = -1 // never
		}
	}
	f := linkfilter.New(linkfilter.Options{
		Site: site, Mode: mode, Reset: l.Reset, MaxFlows: l.MaxFlows, FailOpen: l.Fail == "open",
		Ingress: ingress, LinkLocal: linkLocal, PickupGrace: grace, MaxEncap: l.MaxEncap,
		Events: up.events, Evidence: ev, Logger: log,
	})
	var ports []capture.Port
	stats := &linkStats{f: f}
	open := func(name string, bridge bool) error {
		p, err := hw.OpenPort(log, name, bridge, bridge && l.Offloads)
		if err != nil {
			return err
		}
		closers = append(closers, p.Close)
		ports = append(ports, p)
		stats.addPort(name, p)
		return nil
	}
	var loop interface{ Run(context.Context) error }
	var kernel *linkfilter.Kernel
	switch {
	case kernelPath:
		if hw.OpenKernel == nil {
			return fail(missing("the nftables fast path"))
		}
		if hw.PrepareInline != nil { // MTUs, and no stale lgbypass holding the ports
			undo, err := hw.PrepareInline(log, l)
			if err != nil {
				return fail(err)
			}
			closers = append(closers, undo)
		}
		// Pin the kernel path to the namespace the agent is built in: the
		// policy swaps that attach the bridge run on other threads.
		ns, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fail(fmt.Errorf("network namespace: %w", err))
		}
		closers = append(closers, func() error { return unix.Close(ns) })
		k, err := hw.OpenKernel(linkfilter.KernelOptions{Site: site, Inside: l.Inside, Outside: l.Outside,
			Ingress: ingress, Events: up.events, Logger: log.With("path", "kernel"), NetNS: ns})
		if err != nil {
			return fail(err)
		}
		kernel = k
		closers = append(closers, k.Close) // the ruleset stays in force when the agent stops
		if err := errors.Join(open(l.Inside, false), open(l.Outside, false)); err != nil {
			return fail(err)
		}
		stats.kernel = k
		loop = linkfilter.NewMonitor(f, ports...)
	case mode == linkfilter.ModeInline:
		if hw.PrepareInline != nil {
			undo, err := hw.PrepareInline(log, l)
			if err != nil {
				return fail(err)
			}
			closers = append(closers, undo)
		}
		if err := errors.Join(open(l.Inside, true), open(l.Outside, true)); err != nil {
			return fail(err)
		}
		stats.bridge = linkfilter.NewBridge(f, ports[0], ports[1])
		loop = stats.bridge
	case mode == linkfilter.ModeMonitor:
		for _, name := range []string{l.Inside, l.Outside} {
			if name == "" {
				continue
			}
			if err := open(name, false); err != nil {
				return fail(err)
			}
		}
		loop = linkfilter.NewMonitor(f, ports...)
	}
	// The filter follows every policy swap; until the first, it drops IP
	// (fail closed) or passes it, reported (fail open).
	policy.Subscribe(func(c *store.Current) {
		// The ports are bridged only once a ruleset is in force; a refused
		// one is reported and the previous one stays. The kernel goes
		// first, so the filter shows a policy only once the link has it.
		if kernel != nil && kernel.SetMatcher(c.Matcher) == nil {
			if err := kernel.Attach(); err != nil {
				log.Error("kernel bridge not attached", "err", err)
			}
		}
		f.SetMatcher(c.Matcher)
	})
	up.telemetry.AddSection(contract.SectionLinks, func() any { return stats.read() })
	up.telemetry.AddSection(contract.SectionRemotes, newRemotes(f).section)
	log.Info("link filter ready", "mode", mode, "enforce", l.Enforce, "inside", l.Inside, "outside", l.Outside, "max_flows", l.MaxFlows,
		"offloads", l.Offloads && mode == linkfilter.ModeInline, "ingress", ingress, "link_local", linkLocal.String(), "pickup_grace", grace, "max_encap", l.MaxEncap)
	return &links{f: f, kernel: kernel, loop: loop, stats: stats, release: release}, nil
}

// run sweeps the flow table and judges the ports' frames until ctx ends.
func (l *links) run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return l.f.Run(ctx) })
	g.Go(func() error { return l.loop.Run(ctx) })
	if l.kernel != nil {
		g.Go(func() error { return l.kernel.Run(ctx) })
	}
	return g.Wait()
}

// openPort opens one capture port. A bridge port's offloads are turned off
// (it hands over and sends wire-sized frames of its own), or on when it
// carries super-frames; a monitor's tap keeps its own. Every port takes
// the offload metadata where the kernel has it (Linux 5.8), since a peer's
// offloads reach it whatever its own: a tap counts a super-frame as the
// frames it stands for, and a bridge port forwards a peer's super-frames
// (segmented by the kernel on the way out unless it carries offloads) and
// fills in the checksums a peer left partial. On a kernel without the
// metadata a carrying port falls back to offloads off, a tap counts a
// super-frame once, and a bridge port drops a peer's super-frames as
// truncated, which is said once.
func openPort(log *slog.Logger, name string, bridge, carry bool) (*capture.Live, error) {
	switch {
	case carry:
		if err := capture.EnableOffloads(name); err != nil {
			log.Warn("gro could not be turned on; frames pass unmerged", "iface", name, "err", err)
		}
	case bridge:
		if err := capture.DisableOffloads(name); err != nil {
			log.Warn("offloads could not all be turned off; oversize frames will be dropped", "iface", name, "err", err)
		}
	}
	p, err := capture.OpenLive(name, capture.LiveOptions{Offloads: carry})
	if carry && errors.Is(err, capture.ErrUnsupported) {
		log.Warn("offloads cannot be carried on this kernel; turning them off", "iface", name, "err", err)
		return openPort(log, name, true, false)
	}
	if err == nil && bridge && !p.Metadata() {
		log.Warn("this kernel gives no offload metadata (Linux 5.8 does): super-frames from a peer that segments late (tso/gso on a veth, virtio or tap peer) are dropped; turn those off on the peer",
			"iface", name)
	}
	return p, err
}

// portCounters is the optional ability of a port to say what its kernel
// received and dropped since the last call (capture.Live has it).
type portCounters interface {
	Stats() (received, dropped uint64, err error)
}

// linkStats adds up the ports' kernel counters, which the kernel resets at
// each read.
type linkStats struct {
	f      *linkfilter.Filter
	bridge *linkfilter.Bridge // nil in monitor mode
	kernel *linkfilter.Kernel // with the nftables fast path: its counters are the approvals'

	mu     sync.Mutex
	ports  []portCounters
	counts []contract.PortCounters
}

// addPort counts a port's frames in telemetry, if it has counters.
func (s *linkStats) addPort(name string, p capture.Port) {
	if c, ok := p.(portCounters); ok {
		s.ports = append(s.ports, c)
		s.counts = append(s.counts, contract.PortCounters{Name: name})
	}
}

// read is the links section as telemetry reports it.
func (s *linkStats) read() contract.Links {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.ports {
		if rx, drop, err := p.Stats(); err == nil {
			s.counts[i].Received += rx
			s.counts[i].RingDropped += drop
		}
	}
	snap := s.f.Snapshot()
	if s.kernel != nil {
		_ = s.kernel.Fill(&snap) // the kernel's per-approval counts; on error the pcap path's stand
	}
	t := linksSection(snap)
	t.Ports = slices.Clone(s.counts)
	if t.Ports == nil {
		t.Ports = []contract.PortCounters{}
	}
	if s.bridge != nil {
		t.WriteErrors, t.OffloadMismatches = s.bridge.WriteErrors(), s.bridge.OffloadMismatches()
		t.ChecksumsCompleted = s.bridge.ChecksumsCompleted()
	}
	return t
}

// linksSection puts the filter's counters in the contract's words; every
// field of the snapshot has its place there (TestLinksSectionCarriesSnapshot).
func linksSection(s linkfilter.Snapshot) contract.Links {
	t := contract.Links{
		Mode: s.Mode, PolicySerial: s.PolicySerial,
		Passed: s.Passed, PassedBytes: s.PassedBytes,
		Denied: s.Denied, DeniedBytes: s.DeniedBytes, DeniedFlows: s.DeniedFlows,
		Domestic: s.Domestic, LinkControl: s.LinkControl, Other: s.Other,
		Malformed: s.Malformed, Truncated: s.Truncated, SuperFrames: s.SuperFrames,
		FragmentsUnknown: s.FragmentsUnknown, Tunnelled: s.Tunnelled, Fragments: s.Fragments,
		FragmentOverlaps: s.FragmentOverlaps, Spoofed: s.Spoofed, TCPNoSYN: s.TCPNoSYN,
		LinkControlLimited: s.LinkControlLimited, Techniques: s.Techniques,
		NewFlows: s.NewFlows, Flows: s.Flows, FlowCap: s.FlowCap,
		FlowsEvicted: s.FlowsEvicted, FlowsExpired: s.FlowsExpired,
		Events: s.Events, EventsSuppressed: s.EventsSuppressed, EvidenceFrames: s.EvidenceFrames,
		Resets: s.Resets, PolicySwaps: s.PolicySwaps,
		Approvals: make([]contract.ApprovalCount, len(s.Approvals)),
	}
	for i, a := range s.Approvals {
		t.Approvals[i] = contract.ApprovalCount{ID: a.ID, Packets: a.Packets, Bytes: a.Bytes}
	}
	return t
}
