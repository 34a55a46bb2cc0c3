package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/mqttlink"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/policy/store"
	"linkguard.dev/linkguard/policy/watch"
)

// AgentOptions describe one simulated device.
type AgentOptions struct {
	ID, Site       string
	Broker         string // host:port of the broker
	Dir            string // the device's state directory (kept across restarts)
	Keys           *Keys
	TelemetryEvery time.Duration // default 2s
	Logger         *slog.Logger
}

// part is the kind-specific half of an agent (the packet filter, the feed
// controller). Each start is a fresh run, as a restarted process would be,
// on hardware that outlives it.
type part interface {
	kind() string
	// run runs the device's agent once until ctx ends; it calls ready as
	// soon as the run's MQTT link and policy store exist.
	run(ctx context.Context, a *Agent, ready func(*mqttlink.Link, *store.Store)) error
}

// Agent is one simulated device's agent: the real policy store, policy file
// watcher and mqttlink, plus its part, restartable on the same state.
type Agent struct {
	opt   AgentOptions
	part  part
	proxy *proxy
	log   *slog.Logger

	mu      sync.Mutex
	cancel  context.CancelFunc
	done    chan error
	link    *mqttlink.Link
	store   *store.Store
	started int
}

func newAgent(opt AgentOptions, p part) (*Agent, error) {
	if opt.TelemetryEvery <= 0 {
		opt.TelemetryEvery = 2 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opt.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	px, err := newProxy(opt.Broker)
	if err != nil {
		return nil, fmt.Errorf("sim: %s: proxy: %w", opt.ID, err)
	}
	return &Agent{opt: opt, part: p, proxy: px, log: opt.Logger.With("device", opt.ID)}, nil
}

// ID is the device id.
func (a *Agent) ID() string { return a.opt.ID }

// Site is the device's site.
func (a *Agent) Site() string { return a.opt.Site }

// Kind is router or relay.
func (a *Agent) Kind() string { return a.part.kind() }

// PolicyFile is where the agent reads its policy file from.
func (a *Agent) PolicyFile() string { return filepath.Join(a.opt.Dir, "policy.signed.json") }

// Running reports whether the agent runs.
func (a *Agent) Running() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cancel != nil
}

// Policy is the running agent's policy store (nil when stopped).
func (a *Agent) Policy() *store.Store {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.store
}

// Link is the running agent's MQTT link (nil when stopped).
func (a *Agent) Link() *mqttlink.Link {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.link
}

// Start runs the agent until ctx ends, Stop or Kill. It returns once the
// run's link and policy store exist, or with the error that ended the run
// before then.
func (a *Agent) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cancel != nil {
		return nil
	}
	a.proxy.setCut(false)
	ctx, cancel := context.WithCancel(ctx)
	type built struct {
		link *mqttlink.Link
		st   *store.Store
	}
	ready := make(chan built, 1)
	done := make(chan error, 1)
	go func() {
		err := a.part.run(ctx, a, func(l *mqttlink.Link, st *store.Store) { ready <- built{l, st} })
		if err != nil && ctx.Err() == nil {
			a.log.Error("agent failed", "err", err)
		}
		done <- err
	}()
	select {
	case b := <-ready:
		a.link, a.store = b.link, b.st
	case err := <-done:
		cancel()
		if err == nil {
			err = errors.New("stopped before it was up")
		}
		return fmt.Errorf("sim: %s: %w", a.opt.ID, err)
	}
	a.cancel, a.done = cancel, done
	a.started++
	return nil
}

// runComposed is the router's composition: the real policy store, policy
// file watcher and mqttlink around the part attach builds, wired as
// agent.Run wires them. (agent.Run opens live AF_PACKET ports; the
// simulated router's ports are in-memory wires.)
func (a *Agent) runComposed(ctx context.Context, attach func(*mqttlink.Link, *store.Store, *slog.Logger) (func(context.Context) error, error), ready func(*mqttlink.Link, *store.Store)) error {
	log := a.log
	trust, err := a.opt.Keys.Trust()
	if err != nil {
		return err
	}
	ops, err := a.opt.Keys.Operators()
	if err != nil {
		return err
	}
	var link *mqttlink.Link
	st, err := store.New(store.Options{Trust: trust, Threshold: 1, StateDir: a.opt.Dir, Logger: log.With("part", "policy"),
		OnOutcome: func(o store.Outcome) {
			if link != nil {
				link.PolicyOutcome(o)
			}
		}})
	if err != nil {
		return err
	}
	if _, err := st.Restore(); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Warn("last-known-good policy unusable", "err", err)
	}
	link, err = mqttlink.New(mqttlink.Options{
		Device: a.opt.ID, Site: a.opt.Site, Kind: a.part.kind(), Version: "testbench",
		URL: a.proxy.url(), Keepalive: 10 * time.Second, TelemetryEvery: a.opt.TelemetryEvery,
		MinBackoff: 200 * time.Millisecond, MaxBackoff: 2 * time.Second,
		StateDir: a.opt.Dir, Operators: ops, Policy: st, PolicyFile: a.PolicyFile(),
		Logger: log.With("part", "mqtt"),
	})
	if err != nil {
		return err
	}
	run, err := attach(link, st, log)
	if err != nil {
		return err
	}
	w := &watch.Watcher{Path: a.PolicyFile(), Store: st, Logger: log.With("part", "policy-watch"), Debounce: 50 * time.Millisecond, Poll: 5 * time.Second}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.Run(gctx) })
	g.Go(func() error { return link.Run(gctx) })
	if run != nil {
		g.Go(func() error { return run(gctx) })
	}
	ready(link, st)
	return g.Wait()
}

// Stop shuts the agent down cleanly (it says it is offline itself).
func (a *Agent) Stop() error {
	a.mu.Lock()
	cancel, done := a.cancel, a.done
	a.cancel, a.link, a.store = nil, nil, nil
	a.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case err := <-done:
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		return err
	case <-time.After(15 * time.Second):
		return fmt.Errorf("sim: %s: agent did not stop", a.opt.ID)
	}
}

// Kill ends the agent as a crash would: its connection dies without a
// goodbye, so the broker publishes its will.
func (a *Agent) Kill() error {
	a.proxy.setCut(true)
	return a.Stop()
}

// Close stops the agent and its proxy.
func (a *Agent) Close() error {
	err := a.Stop()
	a.proxy.close()
	return err
}

// Emit reports an event through the running agent (no-op when stopped).
func (a *Agent) Emit(typ string, sev report.Severity, f report.Fields) {
	if l := a.Link(); l != nil {
		l.Emit(typ, sev, f)
	}
}

var _ command.Registrar = (*mqttlink.Link)(nil)
