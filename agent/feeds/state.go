package feeds

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"linkguard.dev/linkguard/hal/atomicfile"
)

// persisted is a feed's state on disk: enough to honour dwell timers,
// operation counts and an active order across a restart or crash.
type persisted struct {
	Version  int                         `json:"version"`
	Saved    time.Time                   `json:"saved"`
	Order    *activeOrder                `json:"order,omitempty"`
	Circuits map[string]persistedCircuit `json:"circuits"`
}

type persistedCircuit struct {
	On         bool        `json:"on"`
	Mode       string      `json:"mode"` // auto | on | off (manual)
	LastSwitch time.Time   `json:"last_switch,omitzero"`
	Ops        []time.Time `json:"ops,omitempty"`
	LoadW      float64     `json:"load_w,omitempty"`
}

// activeOrder is an accepted ThrottleOrder with what the controller derived.
type activeOrder struct {
	ThrottleOrder
	Offset   Duration  `json:"offset"`            // randomised start offset
	Start    time.Time `json:"start"`             // From (or acceptance time) + Offset
	Started  bool      `json:"started"`           // the start was reached
	Baseline float64   `json:"baseline_kw"`       // power when the cap started, for the ramp
	Accepted time.Time `json:"accepted,omitzero"` // when throttle.set arrived
}

func statePath(dir, feed string) string { return filepath.Join(dir, "feeds", feed+".json") }

func loadState(dir, feed string) (*persisted, error) {
	b, err := os.ReadFile(statePath(dir, feed))
	if err != nil {
		return nil, err
	}
	var p persisted
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("feeds: %s: state file: %w", feed, err)
	}
	if p.Version != 1 {
		return nil, fmt.Errorf("feeds: %s: state file version %d: %w", feed, p.Version, errors.ErrUnsupported)
	}
	return &p, nil
}

// saveState writes durably and atomically (hal/atomicfile): a power cut
// leaves the old state or the new, and the dwell timers and operation
// counts it holds must survive one.
func saveState(dir, feed string, p *persisted) error {
	path := statePath(dir, feed)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("feeds: %w", err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("feeds: %s: %w", feed, err)
	}
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return fmt.Errorf("feeds: %s: %w", feed, err)
	}
	return nil
}
