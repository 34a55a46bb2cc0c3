// Package bench assembles a whole border on one machine: the embedded
// broker, simulated sites (routers and relay controllers from package sim)
// and the operator console, with throwaway keys and a signed demo policy.
// The demo, the scenarios and the console's browser test all start one.
//
// It is testbench code; nothing outside testbench imports it.
package bench

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"linkguard.dev/linkguard/policy/roster"

	"linkguard.dev/linkguard/agent/console"
	"linkguard.dev/linkguard/agent/mqttlink/brokertest/embedded"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/testbench/sim"
)

// Site names one simulated device.
type Site struct {
	ID   string `yaml:"id" json:"id"`
	Site string `yaml:"site" json:"site"`
}

// Options describe a bench.
type Options struct {
	Dir            string // working directory (keys, device state); required
	Routers        []Site
	Feeds          []Site
	TelemetryEvery time.Duration // default 1s
	BrokerAddr     string        // default 127.0.0.1:0
	ConsoleAddr    string        // default 127.0.0.1:0: the console always serves, actions go through it
	// Threshold is how many committee signatures policies and rosters
	// need (the devices' policy.threshold); the bench makes that many
	// anchor keys, each a committee member of its roster. Default 1.
	Threshold int
	// AutoEnrol plays the committee for the demo: every enrolment request
	// at the console is added to the roster as a committee, grid and
	// technician operator at once. Never outside a demo.
	AutoEnrol bool
	// Observe, if set, hears every message on the broker, from before the
	// first device starts (the embedded broker's inline client; mochi
	// races a late inline subscription against retained publishes).
	Observe func(topic string, payload []byte, retained bool)
	Logger  *slog.Logger
}

// Bench is a running border.
type Bench struct {
	opt        Options
	log        *slog.Logger
	Broker     *embedded.Broker
	Keys       *sim.Keys
	Routers    map[string]*sim.Router
	Feeds      map[string]*sim.Feed
	Console    *console.Console
	ConsoleURL string

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	serial uint64

	rmu     sync.Mutex
	members []Member
	rserial uint64
	clients map[string]*console.Client
}

// Member is an operator of the bench's roster.
type Member struct {
	ID    string
	Roles []roster.Role
	Keys  []ed25519.PublicKey
}

// Start builds and starts everything; Close stops it.
func Start(ctx context.Context, opt Options) (b *Bench, err error) {
	if opt.Dir == "" {
		return nil, errors.New("bench: a working directory is required")
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.TelemetryEvery <= 0 {
		opt.TelemetryEvery = time.Second
	}
	if opt.BrokerAddr == "" {
		opt.BrokerAddr = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(ctx)
	b = &Bench{opt: opt, log: opt.Logger, clients: map[string]*console.Client{}, Routers: map[string]*sim.Router{}, Feeds: map[string]*sim.Feed{}, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	keyDir := filepath.Join(opt.Dir, "keys")
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		return b, fmt.Errorf("bench: %w", err)
	}
	if b.Keys, err = sim.NewKeys(keyDir); err != nil {
		return b, err
	}
	if b.Broker, err = embedded.Start(embedded.Options{Addr: opt.BrokerAddr, Logger: slog.New(errorsOnly{opt.Logger.Handler()}).With("part", "broker")}); err != nil {
		return b, err
	}
	if opt.Observe != nil {
		if _, err := b.Broker.Subscribe(contract.Prefix+"#", opt.Observe); err != nil {
			return b, err
		}
	}
	if err := b.Keys.AddAnchors(opt.Threshold); err != nil {
		return b, err
	}
	// The roster: each anchor a committee member, the operator key a grid,
	// technician and release operator. Retained before anyone subscribes.
	for i, a := range b.Keys.AllAnchors() {
		b.members = append(b.members, Member{ID: anchorID(i), Roles: []roster.Role{roster.Committee}, Keys: []ed25519.PublicKey{a.Public().(ed25519.PublicKey)}})
	}
	b.members = append(b.members, Member{ID: "operator", Roles: []roster.Role{roster.Grid, roster.Technician, roster.Release},
		Keys: []ed25519.PublicKey{b.Keys.Operator.Public().(ed25519.PublicKey)}})
	if err := b.publishRoster(); err != nil {
		return b, err
	}
	// The console first, so it sees every message from the start. It
	// holds no key: the bench's operators log in to it like anyone.
	var trust []ed25519.PublicKey
	for _, a := range b.Keys.AllAnchors() {
		trust = append(trust, a.Public().(ed25519.PublicKey))
	}
	b.Console, err = console.New(console.Options{Broker: b.Broker.URL(), ClientID: "testbench-console", Persistent: true,
		Trust: trust, Threshold: max(opt.Threshold, 1), StateDir: filepath.Join(opt.Dir, "console"),
		FleetCA: b.Keys.Fleet.Pool(), Logger: opt.Logger.With("part", "console")})
	if err != nil {
		return b, err
	}
	go func() {
		defer close(b.done)
		b.Console.Run(ctx)
	}()
	if opt.ConsoleAddr == "" {
		opt.ConsoleAddr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", opt.ConsoleAddr)
	if err != nil {
		return b, fmt.Errorf("bench: console: %w", err)
	}
	b.Console.SetListener(ln.Addr().String())
	b.ConsoleURL = "http://" + ln.Addr().String() + "/"
	go console.Serve(ctx, ln, b.Console.Handler())
	if opt.AutoEnrol {
		go b.autoEnrol(ctx)
	}
	b.serial = 1
	env, err := b.Keys.SignPolicy(sim.PolicyYAML(b.serial, time.Now()))
	if err != nil {
		return b, err
	}
	if err := b.PublishPolicy(env); err != nil {
		return b, err
	}
	agentOpt := func(s Site) sim.AgentOptions {
		return sim.AgentOptions{ID: s.ID, Site: s.Site, Broker: b.Broker.Addr(), Dir: filepath.Join(opt.Dir, "devices", s.ID),
			Keys: b.Keys, TelemetryEvery: opt.TelemetryEvery, Logger: opt.Logger}
	}
	for _, s := range opt.Routers {
		r, err := sim.NewRouter(agentOpt(s))
		if err != nil {
			return b, err
		}
		b.Routers[s.ID] = r
		if err := b.provision(r.Agent, env); err != nil {
			return b, err
		}
	}
	for _, s := range opt.Feeds {
		f, err := sim.NewFeed(ctx, agentOpt(s))
		if err != nil {
			return b, err
		}
		b.Feeds[s.ID] = f
		if err := b.provision(f.Agent, env); err != nil {
			return b, err
		}
	}
	return b, nil
}

// provision starts the agent. It gets its first policy from the retained
// fleet policy, which mqttlink also writes to its policy file. (A policy
// file written beforehand would be applied by the file watcher, and
// mqttlink republishes its retained state only for policies that arrive
// over MQTT, so the console would see serial 0 until the next reconnect.)
func (b *Bench) provision(a *sim.Agent, _ []byte) error {
	return a.Start(b.ctx)
}

// Agent returns a device by id.
func (b *Bench) Agent(id string) (*sim.Agent, bool) {
	if r, ok := b.Routers[id]; ok {
		return r.Agent, true
	}
	if f, ok := b.Feeds[id]; ok {
		return f.Agent, true
	}
	return nil, false
}

// Agents lists every device, sorted by id.
func (b *Bench) Agents() []*sim.Agent {
	var out []*sim.Agent
	for _, r := range b.Routers {
		out = append(out, r.Agent)
	}
	for _, f := range b.Feeds {
		out = append(out, f.Agent)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out
}

// PublishPolicy publishes a signed fleet policy, retained, through the
// broker's inline client.
func (b *Bench) PublishPolicy(env []byte) error {
	if err := b.Broker.Publish(contract.PolicyTopic, env, true); err != nil {
		return fmt.Errorf("bench: publish policy: %w", err)
	}
	return nil
}

// WaitUp waits until every device is online, enforces serial or later and
// has sent telemetry, as the console sees it.
func (b *Bench) WaitUp(ctx context.Context, serial uint64, within time.Duration) error {
	return b.Poll(ctx, within, func() error {
		devs := b.Console.Devices()
		if len(devs) < len(b.Agents()) {
			return fmt.Errorf("bench: %d of %d devices reported", len(devs), len(b.Agents()))
		}
		for _, d := range devs {
			switch {
			case !d.Online:
				return fmt.Errorf("bench: %s is offline", d.ID)
			case d.PolicySerial < serial:
				return fmt.Errorf("bench: %s enforces serial %d", d.ID, d.PolicySerial)
			case d.TelemetryAt.IsZero():
				return fmt.Errorf("bench: %s sent no telemetry yet", d.ID)
			}
		}
		return nil
	})
}

// Poll calls cond until it returns nil or within passes, looking again at
// every change of the console's model and every 100 ms at the least.
func (b *Bench) Poll(ctx context.Context, within time.Duration, cond func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v: %w", within, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-b.Console.Changed():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Context is the bench's context: agents started with it stop at Close.
func (b *Bench) Context() context.Context { return b.ctx }

// Close stops the agents, the console and the broker.
func (b *Bench) Close() error {
	var errs []error
	for _, a := range b.Agents() {
		errs = append(errs, a.Close())
	}
	for _, f := range b.Feeds {
		f.CloseHardware()
	}
	b.cancel()
	if b.Console != nil {
		select {
		case <-b.done:
		case <-time.After(5 * time.Second):
		}
	}
	if b.Console != nil {
		errs = append(errs, b.Console.Close())
	}
	if b.Broker != nil {
		errs = append(errs, b.Broker.Close())
	}
	return errors.Join(errs...)
}

// errorsOnly passes on a handler's errors only: the embedded broker warns
// about every closed probe connection and short keepalive.
type errorsOnly struct{ slog.Handler }

func (h errorsOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError && h.Handler.Enabled(ctx, l)
}
