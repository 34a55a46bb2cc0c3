package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
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
	"linkguard.dev/linkguard/hal/atomicfile"
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
	// The stores report outcomes to the link, which needs the stores: link
	// is set right after, before anything can apply a policy or a roster.
	var link *mqttlink.Link
	// The roster comes first: who may sign policies is the provisioned
	// committee and the committee of the roster in force (committeeTrust),
	// on restore as on apply. It also says who may sign which commands;
	// watched like the policy and delivered like it over MQTT.
	rost, err := openRoster(cfg, log, func(o roster.Outcome) {
		if link != nil {
			link.RosterOutcome(o)
		}
	})
	if err != nil {
		return err
	}
	trust, err := newCommitteeTrust(cfg.Policy.Trust)
	if err != nil {
		return err
	}
	trustChanged := make(chan struct{}, 1)
	rost.Subscribe(func(c *roster.Current) {
		trust.update(c)
		select {
		case trustChanged <- struct{}{}:
		default: // a reconsideration is already due
		}
	})
	policy, err := openPolicy(cfg, trust.get, log, func(o store.Outcome) {
		if link != nil {
			link.PolicyOutcome(o)
		}
	})
	if err != nil {
		return err
	}
	rw := &watch.Watcher{Path: cfg.Policy.Roster, What: "roster", Store: rosterApplier{rost}, Logger: log.With("part", "roster-watch"),
		OnMissing: func(string, error) {}}
	runs := []func(context.Context) error{rw.Run, reconsider(cfg, policy, trustChanged, log)}
	up := reporting{events: report.Discard, telemetry: offline{}, commands: offline{}}
	if m := cfg.MQTT; m != nil {
		if link, err = openLink(cfg, m, policy, rost, opts.LevelVar, log); err != nil {
			return err
		}
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

// openPolicy makes the policy store, its trust from trust, and restores
// its last-known-good policy.
func openPolicy(cfg *config.Config, trust func() store.Trust, log *slog.Logger, outcome func(store.Outcome)) (*store.Store, error) {
	anchors, err := dsse.LoadKeyring(cfg.Policy.Trust...)
	if err != nil {
		return nil, fmt.Errorf("agent: policy trust: %w", err)
	}
	st, err := store.New(store.Options{
		Trust: anchors, Threshold: cfg.Policy.Threshold, TrustFrom: trust, StateDir: cfg.StateDir, Logger: log.With("part", "policy"),
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

// committeeTrust is who may sign policies: the committee keys the device
// was provisioned with (its anchors) and the keys of the committee members
// of the roster in force, under the higher of the configured threshold and
// the roster's committee threshold. The roster adds signers; it never
// removes an anchor (the store makes sure). An expired roster still counts
// here, though commands are refused under it: dropping its members at
// expiry would leave the last-known-good policy they signed unverifiable
// at the next restart, cutting the links for a late committee.
type committeeTrust struct {
	paths   []string
	anchors []ed25519.PublicKey
	cur     atomic.Pointer[store.Trust] // nil until a roster is in force: the anchors alone
}

func newCommitteeTrust(paths []string) (*committeeTrust, error) {
	t := &committeeTrust{paths: paths}
	for _, p := range paths {
		pub, err := dsse.LoadPublicKey(p)
		if err != nil {
			return nil, fmt.Errorf("agent: policy trust: %w", err)
		}
		t.anchors = append(t.anchors, pub)
	}
	return t, nil
}

// update compiles the trust of the roster c once, when it comes into
// force, for every verification after.
func (t *committeeTrust) update(c *roster.Current) {
	ring := dsse.NewKeyring()
	for i, pub := range t.anchors {
		ring.Add(pub, t.paths[i])
	}
	r := c.Roster
	for _, o := range r.Holders(roster.Committee) {
		for _, k := range o.Keys {
			ring.Add(k.Public, o.ID)
		}
	}
	// A person is one signer whatever keys they hold, anchors included.
	signer := func(id string) string {
		if o := r.ByKey(id); o != nil {
			return "operator:" + o.ID
		}
		return "key:" + id
	}
	t.cur.Store(&store.Trust{Keys: ring, Threshold: c.Thresholds.Committee, Signer: signer})
}

func (t *committeeTrust) get() store.Trust {
	if p := t.cur.Load(); p != nil {
		return *p
	}
	return store.Trust{}
}

// reconsider tries again, after each roster change, the last policy the
// store refused for too few trusted signers (it may have arrived, over
// MQTT or in the policy file, before the roster naming its signers). One
// that came otherwise than from the policy file is then kept there, as the
// link keeps the fleet policy it applies.
func reconsider(cfg *config.Config, policy *store.Store, changed <-chan struct{}, log *slog.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
			}
			c, err := policy.TrustChanged()
			if err != nil || c.Source == "file:"+cfg.Policy.File {
				continue
			}
			if err := atomicfile.Write(cfg.Policy.File, c.Envelope, 0o644); err != nil {
				log.Error("policy applied after a roster change not written to the policy file", "path", cfg.Policy.File, "err", err)
			}
		}
	}
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
	// The device's broker identity signs what it reports, so consumers
	// can tell its reports from anyone else's (contract.Seal).
	var signer *contract.Signer
	if m.Cert != "" {
		if signer, err = contract.LoadSigner(m.Cert, m.Key); err != nil {
			return nil, fmt.Errorf("agent: mqtt identity: %w", err)
		}
	}
	link, err := mqttlink.New(mqttlink.Options{
		Signer: signer,
		Device: cfg.Device.ID, Site: cfg.Device.Site, Kind: cfg.Device.Kind.String(), Version: version.Version,
		URLs: m.Brokers(), CA: m.CA, Cert: m.Cert, Key: m.Key,
		Keepalive: m.Keepalive, TelemetryEvery: m.TelemetryEvery,
		StateDir: cfg.StateDir, QueueMaxBytes: m.Queue.MaxMB.Bytes(),
		Operators: ops, Policy: policy, PolicyFile: cfg.Policy.File,
		Roster: rost, RosterFile: cfg.Policy.Roster,
		FanoutQoS0: m.FanoutQoS0,
		Logger:     log.With("part", "mqtt"), LevelVar: lv,
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
