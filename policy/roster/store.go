package roster

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"linkguard.dev/linkguard/hal/atomicfile"
	"linkguard.dev/linkguard/policy/dsse"
)

// Current is the roster in force. It is immutable.
type Current struct {
	Roster *Roster
	// Thresholds in force: the roster's, raised to the device's floor.
	Thresholds Thresholds
	Envelope   []byte
	Signers    []string // committee key ids that signed it
	Source     string   // "file:/etc/…", "mqtt", "last-known-good"
	Applied    time.Time

	ring *dsse.Keyring
}

// Serial is the roster's serial, 0 when c is nil.
func (c *Current) Serial() uint64 {
	if c == nil {
		return 0
	}
	return c.Roster.Serial
}

// Keyring trusts every operator key of the roster, each labelled with its
// operator's id. It is shared: callers must not add keys to it.
func (c *Current) Keyring() *dsse.Keyring { return c.ring }

// Outcome reports one attempt to change the roster in force.
type Outcome struct {
	Source  string
	Serial  uint64 // of the candidate, when it could be read
	Prev    uint64 // serial in force before the attempt
	Applied bool
	Err     error // why it was refused; nil when applied
}

// Options configure a Store.
type Options struct {
	// Anchors are the committee keys the device was provisioned with: the
	// only keys that can sign a roster.
	Anchors *dsse.Keyring
	// Floor comes from the device's configuration: no roster lowers a
	// threshold below it. Floor.Committee is also the least number of
	// anchors that must sign a roster.
	Floor    Thresholds
	StateDir string // the last-known-good roster is kept in StateDir/roster/
	Logger   *slog.Logger
	Now      func() time.Time // nil: time.Now
	// OnOutcome hears of every applied or refused roster, except a
	// resubmission of the one in force.
	OnOutcome func(Outcome)
}

// Store holds the roster in force.
type Store struct {
	opts Options
	cur  atomic.Pointer[Current]

	mu   sync.Mutex // serialises Apply, Restore and Subscribe
	subs []func(*Current)
}

// New returns an empty store. Call Restore to load the last-known-good roster.
func New(opts Options) (*Store, error) {
	if opts.Anchors == nil || opts.Anchors.Len() == 0 {
		return nil, fmt.Errorf("roster: %w", dsse.ErrEmptyKeyring)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Store{opts: opts}, nil
}

// Current returns the roster in force, or nil when none is loaded.
func (s *Store) Current() *Current { return s.cur.Load() }

// Subscribe calls fn with the current roster (if any) and after every swap.
// fn runs on the goroutine that applied the roster and must not block.
func (s *Store) Subscribe(fn func(*Current)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs = append(s.subs, fn)
	if c := s.cur.Load(); c != nil {
		fn(c)
	}
}

// committee is how many anchors must sign the next roster: the floor, and
// the committee threshold of the roster in force, so a roster that raised
// the threshold cannot be undone by fewer members than it asked for.
func (s *Store) committee(prev *Current) int {
	n := max(s.opts.Floor.Committee, 1)
	if prev != nil {
		n = max(n, prev.Thresholds.Committee)
	}
	return n
}

func (s *Store) lkgPath() string {
	if s.opts.StateDir == "" {
		return ""
	}
	return filepath.Join(s.opts.StateDir, "roster", "last-good.json")
}

// Restore loads the last-known-good roster from the state directory. An
// expired one is restored too, so that its serial still bars a rollback,
// but logged loudly: command verifiers refuse commands while the roster in
// force has expired. It returns os.ErrNotExist when there is none.
func (s *Store) Restore() (*Current, error) {
	p := s.lkgPath()
	if p == "" {
		return nil, fmt.Errorf("roster: no state directory: %w", os.ErrNotExist)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("roster: last-known-good: %w", err)
	}
	v, err := Verify(data, s.opts.Anchors, s.committee(nil), s.opts.Now())
	if err != nil && !(v != nil && errors.Is(err, ErrExpired)) {
		return nil, fmt.Errorf("roster: last-known-good %s no longer verifies: %w", p, err)
	}
	if err != nil {
		s.opts.Logger.Error("the last-known-good roster has EXPIRED: commands are refused until a newer one arrives",
			"serial", v.Roster.Serial, "expired", v.Roster.Expires)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.swap(v, "last-known-good"), nil
}

// Apply verifies a signed roster and, when it is newer than the one in
// force, persists it and swaps it in. On any error the roster in force is
// unchanged.
func (s *Store) Apply(envelope []byte, source string) (*Current, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.cur.Load()
	if prev != nil && bytes.Equal(prev.Envelope, envelope) {
		return prev, ErrUnchanged
	}
	out := Outcome{Source: source, Prev: prev.Serial()}
	v, err := Verify(envelope, s.opts.Anchors, s.committee(prev), s.opts.Now())
	if v != nil {
		out.Serial = v.Roster.Serial
	}
	if err == nil && prev != nil && v.Roster.Serial <= prev.Serial() {
		if v.Roster.Serial == prev.Serial() && samePayload(prev.Envelope, v.Envelope) {
			return prev, ErrUnchanged
		}
		err = fmt.Errorf("%w: serial %d, in force %d", ErrReplay, v.Roster.Serial, prev.Serial())
	}
	if err == nil {
		err = s.persist(envelope)
	}
	if err != nil {
		out.Err = fmt.Errorf("roster: %s: %w", source, err)
		s.opts.Logger.Warn("roster refused; keeping the one in force", "source", source, "serial", out.Serial, "in_force", out.Prev, "err", err)
		s.report(out)
		return prev, out.Err
	}
	cur := s.swap(v, source)
	out.Applied = true
	s.opts.Logger.Info("roster applied", "source", source, "serial", out.Serial, "prev", out.Prev,
		"operators", len(v.Roster.Operators), "expires", v.Roster.Expires)
	s.report(out)
	return cur, nil
}

// persist saves the last-known-good roster before it is swapped in: one
// that could not be saved would be lost at the next restart, and with it
// the serial that bars a rollback.
func (s *Store) persist(envelope []byte) error {
	p := s.lkgPath()
	if p == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("saving last-known-good: %w", err)
	}
	if err := atomicfile.Write(p, envelope, 0o600); err != nil {
		return fmt.Errorf("saving last-known-good: %w", err)
	}
	return nil
}

// samePayload treats a re-signed copy of the roster in force (same payload,
// other signatures) as no change rather than a replay.
func samePayload(a, b []byte) bool {
	ea, err1 := dsse.ParseLimited(a, Limits)
	eb, err2 := dsse.ParseLimited(b, Limits)
	return err1 == nil && err2 == nil && ea.Payload == eb.Payload
}

// swap must be called with s.mu held.
func (s *Store) swap(v *Verified, source string) *Current {
	c := &Current{Roster: v.Roster, Thresholds: v.Roster.Thresholds.AtLeast(s.opts.Floor), Envelope: v.Envelope,
		Signers: v.Signers, Source: source, Applied: s.opts.Now(), ring: v.Roster.Keyring()}
	s.cur.Store(c)
	for _, fn := range s.subs {
		fn(c)
	}
	return c
}

func (s *Store) report(o Outcome) {
	if s.opts.OnOutcome != nil {
		s.opts.OnOutcome(o)
	}
}
