package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sync/errgroup"

	"linkguard.dev/linkguard/agent/config"
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
	a := &Agent{Config: cfg, Logger: log}
	a.Policy, err = store.New(store.Options{
		Trust: trust, Threshold: cfg.Policy.Threshold, StateDir: cfg.StateDir, Logger: log.With("part", "policy"),
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

	g, ctx := errgroup.WithContext(ctx)
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
