// Package atomicfile replaces files whole: a reader, or the agent after a
// crash, sees the old content or the new, never a torn mix. The new content
// is written to a temporary file beside the target and renamed over it.
//
// Write also fsyncs the file before the rename and the directory after it,
// so the new content survives a power cut (field devices lose power): use
// it for state that must not go back or be lost, such as the last-good
// policy and roster, slot state, the feeds' dwell timers and operation
// counts, the commands already seen. Replace skips both fsyncs, for state
// written often whose loss or staleness after a power cut is harmless and
// detected by the reader, such as a delivery cursor (records are sent
// again) or a hint the reader checks against a log (the event chain head).
//
// It imports only the standard library.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data, durably and atomically: after it returns,
// a power cut leaves data in path.
func Write(path string, data []byte, perm os.FileMode) error {
	if err := replace(path, data, perm, true); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// Replace replaces path with data atomically but without fsync: a crash of
// the process leaves the old content or the new, while after a power cut
// the file may hold the old content, the new, or (on some file systems)
// nothing at all. Readers of such a file must treat it as a hint they can
// check or do without.
func Replace(path string, data []byte, perm os.FileMode) error {
	return replace(path, data, perm, false)
}

func replace(path string, data []byte, perm os.FileMode, sync bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("atomicfile: %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			return fail(err)
		}
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("atomicfile: %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("atomicfile: %w", err)
	}
	return nil
}

// SyncDir fsyncs a directory, making a rename or create in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("atomicfile: sync %s: %w", dir, err)
	}
	return nil
}
