package slot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// Self is the slot the running binary was started from, as the launcher
// described it in the environment.
type Self struct {
	Root  string
	Slot  Name
	Trial bool // uncommitted candidate: must confirm health before the deadline
}

// FromEnv reads Self from the environment; ok is false when the binary was
// not started by the launcher (development runs, tests).
func FromEnv() (self Self, ok bool) {
	self = Self{Root: os.Getenv(EnvRoot), Slot: Name(os.Getenv(EnvSlot)), Trial: os.Getenv(EnvTrial) == "1"}
	return self, self.Root != "" && self.Slot.valid()
}

// Check is one health condition of a candidate: policy loaded, enforcement
// running, broker reached or queue accepting.
type Check struct {
	Name    string
	Healthy func(ctx context.Context) error
}

// Confirm commits the running slot once every check passes, polling them every
// interval. It returns nil at once when self is not on trial, nil after the
// commit, and the context's error if the context ends first; it never rolls
// back itself: the launcher does that when the deadline passes, so a broken
// binary cannot decide its own fate. The agent's composition root runs it
// beside its other components.
func Confirm(ctx context.Context, self Self, interval time.Duration, log *slog.Logger, checks ...Check) error {
	if !self.Trial {
		return nil
	}
	s, err := New(self.Root)
	if err != nil {
		return err
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	lastFailing := ""
	for {
		failing := ""
		var ferr error
		for _, c := range checks {
			if err := c.Healthy(ctx); err != nil {
				failing, ferr = c.Name, err
				break
			}
		}
		if failing == "" {
			st, err := s.Commit(self.Slot)
			if err != nil {
				return fmt.Errorf("slot: confirm %s: %w", self.Slot, err)
			}
			log.Info("slot committed", "slot", self.Slot, "version", st.Slot(self.Slot).Version)
			return nil
		}
		if failing != lastFailing {
			log.Warn("candidate not healthy yet", "slot", self.Slot, "check", failing, "err", ferr)
			lastFailing = failing
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// MarkHealthy commits the slot the launcher started this process from; a
// no-op outside the launcher or for a committed slot.
func MarkHealthy() error {
	self, ok := FromEnv()
	if !ok || !self.Trial {
		return nil
	}
	s, err := New(self.Root)
	if err != nil {
		return err
	}
	_, err = s.Commit(self.Slot)
	return err
}

// PendingRollback returns the unreported rollback under root, or nil. The
// agent calls it at start and publishes the event once connected, then
// AckRollback.
func PendingRollback(root string) (*Rollback, error) {
	s := &Store{root: root, now: time.Now}
	st, err := s.Load()
	if errors.Is(err, ErrNoState) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return st.Rollback, nil
}
