package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"linkguard.dev/linkguard/agent"
	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/testbench/fleet"
)

// AgentOptions describe one simulated device.
type AgentOptions struct {
	ID, Site       string
	Broker         string // host:port of the broker
	Dir            string // the device's state directory (kept across restarts)
	Keys           *Keys
	TelemetryEvery time.Duration // default 2s; at least 1s, the configuration's floor
	Logger         *slog.Logger
}

// device is what one kind of simulated device adds to agent.Run: the
// sections of its configuration beyond identity, policy and mqtt, and the
// simulated hardware it runs on.
type device interface {
	kind() string
	// config is the kind's sections of the configuration file.
	config(a *Agent) string
	// hardware is what one run of the agent drives. Each start is a fresh
	// run, as a restarted process would be, on hardware that outlives it.
	hardware() *agent.Hardware
}

// Agent is one simulated device: agent.Run, the device's composition root,
// on a configuration as it would sit in /etc/linkguard and on simulated
// hardware, restartable on the same state.
type Agent struct {
	opt   AgentOptions
	dev   device
	proxy *proxy
	log   *slog.Logger

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
}

func newAgent(opt AgentOptions, d device) (*Agent, error) {
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
	return &Agent{opt: opt, dev: d, proxy: px, log: opt.Logger.With("device", opt.ID)}, nil
}

// ID is the device id.
func (a *Agent) ID() string { return a.opt.ID }

// Site is the device's site.
func (a *Agent) Site() string { return a.opt.Site }

// Kind is router or relay.
func (a *Agent) Kind() string { return a.dev.kind() }

// PolicyFile is where the agent reads its policy file from.
func (a *Agent) PolicyFile() string { return filepath.Join(a.opt.Dir, "policy.signed.json") }

// Running reports whether the agent runs.
func (a *Agent) Running() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cancel != nil
}

// Config is the device's configuration file.
func (a *Agent) Config() []byte {
	k := a.opt.Keys
	cert, key, err := k.Identity(a.opt.ID)
	if err != nil {
		a.log.Error("no device identity: its reports go unsigned", "err", err)
	}
	return deviceConfig(a.opt.ID, a.opt.Site, a.dev.kind(), a.opt.Dir, k.TrustFiles(), max(k.Threshold, 1), k.OperatorPub,
		[]string{a.proxy.url()}, "", cert, key, a.opt.TelemetryEvery, a.dev.config(a))
}

// deviceConfig is a device's configuration file: its identity, state and
// policy file in dir, mqtt, and the sections of its kind.
// cert and key, when given, are its identity: it signs its reports.
func deviceConfig(id, site, kind, dir string, trust []string, threshold int, operatorPub string, urls []string, ca, cert, key string, telemetryEvery time.Duration, sections string) []byte {
	quoted := make([]string, len(trust))
	for i, t := range trust {
		quoted[i] = strconv.Quote(t)
	}
	identity := ""
	if cert != "" {
		identity = fmt.Sprintf("  cert: %q\n  key: %q\n", cert, key)
	}
	if ca != "" {
		identity += fmt.Sprintf("  ca: %q\n", ca)
	}
	brokers := fmt.Sprintf("url: %q", urls[0])
	if len(urls) > 1 {
		q := make([]string, len(urls))
		for i, u := range urls {
			q[i] = strconv.Quote(u)
		}
		brokers = "urls: [" + strings.Join(q, ", ") + "]"
	}
	return fmt.Appendf(nil, `device: {id: %q, site: %q, kind: %s}
state_dir: %q
policy: {file: %q, trust: [%s], threshold: %d}
mqtt:
  %s
  telemetry_every: %s
  keepalive: 10s
  operators: [%q]
%s%s`, id, site, kind, dir, filepath.Join(dir, "policy.signed.json"), strings.Join(quoted, ", "), threshold,
		brokers, max(telemetryEvery, time.Second), operatorPub, identity, sections)
}

// BareOptions describe a device with no hardware behind it.
type BareOptions struct {
	ID, Site                  string
	Broker                    string   // URL
	Dir                       string   // state and policy file
	CommitteePub, OperatorPub string   // key files it trusts
	Brokers                   []string // further broker nodes, tried after Broker
	CA                        string   // the broker's CA (mqtts:// brokers)
	Cert, Key                 string   // its identity (client certificate; signs its reports); empty: unsigned
	TelemetryEvery            time.Duration
	FanoutQoS0                bool // mqtt.fanout_qos0
	Logger                    *slog.Logger
}

// RunBare runs agent.Run for a router with no link configured, until ctx
// ends: identity, policy store and file watcher, the MQTT link with its
// queue, state, will and signed commands. The fleet is made of these.
func RunBare(ctx context.Context, o BareOptions) error {
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	cfg, err := config.Parse("sim:"+o.ID, deviceConfig(o.ID, o.Site, config.KindRouter, o.Dir, []string{o.CommitteePub}, 1, o.OperatorPub,
		append([]string{o.Broker}, o.Brokers...), o.CA, o.Cert, o.Key, o.TelemetryEvery, ""))
	if err != nil {
		return fmt.Errorf("sim: %s: %w", o.ID, err)
	}
	cfg.MQTT.FanoutQoS0 = o.FanoutQoS0
	return agent.Run(ctx, cfg, agent.Options{Logger: o.Logger, Hardware: &agent.Hardware{}})
}

// RunFleetDevice runs one device of a fleet run (fleet.Options.Start):
// RunBare with the device's broker nodes, identity and options.
func RunFleetDevice(ctx context.Context, d fleet.Device) error {
	return RunBare(ctx, BareOptions{ID: d.ID, Site: d.Site, Broker: d.Broker, Brokers: d.Brokers, CA: d.CA,
		Cert: d.Cert, Key: d.Key, Dir: d.Dir, CommitteePub: d.CommitteePub, OperatorPub: d.OperatorPub,
		TelemetryEvery: d.TelemetryEvery, FanoutQoS0: d.FanoutQoS0, Logger: d.Logger})
}

// Start runs the agent until ctx ends, Stop or Kill. It returns once every
// part of the run is built, or with the error that ended the run before
// then.
func (a *Agent) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cancel != nil {
		return nil
	}
	cfg, err := config.Parse("sim:"+a.opt.ID, a.Config())
	if err != nil {
		return fmt.Errorf("sim: %s: %w", a.opt.ID, err)
	}
	a.proxy.setCut(false)
	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		err := agent.Run(ctx, cfg, agent.Options{Logger: a.opt.Logger, Hardware: a.dev.hardware(),
			Ready: func(*agent.Agent) { ready <- struct{}{} }})
		if err != nil && ctx.Err() == nil {
			a.log.Error("agent failed", "err", err)
		}
		done <- err
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		if err == nil {
			err = errors.New("stopped before it was up")
		}
		return fmt.Errorf("sim: %s: %w", a.opt.ID, err)
	}
	a.cancel, a.done = cancel, done
	return nil
}

// Stop shuts the agent down cleanly (it says it is offline itself).
func (a *Agent) Stop() error {
	a.mu.Lock()
	cancel, done := a.cancel, a.done
	a.cancel = nil
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
