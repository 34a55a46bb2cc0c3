package slot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"linkguard.dev/linkguard/hal/atomicfile"
)

// Name names a slot.
type Name string

// The two slots.
const (
	A Name = "a"
	B Name = "b"
)

// Other returns the other slot.
func (n Name) Other() Name {
	if n == A {
		return B
	}
	return A
}

func (n Name) valid() bool { return n == A || n == B }

// Environment the launcher sets for the binary it starts, so the binary knows
// which slot it runs from and whether it is on trial.
const (
	EnvRoot  = "LINKGUARD_SLOT_ROOT"
	EnvSlot  = "LINKGUARD_SLOT"
	EnvTrial = "LINKGUARD_SLOT_TRIAL" // "1" while the slot is an uncommitted candidate
)

// StateFile is the state file's name under the root.
const StateFile = "state.json"

// Errors callers act on.
var (
	ErrNoState          = errors.New("slot: no state file")
	ErrCandidatePending = errors.New("slot: a candidate is on trial; commit or roll it back first")
	ErrNotCandidate     = errors.New("slot: not the candidate")
	ErrNoBootable       = errors.New("slot: no bootable slot")
	ErrNothingToRollTo  = errors.New("slot: no other valid slot to roll back to")
)

// Info describes what a slot holds.
type Info struct {
	Valid     bool      `json:"valid"` // completely written and synced
	Version   string    `json:"version,omitempty"`
	Installed time.Time `json:"installed,omitzero"`
}

// Rollback records a rollback until the agent has reported it.
type Rollback struct {
	From        Name      `json:"from"`
	FromVersion string    `json:"from_version"`
	To          Name      `json:"to"`
	ToVersion   string    `json:"to_version"`
	Reason      string    `json:"reason"`
	Attempts    int       `json:"attempts"`
	At          time.Time `json:"at"`
}

// State is the content of the state file.
type State struct {
	Active    Name      `json:"active"`
	Candidate Name      `json:"candidate,omitempty"`
	Attempts  int       `json:"attempts"` // boot attempts of the candidate so far
	A         Info      `json:"a"`
	B         Info      `json:"b"`
	Rollback  *Rollback `json:"rollback,omitempty"`
}

// Slot returns a pointer to the info of slot n.
func (s *State) Slot(n Name) *Info {
	if n == B {
		return &s.B
	}
	return &s.A
}

// Installed returns the version a new bundle is compared against: the
// committed active slot's.
func (s *State) Installed() string {
	if in := s.Slot(s.Active); in.Valid {
		return in.Version
	}
	return ""
}

func (s *State) check() error {
	if !s.Active.valid() {
		return fmt.Errorf("slot: state: active %q", s.Active)
	}
	if s.Candidate != "" && (!s.Candidate.valid() || s.Candidate == s.Active) {
		return fmt.Errorf("slot: state: candidate %q with active %q", s.Candidate, s.Active)
	}
	if s.Attempts < 0 {
		return fmt.Errorf("slot: state: attempts %d", s.Attempts)
	}
	return nil
}

// Store is a slot root: root/a, root/b and root/state.json.
type Store struct {
	root string
	now  func() time.Time
}

// New returns the store under root, creating root if needed.
func New(root string) (*Store, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("slot: %w", err)
	}
	return &Store{root: root, now: time.Now}, nil
}

// Root returns the store's directory.
func (s *Store) Root() string { return s.root }

// Dir returns slot n's directory.
func (s *Store) Dir(n Name) string { return filepath.Join(s.root, string(n)) }

// Binary returns the executable of slot n.
func (s *Store) Binary(n Name) string { return filepath.Join(s.Dir(n), "linkguard") }

// Load reads the state. A missing state file yields the empty state (slot A
// active, nothing valid) and ErrNoState.
func (s *Store) Load() (State, error) {
	b, err := os.ReadFile(filepath.Join(s.root, StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return State{Active: A}, ErrNoState
	}
	if err != nil {
		return State{}, fmt.Errorf("slot: %w", err)
	}
	var st State
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return State{}, fmt.Errorf("slot: state file: %w", err)
	}
	if err := st.check(); err != nil {
		return State{}, err
	}
	return st, nil
}

// Update changes the state under an exclusive lock: f sees the current state
// and edits it; if f returns nil the result is written atomically.
func (s *Store) Update(f func(*State) error) (State, error) {
	unlock, err := s.lock()
	if err != nil {
		return State{}, err
	}
	defer unlock()
	return s.updateLocked(f)
}

func (s *Store) updateLocked(f func(*State) error) (State, error) {
	st, err := s.Load()
	if err != nil && !errors.Is(err, ErrNoState) {
		return State{}, err
	}
	if err := f(&st); err != nil {
		return State{}, err
	}
	if err := st.check(); err != nil {
		return State{}, err
	}
	b, err := json.MarshalIndent(&st, "", "  ")
	if err != nil {
		return State{}, fmt.Errorf("slot: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(s.root, StateFile), append(b, '\n'), 0o644); err != nil {
		return State{}, err
	}
	return st, nil
}

// lock takes the store's flock; install, commit, the launcher and rollback
// serialise on it.
func (s *Store) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.root, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("slot: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("slot: lock: %w", err)
	}
	return func() { f.Close() }, nil
}
