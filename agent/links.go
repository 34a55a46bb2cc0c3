package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sync/errgroup"

	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/agent/linkfilter"
	"linkguard.dev/linkguard/agent/linkfilter/packet"
	"linkguard.dev/linkguard/hal/bypass"
	"linkguard.dev/linkguard/hal/capture"
	"linkguard.dev/linkguard/policy/store"
)

// startLinks builds the packet filter on the configured interfaces (inline
// bridge or monitor), follows the policy store's swaps, and plugs it into
// the agent's events and telemetry. It returns the filter's run function
// and what to release when the agent stops.
func (a *Agent) startLinks(l *config.Links) (run func(context.Context) error, release func(), err error) {
	log := a.Logger.With("part", "links")
	mode, err := linkfilter.ParseMode(l.Mode.String())
	if err != nil {
		return nil, nil, fmt.Errorf("agent: %w", err)
	}
	var closers []func() error
	release = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			_ = closers[i]()
		}
	}
	fail := func(err error) (func(context.Context) error, func(), error) {
		release()
		return nil, nil, fmt.Errorf("agent: links: %w", err)
	}
	var ev *linkfilter.Evidence
	if l.Evidence.Dir != "" && l.Evidence.MaxMB > 0 {
		if ev, err = linkfilter.OpenEvidence(l.Evidence.Dir, int64(l.Evidence.MaxMB)<<20, layers.LinkTypeEthernet); err != nil {
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
		Site: a.Config.Device.Site, Mode: mode, Reset: l.Reset, MaxFlows: l.MaxFlows, FailOpen: l.Fail == "open",
		Ingress: ingress, LinkLocal: linkLocal, PickupGrace: grace, MaxEncap: l.MaxEncap,
		Events: a.Events, Evidence: ev, Logger: log,
	})
	var ports []capture.Port
	open := func(name string, bridge bool) error {
		p, err := openPort(log, name, bridge, bridge && l.Offloads)
		if err != nil {
			return err
		}
		closers = append(closers, p.Close)
		ports = append(ports, p)
		return nil
	}
	var loop interface{ Run(context.Context) error }
	stats := &linkStats{f: f}
	switch mode {
	case linkfilter.ModeInline:
		if _, err := capture.CheckMTU(l.Inside, l.Outside); err != nil {
			return fail(err)
		}
		// Without the agent the link is cut (closed: the ports must not be
		// bridged by the kernel) or carried unfiltered (open: a kernel
		// bridge the agent holds shut while it runs).
		if l.Fail == "open" {
			h, err := bypass.Arm(l.Inside, l.Outside)
			if err != nil {
				return fail(err)
			}
			closers = append(closers, h.Close)
			log.Warn("link fails open: if the agent stops, the kernel bridges it unfiltered", "bridge", bypass.BridgeName)
		} else if err := bypass.Release(l.Inside, l.Outside); err != nil {
			return fail(err)
		}
		if err := errors.Join(open(l.Inside, true), open(l.Outside, true)); err != nil {
			return fail(err)
		}
		stats.bridge = linkfilter.NewBridge(f, ports[0], ports[1])
		loop = stats.bridge
	case linkfilter.ModeMonitor:
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
	a.Policy.Subscribe(func(c *store.Current) { f.SetMatcher(c.Matcher) })
	for _, p := range ports {
		if l, ok := p.(*capture.Live); ok {
			stats.ports = append(stats.ports, l)
			stats.counts = append(stats.counts, PortCounters{Name: l.Name()})
		}
	}
	if a.Telemetry != nil {
		a.Telemetry.AddSection("links", func() any { return stats.read() })
	}
	a.Links = f
	a.linkStats = stats
	log.Info("link filter ready", "mode", mode, "inside", l.Inside, "outside", l.Outside, "max_flows", l.MaxFlows,
		"offloads", l.Offloads && mode == linkfilter.ModeInline, "ingress", ingress, "link_local", linkLocal.String(), "pickup_grace", grace, "max_encap", l.MaxEncap)
	return func(ctx context.Context) error {
		g, ctx := errgroup.WithContext(ctx)
		g.Go(func() error { return f.Run(ctx) })
		g.Go(func() error { return loop.Run(ctx) })
		return g.Wait()
	}, release, nil
}

// openPort opens one capture port. A bridge port's offloads are turned off
// (it must hand over frames no larger than the MTU), or on when it carries
// super-frames; a monitor's tap keeps its own. A carrying port and a tap
// take the offload metadata of the super-frames they get (a tap, to count
// the frames they stand for); on a kernel without it (before 5.8) a
// carrying port falls back to offloads off and a tap counts a super-frame
// once.
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
	meta := carry || !bridge
	p, err := capture.OpenLive(name, capture.LiveOptions{Offloads: meta})
	if meta && errors.Is(err, capture.ErrUnsupported) {
		if carry {
			log.Warn("offloads cannot be carried on this kernel; turning them off", "iface", name, "err", err)
			return openPort(log, name, true, false)
		}
		p, err = capture.OpenLive(name, capture.LiveOptions{})
	}
	return p, err
}

// LinksTelemetry is the links section of telemetry: the filter's counters,
// the ports' kernel counters and the bridge's.
type LinksTelemetry struct {
	linkfilter.Snapshot
	Ports []PortCounters `json:"ports"`
	// WriteErrors counts frames a port refused to send; OffloadMismatches
	// super-frames dropped because their offload metadata did not match
	// their packet (inline mode).
	WriteErrors       uint64 `json:"write_errors"`
	OffloadMismatches uint64 `json:"offload_mismatches"`
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

// LinksTelemetry returns the links section as telemetry reports it; false
// without links.
func (a *Agent) LinksTelemetry() (LinksTelemetry, bool) {
	if a.linkStats == nil {
		return LinksTelemetry{}, false
	}
	return a.linkStats.read(), true
}

// linkStats adds up the ports' kernel counters, which the kernel resets at
// each read.
type linkStats struct {
	f      *linkfilter.Filter
	bridge *linkfilter.Bridge // nil in monitor mode
	mu     sync.Mutex
	ports  []*capture.Live
	counts []PortCounters
}

func (s *linkStats) read() LinksTelemetry {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.ports {
		if rx, drop, err := p.Stats(); err == nil {
			s.counts[i].Received += rx
			s.counts[i].RingDropped += drop
		}
	}
	t := LinksTelemetry{Snapshot: s.f.Snapshot(), Ports: slices.Clone(s.counts)}
	if s.bridge != nil {
		t.WriteErrors, t.OffloadMismatches = s.bridge.WriteErrors(), s.bridge.OffloadMismatches()
	}
	return t
}
