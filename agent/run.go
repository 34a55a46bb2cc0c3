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
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/agent/version"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/roster"
	"linkguard.dev/linkguard/policy/store"
	"linkguard.dev/linkguard/policy/watch"
)

// Options are what Run needs beyond the configuration.
type Options struct {
	Logger   *slog.Logger
	LevelVar *slog.LevelVar // lets log.level change the level; may be nil
	// Hardware is what the device drives; nil is LiveHardware(). The
	// testbench hands in its in-memory wires and simulated buses.
	Hardware *Hardware
	// Ready, if set, is called once every part is built, as they start.
	Ready func(*Agent)
}

// Agent is a running device as its commands and tests see it. Run builds
// the parts, each given what it needs when it is made; Agent only shows
// them.
type Agent struct {
	policy *store.Store
	link   *mqttlink.Link
	feeds  *feeds.Controller
	links  *links
}

// Policy is the policy store.
func (a *Agent) Policy() *store.Store { return a.policy }

// Link is the MQTT link; nil on a device without mqtt.
func (a *Agent) Link() *mqttlink.Link { return a.link }

// Feeds is the feed controller; nil without feeds.
func (a *Agent) Feeds() *feeds.Controller { return a.feeds }

// Filter is the packet filter; nil without links.
func (a *Agent) Filter() *linkfilter.Filter {
	if a.links == nil {
		return nil
	}
	return a.links.f
}

// LinksTelemetry is the links section as telemetry reports it; false
// without links.
func (a *Agent) LinksTelemetry() (contract.Links, bool) {
	if a.links == nil {
		return contract.Links{}, false
	}
	return a.links.stats.read(), true
}

// reporting is where parts send their events and telemetry and register
// their commands: the MQTT link, or nowhere on a device without mqtt.
// It exists before any part is made, and each gets it in its constructor.
type reporting struct {
	events    report.Events
	telemetry report.Telemetry
	commands  command.Registrar
}

// offline is the telemetry and command registry of a device without mqtt:
// no report leaves it and no command can reach it, so sections and
// handlers are not kept.
type offline struct{}

func (offline) AddSection(string, func() any)          {}
func (offline) Register(string, command.Handler) error { return nil }

var (
	_ report.Telemetry  = offline{}
	_ command.Registrar = offline{}
)

// Run builds the device's parts from cfg on the hardware opts give and runs
// them until ctx ends or one of them fails. It returns nil on a clean
// shutdown.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("device", cfg.Device.ID)
	hw := opts.Hardware
	if hw == nil {
		hw = LiveHardware()
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("agent: state dir: %w", err)
	}
	// The store reports outcomes to the link, which needs the store: link
	// is set right after, before anything can apply a policy.
	var link *mqttlink.Link
	policy, err := openPolicy(cfg, log, func(o store.Outcome) {
		if link != nil {
			link.PolicyOutcome(o)
		}
	})
	if err != nil {
		return err
	}
	var runs []func(context.Context) error
	up := reporting{events: report.Discard, telemetry: offline{}, commands: offline{}}
	if m := cfg.MQTT; m != nil {
		// Who may sign which commands: the committee-signed roster, watched
		// like the policy and delivered like it over MQTT.
		rost, err := openRoster(cfg, log, func(o roster.Outcome) {
			if link != nil {
				link.RosterOutcome(o)
			}
		})
		if err != nil {
			return err
		}
		if link, err = openLink(cfg, m, policy, rost, opts.LevelVar, log); err != nil {
			return err
		}
		rw := &watch.Watcher{Path: cfg.Policy.Roster, What: "roster", Store: rosterApplier{rost}, Logger: log.With("part", "roster-watch"),
			OnMissing: func(string, error) {}}
		runs = append(runs, rw.Run)
		up = reporting{events: link, telemetry: link, commands: link}
	}
	a := &Agent{policy: policy, link: link}
	if link != nil {
		runs = append(runs, link.Run)
	}

	alive := func(time.Time) bool { return true } // what the watchdog and a trial boot wait for
	if len(cfg.Feeds) > 0 {
		ctl, maxAge, closer, err := newFeeds(cfg, hw, up, log)
		if err != nil {
			return err
		}
		defer closer.Close()
		a.feeds = ctl
		alive = func(now time.Time) bool { return ctl.Alive(now, maxAge) }
		runs = append(runs, ctl.Run)
	}
	if l := cfg.Links; l != nil {
		lk, err := newLinks(cfg.Device.Site, l, hw, policy, up, log)
		if err != nil {
			return err
		}
		defer lk.release()
		a.links = lk
		runs = append(runs, lk.run)
	}
	if cfg.Update != nil {
		upd, err := newUpdater(cfg, up, healthChecks(policy, alive, link), log)
		if err != nil {
			return err
		}
		runs = append(runs, upd...)
	}
	if wd := cfg.Watchdog; wd != nil {
		if hw.Watchdog == nil {
			return missing("watchdog")
		}
		runs = append(runs, hw.Watchdog(wd, alive, log.With("part", "watchdog")))
	}
	w := &watch.Watcher{Path: cfg.Policy.File, Store: policy, Logger: log.With("part", "policy-watch")}
	runs = append(runs, w.Run)

	g, ctx := errgroup.WithContext(ctx)
	for _, run := range runs {
		g.Go(func() error { return run(ctx) })
	}
	if opts.Ready != nil {
		opts.Ready(a)
	}
	log.Info("agent running", "kind", cfg.Device.Kind, "site", cfg.Device.Site)
	err = g.Wait()
	log.Info("agent stopped", "err", err)
	return err
}

// openPolicy makes the policy store and restores its last-known-good
// policy.
func openPolicy(cfg *config.Config, log *slog.Logger, outcome func(store.Outcome)) (*store.Store, error) {
	trust, err := dsse.LoadKeyring(cfg.Policy.Trust...)
	if err != nil {
		return nil, fmt.Errorf("agent: policy trust: %w", err)
	}
	st, err := store.New(store.Options{
		Trust: trust, Threshold: cfg.Policy.Threshold, StateDir: cfg.StateDir, Logger: log.With("part", "policy"),
		OnOutcome: outcome,
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if c, err := st.Restore(); err == nil {
		log.Info("enforcing last-known-good policy", "serial", c.Serial())
	} else if !errors.Is(err, os.ErrNotExist) {
		log.Error("last-known-good policy unusable", "err", err)
	} else {
		log.Warn("no last-known-good policy: enforcing nothing until a signed policy arrives")
	}
	return st, nil
}

// openRoster makes the roster store, anchored in the committee keys the
// policy trusts, and restores its last-known-good roster.
func openRoster(cfg *config.Config, log *slog.Logger, outcome func(roster.Outcome)) (*roster.Store, error) {
	anchors, err := dsse.LoadKeyring(cfg.Policy.Trust...)
	if err != nil {
		return nil, fmt.Errorf("agent: policy trust: %w", err)
	}
	st, err := roster.New(roster.Options{Anchors: anchors, Floor: roster.Thresholds{Committee: cfg.Policy.Threshold},
		StateDir: cfg.StateDir, Logger: log.With("part", "roster"), OnOutcome: outcome})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if c, err := st.Restore(); err == nil {
		log.Info("last-known-good roster", "serial", c.Serial())
	} else if !errors.Is(err, os.ErrNotExist) {
		log.Error("last-known-good roster unusable", "err", err)
	}
	return st, nil
}

// rosterApplier lets the file watcher feed the roster store.
type rosterApplier struct{ s *roster.Store }

func (r rosterApplier) Apply(env []byte, source string) (*store.Current, error) {
	_, err := r.s.Apply(env, source)
	return nil, err
}

// openLink opens the MQTT link (its queue, event chain and replay memory):
// the device's events, telemetry and command intake.
func openLink(cfg *config.Config, m *config.MQTT, policy *store.Store, rost *roster.Store, lv *slog.LevelVar, log *slog.Logger) (*mqttlink.Link, error) {
	ops, err := dsse.LoadKeyring(m.Operators...)
	if err != nil {
		return nil, fmt.Errorf("agent: mqtt operators: %w", err)
	}
	link, err := mqttlink.New(mqttlink.Options{
		Device: cfg.Device.ID, Site: cfg.Device.Site, Kind: cfg.Device.Kind.String(), Version: version.Version,
		URL: m.URL, CA: m.CA, Cert: m.Cert, Key: m.Key,
		Keepalive: m.Keepalive, TelemetryEvery: m.TelemetryEvery,
		StateDir: cfg.StateDir, QueueMaxBytes: m.Queue.MaxMB.Bytes(),
		Operators: ops, Policy: policy, PolicyFile: cfg.Policy.File,
		Roster: rost, RosterFile: cfg.Policy.Roster,
		Logger: log.With("part", "mqtt"), LevelVar: lv,
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if cfg.Links != nil && cfg.Links.Evidence.Dir != "" {
		if err := link.RegisterEvidence(cfg.Links.Evidence.Dir); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	return link, nil
}
