package feeds

import (
	"fmt"
	"os"
	"time"
)

// Override is the local technician override file of a feed:
//
//	{"reason": "line work on c2", "hold": false, "circuits": {"c2": "off"},
//	 "allow_remote": ["hospital"]}
//
// Listed circuits are driven to the given state (within the relay's dwell
// rules) and refuse remote commands; hold freezes the automatic control of
// the whole feed. Deleting the file hands control back.
//
// AllowRemote is the local physical act the protected-circuit rule asks
// for: while the file names a protected circuit there, a relay.set of it
// needs one grid signature instead of the protected threshold, the
// technician at the device being the second party. Only root on the device
// can write the file.
type Override struct {
	Reason      string            `json:"reason"`
	Hold        bool              `json:"hold,omitempty"`
	Circuits    map[string]string `json:"circuits,omitempty"`
	AllowRemote []string          `json:"allow_remote,omitempty"`
}

// ParseOverride decodes and checks an override file against the feed's circuits.
func ParseOverride(b []byte, circuits func(string) bool) (*Override, error) {
	var o Override
	if err := decodeStrict(b, &o); err != nil {
		return nil, fmt.Errorf("feeds: override file: %w", err)
	}
	for id, st := range o.Circuits {
		if !circuits(id) {
			return nil, fmt.Errorf("feeds: override file: circuit %q: %w", id, ErrUnknownCircuit)
		}
		if st != StateOn && st != StateOff {
			return nil, fmt.Errorf("feeds: override file: circuit %q: state %q must be on or off: %w", id, st, ErrBadOrder)
		}
	}
	for _, id := range o.AllowRemote {
		if !circuits(id) {
			return nil, fmt.Errorf("feeds: override file: allow_remote: circuit %q: %w", id, ErrUnknownCircuit)
		}
		if _, pinned := o.Circuits[id]; pinned {
			return nil, fmt.Errorf("feeds: override file: circuit %q is both pinned locally and allowed to remote commands: %w", id, ErrBadOrder)
		}
	}
	return &o, nil
}

// overrideWatch notices changes of the override file by its size and mtime.
type overrideWatch struct {
	path    string
	mod     time.Time
	size    int64
	present bool
}

// changed stats the file and reports whether it appeared, vanished or changed.
func (w *overrideWatch) changed() (present, changed bool) {
	if w.path == "" {
		return false, false
	}
	fi, err := os.Stat(w.path)
	if err != nil {
		was := w.present
		w.present = false
		return false, was
	}
	if w.present && fi.ModTime().Equal(w.mod) && fi.Size() == w.size {
		return true, false
	}
	w.present, w.mod, w.size = true, fi.ModTime(), fi.Size()
	return true, true
}
