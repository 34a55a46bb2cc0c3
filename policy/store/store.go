package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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
	// Trust holds the committee keys the device was provisioned with, its
	// trust anchors, and Threshold how many distinct ones must sign.
	Trust     *dsse.Keyring
	Threshold int
	// TrustFrom, when set, is asked at every verification (Apply, Restore,
	// TrustChanged) for the trust in force now: the agent hands in the
	// anchors together with the committee of the roster in force. Its Keys
	// must hold every anchor (a hook that drops one is ignored, with an
	// error logged: a roster adds signers, it never removes an anchor), and
	// its Threshold counts only above Threshold: it raises the bar, never
	// lowers it. A zero Trust (nil Keys) means the anchors alone.
	TrustFrom func() Trust
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

	mu   sync.Mutex // serialises Apply, Restore, TrustChanged and Subscribe
	subs []func(*Current)
	// refused is the last policy refused for its signatures alone (too few
	// trusted signers), kept for TrustChanged: a policy signed by a
	// committee member a roster adds can arrive before that roster does.
	refused *candidate
}

// candidate is an envelope and where it came from.
type candidate struct {
	envelope []byte
	source   string
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

// Trust is the trust a policy is verified against now: the anchors, or
// what Options.TrustFrom says, never less.
func (s *Store) Trust() Trust {
	anchors := Trust{Keys: s.opts.Trust, Threshold: s.opts.Threshold}
	if s.opts.TrustFrom == nil {
		return anchors
	}
	t := s.opts.TrustFrom()
	if t.Keys == nil {
		return anchors
	}
	have := t.Keys.IDs()
	for _, id := range s.opts.Trust.IDs() {
		if _, found := slices.BinarySearch(have, id); !found {
			s.opts.Logger.Error("policy trust from the roster leaves out a provisioned anchor; verifying against the anchors alone",
				"anchor", s.opts.Trust.Name(id))
			anchors.Threshold = max(anchors.Threshold, t.Threshold)
			return anchors
		}
	}
	t.Threshold = max(t.Threshold, s.opts.Threshold)
	return t
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
	// The same trust as Apply: a policy signed by members the roster in
	// force names is restored once that roster is (the agent restores the
	// roster first).
	v, err := s.Trust().Verify(data, s.opts.Now())
	if err != nil && !(v != nil && errors.Is(err, ErrExpired)) {
		if errors.Is(err, dsse.ErrThreshold) || errors.Is(err, dsse.ErrKeyringTooFew) {
			s.mu.Lock()
			s.refused = &candidate{envelope: data, source: "last-known-good"}
			s.mu.Unlock()
		}
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
	return s.apply(envelope, source, true)
}

// TrustChanged tells the store that the trust TrustFrom gives has changed
// (a roster came into force) and tries again the last policy it refused
// for too few trusted signers, if any. It returns ErrUnchanged when there
// was none; a policy that still fails is not reported again.
func (s *Store) TrustChanged() (*Current, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.refused
	if c == nil {
		return s.cur.Load(), ErrUnchanged
	}
	s.refused = nil
	s.opts.Logger.Info("policy trust changed; trying again the policy refused for its signatures", "source", c.source)
	return s.apply(c.envelope, c.source, false)
}

// apply must be called with s.mu held. report: a refusal is reported
// (OnOutcome, a warning); an applied policy always is.
func (s *Store) apply(envelope []byte, source string, report bool) (*Current, error) {
	prev := s.cur.Load()
	if prev != nil && bytes.Equal(prev.Envelope, envelope) {
		return prev, ErrUnchanged
	}
	out := Outcome{Source: source, Prev: prev.Serial()}
	v, err := s.Trust().Verify(envelope, s.opts.Now())
	if errors.Is(err, dsse.ErrThreshold) || errors.Is(err, dsse.ErrKeyringTooFew) {
		s.refused = &candidate{envelope: envelope, source: source}
	}
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
		if report {
			s.opts.Logger.Warn("policy refused; keeping the enforced one", "source", source, "serial", out.Serial, "enforced", out.Prev, "err", err)
			s.report(out)
		}
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
