package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/agent/feeds"
	"linkguard.dev/linkguard/agent/linkfilter"
	"linkguard.dev/linkguard/agent/mqttlink"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/agent/version"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/store"
	"linkguard.dev/linkguard/policy/watch"
)

// Options are what Run needs beyond the configuration.
type Options struct {
	Logger   *slog.Logger
	LevelVar *slog.LevelVar // lets log.level change the level; may be nil
	// Ready, if set, is called once every part has started.
	Ready func(*Agent)
}

// Agent is a running device: its parts, for commands and tests to reach.
type Agent struct {
	Config *config.Config
	Logger *slog.Logger
	Policy *store.Store
	// Events is where parts emit events: the MQTT link, or report.Discard
	// on a device without mqtt.
	Events report.Events
	// Telemetry and Commands take parts' telemetry sections and command
	// handlers; nil on a device without mqtt.
	Telemetry report.Telemetry
	Commands  command.Registrar
	Link      *mqttlink.Link // nil without mqtt
	// Feeds is the power-feed throttle controller; nil without feeds.
	Feeds *feeds.Controller
	// Links is the packet filter; nil without links.
	Links     *linkfilter.Filter
	linkStats *linkStats

	feedsMaxAge time.Duration // a feed loop silent this long is not alive
}

// Run builds the device's parts from cfg and runs them until ctx ends or one
// of them fails. It returns nil on a clean shutdown.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("device", cfg.Device.ID)
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("agent: state dir: %w", err)
	}
	trust, err := dsse.LoadKeyring(cfg.Policy.Trust...)
	if err != nil {
		return fmt.Errorf("agent: policy trust: %w", err)
	}
	a := &Agent{Config: cfg, Logger: log, Events: report.Discard}
	a.Policy, err = store.New(store.Options{
		Trust: trust, Threshold: cfg.Policy.Threshold, StateDir: cfg.StateDir, Logger: log.With("part", "policy"),
		OnOutcome: func(o store.Outcome) {
			if a.Link != nil {
				a.Link.PolicyOutcome(o)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if c, err := a.Policy.Restore(); err == nil {
		log.Info("enforcing last-known-good policy", "serial", c.Serial())
	} else if !errors.Is(err, os.ErrNotExist) {
		log.Error("last-known-good policy unusable", "err", err)
	} else {
		log.Warn("no last-known-good policy: enforcing nothing until a signed policy arrives")
	}

	if m := cfg.MQTT; m != nil {
		if err := a.startLink(m, opts.LevelVar); err != nil {
			return err
		}
	}

	if len(cfg.Feeds) > 0 {
		specs, hw, err := feeds.FromConfig(cfg, log.With("part", "feeds"))
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		defer hw.Close()
		a.feedsMaxAge = feeds.WatchdogAge(specs)
		if err := a.startFeeds(specs); err != nil {
			return err
		}
	}

	var runLinks func(context.Context) error
	if l := cfg.Links; l != nil {
		run, release, err := a.startLinks(l)
		if err != nil {
			return err
		}
		defer release()
		runLinks = run
	}

	var updateRuns []func(context.Context) error
	if u := cfg.Update; u != nil {
		if updateRuns, err = a.startUpdate(u); err != nil {
			return err
		}
	}

	g, ctx := errgroup.WithContext(ctx)
	for _, run := range updateRuns {
		g.Go(func() error { return run(ctx) })
	}
	if runLinks != nil {
		g.Go(func() error { return runLinks(ctx) })
	}
	if a.Link != nil {
		g.Go(func() error { return a.Link.Run(ctx) })
	}
	if a.Feeds != nil {
		g.Go(func() error { return a.Feeds.Run(ctx) })
	}
	if wd := cfg.Watchdog; wd != nil {
		w := &feeds.Watchdog{Device: wd.Device, Every: wd.Every, Logger: log.With("part", "watchdog")}
		if a.Feeds != nil {
			w.Alive = func(now time.Time) bool { return a.Feeds.Alive(now, a.feedsMaxAge) }
		}
		g.Go(func() error { return w.Run(ctx) })
	}
	w := &watch.Watcher{Path: cfg.Policy.File, Store: a.Policy, Logger: log.With("part", "policy-watch")}
	g.Go(func() error { return w.Run(ctx) })

	if opts.Ready != nil {
		opts.Ready(a)
	}
	log.Info("agent running", "kind", cfg.Device.Kind, "site", cfg.Device.Site)
	err = g.Wait()
	log.Info("agent stopped", "err", err)
	return err
}

// startFeeds builds the feed controller on opened hardware and plugs it
// into the agent's events, telemetry and commands.
func (a *Agent) startFeeds(specs []feeds.Spec) error {
	ctl, err := feeds.New(feeds.Options{Feeds: specs, StateDir: a.Config.StateDir, Events: a.Events,
		Logger: a.Logger.With("part", "feeds")})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if a.Commands != nil {
		if err := ctl.RegisterCommands(a.Commands); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	if a.Telemetry != nil {
		ctl.RegisterTelemetry(a.Telemetry)
	}
	a.Feeds = ctl
	return nil
}

// startLink opens the MQTT link (its queue, event chain and replay memory)
// and makes it the agent's event sink, telemetry and command registry.
func (a *Agent) startLink(m *config.MQTT, lv *slog.LevelVar) error {
	cfg := a.Config
	ops, err := dsse.LoadKeyring(m.Operators...)
	if err != nil {
		return fmt.Errorf("agent: mqtt operators: %w", err)
	}
	link, err := mqttlink.New(mqttlink.Options{
		Device: cfg.Device.ID, Site: cfg.Device.Site, Kind: cfg.Device.Kind.String(), Version: version.Version,
		URL: m.URL, CA: m.CA, Cert: m.Cert, Key: m.Key,
		Keepalive: m.Keepalive, TelemetryEvery: m.TelemetryEvery,
		StateDir: cfg.StateDir, QueueMaxBytes: int64(m.Queue.MaxMB) << 20,
		Operators: ops, Policy: a.Policy, PolicyFile: cfg.Policy.File,
		Logger: a.Logger.With("part", "mqtt"), LevelVar: lv,
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if cfg.Links != nil && cfg.Links.Evidence.Dir != "" {
		if err := link.RegisterEvidence(cfg.Links.Evidence.Dir); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	a.Link, a.Events, a.Telemetry, a.Commands = link, link, link, link
	return nil
}
