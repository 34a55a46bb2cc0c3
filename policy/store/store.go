package store

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
	"linkguard.dev/linkguard/policy/match"
)

// Current is the policy being enforced. It is immutable.
type Current struct {
	Matcher  *match.Matcher
	Envelope []byte
	Signers  []string
	Source   string // where it came from: "file:/etc/…", "mqtt", "last-known-good"
	Applied  time.Time
}

// Serial is the current policy's serial, 0 when c is nil.
func (c *Current) Serial() uint64 {
	if c == nil {
		return 0
	}
	return c.Matcher.Policy().Serial
}

// Outcome reports one attempt to change the enforced policy.
type Outcome struct {
	Source  string
	Serial  uint64 // of the candidate, when it could be read
	Prev    uint64 // serial enforced before the attempt
	Applied bool
	Err     error // why it was refused; nil when applied
}

// Options configure a Store.
type Options struct {
	Trust     *dsse.Keyring
	Threshold int
	StateDir  string // the last-known-good policy is kept in StateDir/policy/
	Logger    *slog.Logger
	Now       func() time.Time // nil: time.Now
	// OnOutcome hears of every applied or refused policy, except a
	// resubmission of the policy already enforced.
	OnOutcome func(Outcome)
}

// Store holds the enforced policy.
type Store struct {
	opts Options
	cur  atomic.Pointer[Current]

	mu   sync.Mutex // serialises Apply and Subscribe
	subs []func(*Current)
}

// New returns an empty store. Call Restore to load the last-known-good policy.
func New(opts Options) (*Store, error) {
	if opts.Trust == nil || opts.Trust.Len() == 0 {
		return nil, fmt.Errorf("store: %w", dsse.ErrEmptyKeyring)
	}
	if opts.Threshold < 1 {
		opts.Threshold = 1
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Store{opts: opts}, nil
}

// Current returns the enforced policy, or nil when none is loaded.
func (s *Store) Current() *Current { return s.cur.Load() }

// Matcher returns the enforced matcher, or nil. Safe on the packet path.
func (s *Store) Matcher() *match.Matcher {
	if c := s.cur.Load(); c != nil {
		return c.Matcher
	}
	return nil
}

// Subscribe calls fn with the current policy (if any) and after every swap.
// fn runs on the goroutine that applied the policy and must not block.
func (s *Store) Subscribe(fn func(*Current)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs = append(s.subs, fn)
	if c := s.cur.Load(); c != nil {
		fn(c)
	}
}

func (s *Store) lkgPath() string {
	if s.opts.StateDir == "" {
		return ""
	}
	return filepath.Join(s.opts.StateDir, "policy", "last-good.json")
}

// Restore loads the last-known-good policy from the state directory. An
// expired one is still enforced — cutting every link because a committee was
// late is worse — but logged loudly. It returns os.ErrNotExist when there is
// none.
func (s *Store) Restore() (*Current, error) {
	p := s.lkgPath()
	if p == "" {
		return nil, fmt.Errorf("store: no state directory: %w", os.ErrNotExist)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("store: last-known-good: %w", err)
	}
	v, err := Verify(data, s.opts.Trust, s.opts.Threshold, s.opts.Now())
	if err != nil && !(v != nil && errors.Is(err, ErrExpired)) {
		return nil, fmt.Errorf("store: last-known-good %s no longer verifies: %w", p, err)
	}
	if err != nil {
		s.opts.Logger.Error("enforcing an EXPIRED last-known-good policy until a newer one arrives",
			"serial", v.Policy.Serial, "expired", v.Policy.Expires)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.swap(v, "last-known-good"), nil
}

// Apply verifies a signed policy and, when it is newer than the enforced
// one, compiles it, swaps it in and persists it. On any error the enforced
// policy is unchanged.
func (s *Store) Apply(envelope []byte, source string) (*Current, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.cur.Load()
	if prev != nil && bytes.Equal(prev.Envelope, envelope) {
		return prev, ErrUnchanged
	}
	out := Outcome{Source: source, Prev: prev.Serial()}
	v, err := Verify(envelope, s.opts.Trust, s.opts.Threshold, s.opts.Now())
	if v != nil {
		out.Serial = v.Policy.Serial
	}
	if err == nil && prev != nil && v.Policy.Serial <= prev.Serial() {
		if v.Policy.Serial == prev.Serial() && sameSerialSamePayload(prev, v) {
			return prev, ErrUnchanged
		}
		err = fmt.Errorf("%w: serial %d, enforcing %d", ErrReplay, v.Policy.Serial, prev.Serial())
	}
	if err != nil {
		err = fmt.Errorf("store: %s: %w", source, err)
		out.Err = err
		s.opts.Logger.Warn("policy refused; keeping the enforced one", "source", source, "serial", out.Serial, "enforced", out.Prev, "err", err)
		s.report(out)
		return prev, err
	}
	if p := s.lkgPath(); p != "" {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return prev, fmt.Errorf("store: %w", err)
		}
		// Persist before swapping: a policy we could not save would be
		// lost at the next restart, silently reverting enforcement.
		if err := atomicfile.Write(p, envelope, 0o600); err != nil {
			out.Err = fmt.Errorf("store: saving last-known-good: %w", err)
			s.report(out)
			return prev, out.Err
		}
	}
	cur := s.swap(v, source)
	out.Applied = true
	s.opts.Logger.Info("policy applied", "source", source, "serial", out.Serial, "prev", out.Prev,
		"approvals", len(v.Policy.Approvals), "prefixes", cur.Matcher.Prefixes(), "expires", v.Policy.Expires)
	s.report(out)
	return cur, nil
}

// sameSerialSamePayload treats a re-signed copy of the enforced policy (same
// serial, same payload, other signatures) as no change rather than a replay.
func sameSerialSamePayload(prev *Current, v *Verified) bool {
	pe, err1 := dsse.Parse(prev.Envelope)
	ve, err2 := dsse.Parse(v.Envelope)
	return err1 == nil && err2 == nil && pe.Payload == ve.Payload
}

// swap must be called with s.mu held.
func (s *Store) swap(v *Verified, source string) *Current {
	c := &Current{Matcher: match.Compile(v.Policy), Envelope: v.Envelope, Signers: v.Signers, Source: source, Applied: s.opts.Now()}
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
