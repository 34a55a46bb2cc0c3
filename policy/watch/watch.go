// Package watch hot-reloads the policy file: it watches the file's
// directory with fsnotify (editors and `mv` replace files, so watching the
// file itself loses it after the first rename), debounces bursts of events,
// and hands each new content to the policy store, which keeps the
// last-known-good policy whenever the file is bad, old or missing.
//
// It imports fsnotify and policy/store; nothing of MQTT or the agent.
package watch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"linkguard.dev/linkguard/policy/store"
)

// Applier is what the watcher feeds: the policy store.
type Applier interface {
	Apply(envelope []byte, source string) (*store.Current, error)
}

var _ Applier = (*store.Store)(nil)

// Watcher reloads one policy file.
type Watcher struct {
	Path     string
	Store    Applier
	Logger   *slog.Logger
	Debounce time.Duration // default 200ms
	// Poll re-reads the file this often as a safety net for lost events
	// (some overlay and network filesystems drop them); 0: every minute.
	Poll time.Duration
	// OnMissing hears when the file is gone or unreadable; the store keeps
	// enforcing what it has.
	OnMissing func(path string, err error)
	// What names the file in logs ("policy" when empty; "roster" for the
	// roster the same watcher reloads).
	What string

	last    []byte // content last handed to the store
	missing bool   // the file was missing or unreadable at the last look
}

// Run watches until ctx ends. It loads the file once at start.
func (w *Watcher) Run(ctx context.Context) error {
	if w.Logger == nil {
		w.Logger = slog.New(slog.DiscardHandler)
	}
	if w.Debounce <= 0 {
		w.Debounce = 200 * time.Millisecond
	}
	if w.Poll <= 0 {
		w.Poll = time.Minute
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer fw.Close()
	dir, name := filepath.Dir(w.Path), filepath.Base(w.Path)
	if err := fw.Add(dir); err != nil {
		return fmt.Errorf("watch: %s: %w", dir, err)
	}
	w.reload()

	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	poll := time.NewTicker(w.Poll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("watch: fsnotify closed its event channel")
			}
			if filepath.Base(ev.Name) == name {
				debounce.Reset(w.Debounce)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("watch: fsnotify closed its error channel")
			}
			// An overflow means events were lost: re-read to be sure.
			w.Logger.Warn("policy watch error; re-reading the file", "err", err)
			debounce.Reset(w.Debounce)
		case <-debounce.C:
			w.reload()
		case <-poll.C:
			w.reload()
		}
	}
}

func (w *Watcher) reload() {
	data, err := os.ReadFile(w.Path)
	if err != nil {
		if !w.missing {
			w.missing = true
			what := w.What
			if what == "" {
				what = "policy"
			}
			w.Logger.Warn(what+" file unreadable; keeping the one in force", "path", w.Path, "err", err)
			if w.OnMissing != nil {
				w.OnMissing(w.Path, err)
			}
		}
		w.last = nil
		return
	}
	w.missing = false
	if w.last != nil && bytes.Equal(data, w.last) {
		return
	}
	w.last = data
	// The store logs, reports and keeps the last good policy on error.
	_, _ = w.Store.Apply(data, "file:"+w.Path)
}
