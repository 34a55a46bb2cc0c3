package slot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Boot is the launcher's decision for one start.
type Boot struct {
	Slot     Name
	Version  string
	Trial    bool      // an uncommitted candidate: supervise it against the health deadline
	Attempt  int       // which attempt of the candidate this is (1-based) when Trial
	RolledBk *Rollback // set when this start rolled a candidate back
}

// PrepareBoot decides which slot to start and records the decision before the
// start: a candidate's attempt is counted first, so a candidate that hangs or
// takes the device down (power loss, kernel panic) still uses up its
// attempts. A candidate that has had maxAttempts starts without committing is
// rolled back. A slot whose binary is missing is never chosen.
func (s *Store) PrepareBoot(maxAttempts int) (Boot, error) {
	if maxAttempts < 1 {
		maxAttempts = 1
	}
	var b Boot
	if err := s.repairCorrupt(); err != nil {
		return b, err
	}
	_, err := s.Update(func(st *State) error {
		b = Boot{}
		if st.Candidate != "" && !s.bootable(st, st.Candidate) {
			s.rollback(st, "candidate not bootable")
			b.RolledBk = st.Rollback
		}
		if st.Candidate != "" && st.Attempts >= maxAttempts {
			s.rollback(st, fmt.Sprintf("candidate did not report healthy in %d boot attempts", st.Attempts))
			b.RolledBk = st.Rollback
		}
		if st.Candidate != "" {
			st.Attempts++
			b.Slot, b.Trial, b.Attempt = st.Candidate, true, st.Attempts
			b.Version = st.Slot(st.Candidate).Version
			return nil
		}
		switch {
		case s.bootable(st, st.Active):
			b.Slot = st.Active
		case s.bootable(st, st.Active.Other()):
			// The active slot is damaged (by hand, or a first install
			// interrupted): boot the one that works and make it active.
			st.Active = st.Active.Other()
			b.Slot = st.Active
		default:
			return ErrNoBootable
		}
		b.Version = st.Slot(b.Slot).Version
		return nil
	})
	return b, err
}

func (s *Store) bootable(st *State, n Name) bool {
	if !st.Slot(n).Valid {
		return false
	}
	fi, err := os.Stat(s.Binary(n))
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o100 != 0
}

// rollback abandons the candidate, or, with none, switches back to the other
// valid slot, and leaves the marker.
func (s *Store) rollback(st *State, reason string) {
	from := st.Candidate
	to := st.Active
	if from == "" {
		from, to = st.Active, st.Active.Other()
		st.Active = to
	}
	st.Rollback = &Rollback{
		From: from, FromVersion: st.Slot(from).Version,
		To: to, ToVersion: st.Slot(to).Version,
		Reason: reason, Attempts: st.Attempts, At: s.now().UTC(),
	}
	st.Candidate, st.Attempts = "", 0
}

// Abandon rolls back candidate n (the launcher calls it when the health
// deadline passes or the candidate's health check failed). It is a no-op
// returning ErrNotCandidate if n is no longer the candidate, for example
// because it committed just before.
func (s *Store) Abandon(n Name, reason string) (State, error) {
	return s.Update(func(st *State) error {
		if st.Candidate != n || n == "" {
			return ErrNotCandidate
		}
		s.rollback(st, reason)
		return nil
	})
}

// Rollback is the operator's rollback: abandon the candidate if one is on
// trial, else switch the active slot back to the other valid one.
func (s *Store) Rollback(reason string) (State, error) {
	return s.Update(func(st *State) error {
		if st.Candidate == "" && !s.bootable(st, st.Active.Other()) {
			return ErrNothingToRollTo
		}
		s.rollback(st, reason)
		return nil
	})
}

// Commit makes candidate n the active slot. Committing the slot that is
// already active with no candidate pending is a no-op, so an agent may call it
// on every start.
func (s *Store) Commit(n Name) (State, error) {
	return s.Update(func(st *State) error {
		switch {
		case st.Candidate == n && n != "":
			st.Active, st.Candidate, st.Attempts = n, "", 0
			return nil
		case st.Candidate == "" && st.Active == n:
			return nil
		default:
			return fmt.Errorf("%w: %q (candidate %q, active %q)", ErrNotCandidate, n, st.Candidate, st.Active)
		}
	})
}

// AckRollback clears the rollback marker once it has been reported; at must
// be the marker's At, so a newer rollback is not lost.
func (s *Store) AckRollback(r Rollback) error {
	_, err := s.Update(func(st *State) error {
		if st.Rollback != nil && st.Rollback.At.Equal(r.At) && st.Rollback.From == r.From {
			st.Rollback = nil
		}
		return nil
	})
	return err
}

// repairCorrupt replaces an unreadable state file (bit rot: writes are
// atomic, so power loss cannot cause it) with one that boots the older of the
// installed slots: a slot that was once committed, since only the newer slot
// can be an uncommitted candidate. The bad file is kept beside it.
func (s *Store) repairCorrupt() error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	_, err = s.Load()
	if err == nil || errors.Is(err, ErrNoState) {
		return nil
	}
	path := filepath.Join(s.root, StateFile)
	if err := os.Rename(path, path+".corrupt"); err != nil {
		return fmt.Errorf("slot: set corrupt state aside: %w", err)
	}
	st := State{Active: A}
	var times [2]time.Time
	for i, n := range []Name{A, B} {
		fi, err := os.Stat(filepath.Join(s.Dir(n), "manifest.dsse.json"))
		if err != nil {
			continue
		}
		*st.Slot(n) = Info{Valid: true, Version: "unknown", Installed: fi.ModTime().UTC()}
		if !s.bootable(&st, n) {
			*st.Slot(n) = Info{}
			continue
		}
		times[i] = fi.ModTime()
	}
	switch {
	case st.A.Valid && st.B.Valid && times[1].Before(times[0]):
		st.Active = B
	case !st.A.Valid && st.B.Valid:
		st.Active = B
	}
	st.Rollback = &Rollback{To: st.Active, Reason: "state file unreadable: booted the older slot", At: s.now().UTC()}
	_, err = s.updateLocked(func(cur *State) error { *cur = st; return nil })
	return err
}
