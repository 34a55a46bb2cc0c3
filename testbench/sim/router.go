package sim

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"linkguard.dev/linkguard/agent/linkfilter"
	"linkguard.dev/linkguard/agent/mqttlink"
	"linkguard.dev/linkguard/hal/capture"
	"linkguard.dev/linkguard/policy/store"
)

// Router is a simulated border router: an inline link whose two ports are
// in-memory wires, synthetic traffic on the inside wire, and a real agent
// whose linkfilter bridges the wires.
type Router struct {
	*Agent
	r *routerPart
}

type routerPart struct {
	site             string
	inside, outside  *wire
	frames           [][]byte
	opens            [][]byte // SYNs of the TCP flows, sent before each round
	mu               sync.Mutex
	filter           *linkfilter.Filter // of the current run
	injected, rounds atomic.Uint64
}

// NewRouter makes a router; Start runs its agent.
func NewRouter(opt AgentOptions) (*Router, error) {
	p := &routerPart{site: opt.Site, inside: newWire(4096), outside: newWire(4096)}
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

func (p *routerPart) kind() string { return "router" }

func (p *routerPart) run(ctx context.Context, a *Agent, ready func(*mqttlink.Link, *store.Store)) error {
	return a.runComposed(ctx, p.attach, ready)
}

func (p *routerPart) attach(link *mqttlink.Link, st *store.Store, log *slog.Logger) (func(context.Context) error, error) {
	f := linkfilter.New(linkfilter.Options{Site: p.site, Events: link, SummaryEvery: 5 * time.Second, Logger: log.With("part", "linkfilter")})
	st.Subscribe(func(c *store.Current) { f.SetMatcher(c.Matcher) })
	link.AddSection("linkfilter", func() any { return f.Snapshot() })
	p.mu.Lock()
	p.filter = f
	p.mu.Unlock()
	// Fresh ports per run: a restarted agent opens its sockets again.
	in, out := &runPort{w: p.inside}, &runPort{w: p.outside}
	br := linkfilter.NewBridge(f, in, out)
	return func(ctx context.Context) error {
		g, ctx := errgroup.WithContext(ctx)
		g.Go(func() error { return f.Run(ctx) })
		g.Go(func() error { return br.Run(ctx) })
		return g.Wait()
	}, nil
}

// runPort is one run's view of a wire: closing it (the run ending) does not
// cut the cable.
type runPort struct{ w *wire }

func (r *runPort) ReadFrame(buf []byte) (capture.Info, error) { return r.w.ReadFrame(buf) }
func (r *runPort) WriteFrame(b []byte) error                  { return r.w.WriteFrame(b) }
func (r *runPort) Close() error                               { return nil }

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

// Filter is the current run's packet filter (nil before the first start).
func (r *Router) Filter() *linkfilter.Filter {
	r.r.mu.Lock()
	defer r.r.mu.Unlock()
	return r.r.filter
}

// Forwarded counts frames the bridge passed to the outside wire.
func (r *Router) Forwarded() uint64 { return r.r.outside.sent.Load() }

// Injected counts frames put on the inside wire.
func (r *Router) Injected() uint64 { return r.r.injected.Load() }
