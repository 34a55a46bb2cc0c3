package slot

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"linkguard.dev/linkguard/firmware/bundle"
	"linkguard.dev/linkguard/hal/atomicfile"
)

// Step names a point of Install after which power may fail; tests kill the
// installer at each of them.
type Step string

// Install's steps, in order. StepPayload is reported once per payload.
const (
	StepMarked    Step = "marked"    // state names the target slot invalid
	StepStaging   Step = "staging"   // staging directory created
	StepPayload   Step = "payload"   // one payload written and fsynced
	StepStaged    Step = "staged"    // every payload written, directories synced
	StepMovedOld  Step = "moved-old" // the old slot directory moved aside
	StepSwapped   Step = "swapped"   // staging directory renamed into the slot
	StepCandidate Step = "candidate" // state names the slot candidate (or active on a first install)
)

// InstallOptions tunes Install.
type InstallOptions struct {
	// AfterStep, if set, is called after each step (tests inject power loss).
	AfterStep func(Step)
}

// Installed reports what Install did.
type Installed struct {
	Slot      Name
	Version   string
	Candidate bool // false on a first install, which is active at once
}

// Install writes the bundle that r streams into the inactive slot, hashing
// every payload as it is written, and marks the slot the candidate for the
// next start. The caller has verified the whole bundle first (bundle.Verify)
// and opens it again for r; a payload whose bytes changed in between fails
// here, before the slot is marked. The active slot is never touched. If no
// slot holds a valid installation yet, the written slot becomes active
// directly: there is nothing to roll back to.
func (s *Store) Install(r *bundle.Reader, opt InstallOptions) (Installed, error) {
	step := func(st Step) {
		if opt.AfterStep != nil {
			opt.AfterStep(st)
		}
	}
	unlock, err := s.lock()
	if err != nil {
		return Installed{}, err
	}
	defer unlock()
	st, err := s.Load()
	if err != nil && !errors.Is(err, ErrNoState) {
		return Installed{}, err
	}
	if st.Candidate != "" {
		return Installed{}, ErrCandidatePending
	}
	target := st.Active.Other()
	first := !st.Slot(st.Active).Valid
	if first && !st.Slot(target).Valid {
		target = st.Active
	} else if first {
		// Only the inactive slot is valid (a manual repair): keep it and
		// write the empty active one.
		target = st.Active
	}
	if _, err := s.updateLocked(func(st *State) error {
		*st.Slot(target) = Info{}
		return nil
	}); err != nil {
		return Installed{}, err
	}
	step(StepMarked)

	staging := filepath.Join(s.root, "."+string(target)+".new")
	old := filepath.Join(s.root, "."+string(target)+".old")
	for _, p := range []string{staging, old} {
		if err := os.RemoveAll(p); err != nil {
			return Installed{}, fmt.Errorf("slot: clean %s: %w", p, err)
		}
	}
	if err := os.Mkdir(staging, 0o755); err != nil {
		return Installed{}, fmt.Errorf("slot: %w", err)
	}
	step(StepStaging)

	dirs := map[string]bool{staging: true}
	for {
		p, pr, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Installed{}, fmt.Errorf("slot: %w", err)
		}
		dst := filepath.Join(staging, filepath.FromSlash(p.Name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return Installed{}, fmt.Errorf("slot: %w", err)
		}
		for d := filepath.Dir(dst); d != staging && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
		if err := writeSynced(dst, pr, p.FileMode()); err != nil {
			return Installed{}, err
		}
		step(StepPayload)
	}
	m := r.Manifest()
	if err := atomicfile.Write(filepath.Join(staging, "manifest.dsse.json"), r.Envelope(), 0o644); err != nil {
		return Installed{}, err
	}
	for d := range dirs {
		if err := atomicfile.SyncDir(d); err != nil {
			return Installed{}, err
		}
	}
	step(StepStaged)

	dir := s.Dir(target)
	if err := os.Rename(dir, old); err != nil && !os.IsNotExist(err) {
		return Installed{}, fmt.Errorf("slot: %w", err)
	}
	step(StepMovedOld)
	if err := os.Rename(staging, dir); err != nil {
		return Installed{}, fmt.Errorf("slot: %w", err)
	}
	if err := atomicfile.SyncDir(s.root); err != nil {
		return Installed{}, err
	}
	step(StepSwapped)
	if err := os.RemoveAll(old); err != nil {
		return Installed{}, fmt.Errorf("slot: %w", err)
	}

	out := Installed{Slot: target, Version: m.Version, Candidate: !first}
	if _, err := s.updateLocked(func(st *State) error {
		*st.Slot(target) = Info{Valid: true, Version: m.Version, Installed: s.now().UTC()}
		if first {
			st.Active, st.Candidate = target, ""
		} else {
			st.Candidate = target
		}
		st.Attempts = 0
		return nil
	}); err != nil {
		return Installed{}, err
	}
	step(StepCandidate)
	return out, nil
}

// writeSynced copies a payload to dst and fsyncs it. The payload reader fails
// at its end on a sha256 mismatch, so a nil error means verified bytes.
func writeSynced(dst string, r io.Reader, mode os.FileMode) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return fmt.Errorf("slot: %w", err)
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Chmod(mode) // umask may have narrowed it
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("slot: %s: %w", filepath.Base(dst), err)
	}
	return nil
}
