package sim

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"linkguard.dev/linkguard/agent"
	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/hal/capture"
)

// Router is a simulated border router: agent.Run with an inline link whose
// two ports are in-memory wires, and synthetic traffic on the inside wire.
type Router struct {
	*Agent
	r *routerPart
}

// The interface names of the simulated router's link.
const (
	PortInside  = "inside"
	PortOutside = "outside"
)

type routerPart struct {
	inside, outside  *wire
	frames           [][]byte
	opens            [][]byte // SYNs of the TCP flows, sent before each round
	injected, rounds atomic.Uint64
}

// NewRouter makes a router; Start runs its agent.
func NewRouter(opt AgentOptions) (*Router, error) {
	p := &routerPart{inside: newWire(4096), outside: newWire(4096)}
	for i, f := range DemoFlows {
		fr, err := f.Frame(uint16(40000+i), 200)
		if err != nil {
			return nil, err
		}
		p.frames = append(p.frames, fr)
		syn, err := f.Open(uint16(40000 + i))
		if err != nil {
			return nil, err
		}
		if syn != nil {
			p.opens = append(p.opens, syn)
		}
	}
	a, err := newAgent(opt, p)
	if err != nil {
		return nil, err
	}
	return &Router{Agent: a, r: p}, nil
}

func (p *routerPart) kind() string { return config.KindRouter }

func (p *routerPart) config(*Agent) string {
	return fmt.Sprintf("links: {mode: inline, inside: %s, outside: %s}\n", PortInside, PortOutside)
}

// hardware opens the wires as the link's ports. They have no kernel
// interface behind them: nothing to prepare, no offloads to set.
func (p *routerPart) hardware() *agent.Hardware {
	return &agent.Hardware{OpenPort: func(_ *slog.Logger, name string, bridge, _ bool) (capture.Port, error) {
		if !bridge {
			return nil, fmt.Errorf("sim: %s: the simulated router has no tap", name)
		}
		switch name {
		case PortInside:
			return &runPort{w: p.inside}, nil
		case PortOutside:
			return &runPort{w: p.outside}, nil
		}
		return nil, fmt.Errorf("sim: no interface %q (the simulated router has %s and %s)", name, PortInside, PortOutside)
	}}
}

// runPort is one run's view of a wire: closing it (the run ending) does not
// cut the cable.
type runPort struct{ w *wire }

var _ capture.Port = (*runPort)(nil)

func (r *runPort) ReadFrame(buf []byte) (capture.Info, error) { return r.w.ReadFrame(buf) }
func (r *runPort) WriteFrame(b []byte) error                  { return r.w.WriteFrame(b) }
func (r *runPort) Close() error                               { return nil }

// Stats are the wire's counters since the last call, as a kernel's are.
func (r *runPort) Stats() (received, dropped uint64, err error) { return r.w.stats() }

// Send injects each demo flow n times on the inside wire, after the SYNs
// that open its TCP flows (a restarted agent sees them open again).
func (r *Router) Send(n int) {
	for _, fr := range r.r.opens {
		r.r.inside.inject(fr)
	}
	r.r.injected.Add(uint64(len(r.r.opens)))
	for range n {
		for _, fr := range r.r.frames {
			r.r.inside.inject(fr)
		}
		r.r.rounds.Add(1)
	}
	r.r.injected.Add(uint64(n * len(r.r.frames)))
}

// Generate sends n rounds of the demo flows every period until ctx ends.
func (r *Router) Generate(ctx context.Context, n int, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Send(n)
		}
	}
}

// Forwarded counts frames the bridge passed to the outside wire.
func (r *Router) Forwarded() uint64 { return r.r.outside.sent.Load() }

// Injected counts frames put on the inside wire.
func (r *Router) Injected() uint64 { return r.r.injected.Load() }
