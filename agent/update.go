package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/agent/mqttlink"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/firmware/slot"
	"linkguard.dev/linkguard/firmware/update"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/store"
)

// ErrRestart ends Run after a firmware candidate was installed: the init
// system restarts the launcher, which tries the candidate. The agent never
// execs the new binary itself, so a bad one cannot decide its own fate.
var ErrRestart = errors.New("agent: restart requested to try a new firmware candidate")

// Event types of the firmware part.
const (
	EventFirmwareRolledBack = "firmware.rolled_back"
	EventFirmwareInstalled  = "firmware.installed"
	EventFirmwareFailed     = "firmware.failed"
	EventFirmwareCommitted  = "firmware.committed"
)

// updater owns update.fetch: one download at a time, in its own goroutine,
// so commands queued behind it (a throttle, a revocation) are not held up.
type updater struct {
	in     *update.Installer
	events report.Events
	log    *slog.Logger
	jobs   chan update.FetchArgs
}

// newUpdater reports a rollback the launcher recorded, registers
// update.fetch, and returns the goroutines to run: the fetch worker and, on
// a candidate's trial boot, the confirmation that commits it once health
// holds.
func newUpdater(cfg *config.Config, up reporting, health []slot.Check, log *slog.Logger) ([]func(context.Context) error, error) {
	log = log.With("part", "update")
	u := cfg.Update
	in, err := NewInstaller(cfg, log)
	if err != nil {
		return nil, err
	}
	// The event goes into the durable queue now and reaches the console once
	// the broker is reached, so the record can be cleared at once.
	if rb, err := slot.PendingRollback(u.Root); err != nil {
		log.Error("slot state unreadable", "err", err)
	} else if rb != nil {
		up.events.Emit(EventFirmwareRolledBack, report.Error, report.Fields{
			"from": rb.From, "from_version": rb.FromVersion, "to": rb.To, "to_version": rb.ToVersion,
			"reason": rb.Reason, "attempts": rb.Attempts, "at": rb.At,
		})
		if err := in.Slots.AckRollback(*rb); err != nil {
			log.Error("could not clear the reported rollback", "err", err)
		}
	}
	upd := &updater{in: in, events: up.events, log: log, jobs: make(chan update.FetchArgs, 1)}
	if err := up.commands.Register(command.UpdateFetch, command.HandlerFunc(upd.handle)); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	runs := []func(context.Context) error{upd.run}
	if self, ok := slot.FromEnv(); ok && self.Trial {
		runs = append(runs, func(ctx context.Context) error {
			err := slot.Confirm(ctx, self, time.Second, log, health...)
			if err == nil {
				up.events.Emit(EventFirmwareCommitted, report.Notice, report.Fields{"slot": self.Slot})
			}
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		})
	}
	return runs, nil
}

// NewInstaller builds the device's firmware installer from the update
// section of cfg (which must have one): its slots, release keys, hardware
// revision, download cap, and the identity a downgrade ticket must name.
// The agent's update.fetch and linkguard update install are to use this one
// builder.
func NewInstaller(cfg *config.Config, log *slog.Logger) (*update.Installer, error) {
	u := cfg.Update
	if u == nil {
		return nil, errors.New("agent: the configuration has no update section")
	}
	slots, err := slot.New(u.Root)
	if err != nil {
		return nil, fmt.Errorf("agent: update: %w", err)
	}
	keys, err := dsse.LoadKeyring(u.Trust...)
	if err != nil {
		return nil, fmt.Errorf("agent: update trust: %w", err)
	}
	return &update.Installer{Slots: slots, Keys: keys, Threshold: u.Threshold, Hardware: u.Hardware, MaxFetch: u.MaxFetchMB.Bytes(),
		Device: cfg.Device.ID, Site: cfg.Device.Site, Logger: log}, nil
}

// healthChecks are what a firmware candidate must show before it is
// committed: a policy loaded, enforcement running (alive: the feed loops
// step; the packet filter is built before the updater or the agent does
// not start), and the broker reached or the queue accepting reports.
func healthChecks(policy *store.Store, alive func(time.Time) bool, link *mqttlink.Link) []slot.Check {
	return []slot.Check{
		{Name: "policy", Healthy: func(context.Context) error {
			if policy.Current() == nil {
				return errors.New("no policy loaded")
			}
			return nil
		}},
		{Name: "enforcement", Healthy: func(context.Context) error {
			if !alive(time.Now()) {
				return errors.New("feed control loop not running")
			}
			return nil
		}},
		{Name: "uplink", Healthy: func(context.Context) error {
			if link == nil || link.Connected() || link.QueueStats().Appended > 0 {
				return nil
			}
			return errors.New("broker not reached and nothing queued yet")
		}},
	}
}

func (u *updater) handle(_ context.Context, c *command.Command) (any, error) {
	var args update.FetchArgs
	if err := c.DecodeArgs(&args); err != nil {
		return nil, err
	}
	if args.URL == "" || len(args.SHA256) != 64 {
		return nil, errors.New("update.fetch needs url and a 64-hex-digit sha256")
	}
	select {
	case u.jobs <- args:
		return map[string]any{"status": "downloading"}, nil
	default:
		return nil, errors.New("an update is already in progress")
	}
}

func (u *updater) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case args := <-u.jobs:
			res, err := u.in.Fetch(ctx, args)
			if err != nil {
				u.log.Error("update failed; the running slot is untouched", "url", args.URL, "err", err)
				u.events.Emit(EventFirmwareFailed, report.Error, report.Fields{"url": args.URL, "sha256": args.SHA256, "error": err.Error()})
				continue
			}
			u.events.Emit(EventFirmwareInstalled, report.Notice, report.Fields{
				"version": res.Manifest.Version, "slot": res.Slot, "candidate": res.Candidate})
			if res.Candidate {
				return ErrRestart
			}
		}
	}
}
