package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/firmware/slot"
	"linkguard.dev/linkguard/firmware/update"
	"linkguard.dev/linkguard/policy/dsse"
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

// startUpdate reports a rollback the launcher recorded, registers
// update.fetch, and returns the goroutines to run: the fetch worker and, on
// a candidate's trial boot, the health confirmation that commits it.
func (a *Agent) startUpdate(u *config.Update) ([]func(context.Context) error, error) {
	log := a.Logger.With("part", "update")
	slots, err := slot.New(u.Root)
	if err != nil {
		return nil, fmt.Errorf("agent: update: %w", err)
	}
	keys, err := dsse.LoadKeyring(u.Trust...)
	if err != nil {
		return nil, fmt.Errorf("agent: update trust: %w", err)
	}
	// The event goes into the durable queue now and reaches the console once
	// the broker is reached, so the record can be cleared at once.
	if rb, err := slot.PendingRollback(u.Root); err != nil {
		log.Error("slot state unreadable", "err", err)
	} else if rb != nil {
		a.Events.Emit(EventFirmwareRolledBack, report.Error, report.Fields{
			"from": rb.From, "from_version": rb.FromVersion, "to": rb.To, "to_version": rb.ToVersion,
			"reason": rb.Reason, "attempts": rb.Attempts, "at": rb.At,
		})
		if err := slots.AckRollback(*rb); err != nil {
			log.Error("could not clear the reported rollback", "err", err)
		}
	}
	up := &updater{
		in:     &update.Installer{Slots: slots, Keys: keys, Hardware: u.Hardware, MaxFetch: int64(u.MaxFetchMB) << 20, Logger: log},
		events: a.Events, log: log, jobs: make(chan update.FetchArgs, 1),
	}
	if a.Commands != nil {
		if err := a.Commands.Register(command.UpdateFetch, command.HandlerFunc(up.handle)); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	runs := []func(context.Context) error{up.run}
	if self, ok := slot.FromEnv(); ok && self.Trial {
		runs = append(runs, func(ctx context.Context) error {
			err := slot.Confirm(ctx, self, time.Second, log, a.healthChecks()...)
			if err == nil {
				a.Events.Emit(EventFirmwareCommitted, report.Notice, report.Fields{"slot": self.Slot})
			}
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		})
	}
	return runs, nil
}

// healthChecks are what a firmware candidate must show before it is
// committed: a policy loaded, enforcement running, and the broker reached or
// the queue accepting reports.
func (a *Agent) healthChecks() []slot.Check {
	return []slot.Check{
		{Name: "policy", Healthy: func(context.Context) error {
			if a.Policy.Current() == nil {
				return errors.New("no policy loaded")
			}
			return nil
		}},
		{Name: "enforcement", Healthy: func(context.Context) error {
			if a.Feeds != nil && !a.Feeds.Alive(time.Now(), a.feedsMaxAge) {
				return errors.New("feed control loop not running")
			}
			if a.Config.Links != nil && a.Links == nil {
				return errors.New("packet filter not running")
			}
			return nil
		}},
		{Name: "uplink", Healthy: func(context.Context) error {
			if a.Link == nil || a.Link.Connected() || a.Link.QueueStats().Appended > 0 {
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
