package command

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"linkguard.dev/linkguard/hal/atomicfile"
)

// MaxSeen bounds the replay memory; with MaxLifetime it bounds how many
// commands a day a device can take.
const MaxSeen = 10000

// Seen remembers command ids until they expire, on disk, so a restart does
// not reopen the door to a replay.
type Seen struct {
	path string
	mu   sync.Mutex
	ids  map[string]time.Time
}

// OpenSeen loads the replay memory from path ("" keeps it in memory only).
func OpenSeen(path string, now time.Time) (*Seen, error) {
	s := &Seen{path: path, ids: map[string]time.Time{}}
	if path == "" {
		return s, nil
	}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("command: replay memory: %w", err)
	}
	if err := json.Unmarshal(b, &s.ids); err != nil {
		// A damaged memory must not reopen the door: refuse to start
		// taking commands rather than forget.
		return nil, fmt.Errorf("command: replay memory %s: %w", path, err)
	}
	s.prune(now)
	return s, nil
}

func (s *Seen) prune(now time.Time) {
	for id, exp := range s.ids {
		if !now.Before(exp) {
			delete(s.ids, id)
		}
	}
}

// Remember records id until expires, refusing one already seen. The memory
// is written to disk before Remember returns, so a command is remembered
// before it is acted on.
func (s *Seen) Remember(id string, expires, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ids[id]; ok {
		return refuse(ReasonReplay, "command %q was already received", id)
	}
	if len(s.ids) >= MaxSeen {
		s.prune(now)
		if len(s.ids) >= MaxSeen {
			return refuse(ReasonReplay, "replay memory full (%d commands in flight)", MaxSeen)
		}
	}
	s.ids[id] = expires
	if s.path == "" {
		return nil
	}
	b, err := json.Marshal(s.ids)
	if err == nil {
		err = atomicfile.Write(s.path, b, 0o600)
	}
	if err != nil {
		delete(s.ids, id)
		return fmt.Errorf("command: replay memory: %w", err)
	}
	return nil
}

// Len is how many ids are remembered.
func (s *Seen) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}
