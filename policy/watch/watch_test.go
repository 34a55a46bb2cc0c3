package watch_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"linkguard.dev/linkguard/policy/policytest"
	"linkguard.dev/linkguard/policy/store"
	"linkguard.dev/linkguard/policy/watch"
)

type recorder struct {
	mu  sync.Mutex
	out []store.Outcome
	ch  chan store.Outcome
}

func (r *recorder) add(o store.Outcome) {
	r.mu.Lock()
	r.out = append(r.out, o)
	r.mu.Unlock()
	r.ch <- o
}

func (r *recorder) next(t *testing.T) store.Outcome {
	t.Helper()
	select {
	case o := <-r.ch:
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("no policy outcome within 10s")
		return store.Outcome{}
	}
}

func signed(t *testing.T, serial uint64, expires time.Time, keys ...ed25519.PrivateKey) []byte {
	p := policytest.Synthetic(10, serial)
	p.Serial = serial
	p.Issued = time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	p.Expires = expires.UTC().Truncate(time.Second)
	return policytest.Sign(t, policytest.YAML(p), keys...)
}

// TestHotReload drives the watcher with real files and checks that each
// change gets the right outcome and that a bad one never replaces the
// enforced policy.
func TestHotReload(t *testing.T) {
	key, stranger := policytest.Key(t), policytest.Key(t)
	dir, state := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "policy.signed.json")
	rec := &recorder{ch: make(chan store.Outcome, 16)}
	missing := make(chan error, 4)
	st, err := store.New(store.Options{Trust: policytest.Keyring(key), StateDir: state, OnOutcome: rec.add})
	if err != nil {
		t.Fatal(err)
	}
	w := &watch.Watcher{Path: path, Store: st, Debounce: 50 * time.Millisecond, OnMissing: func(_ string, err error) { missing <- err }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	select {
	case <-missing:
	case <-time.After(10 * time.Second):
		t.Fatal("a missing file at start was not reported")
	}
	year := time.Now().AddDate(1, 0, 0)

	write := func(data []byte) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	renameOver := func(data []byte) {
		t.Helper()
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	expectApplied := func(serial uint64) {
		t.Helper()
		o := rec.next(t)
		if !o.Applied || o.Serial != serial || st.Current().Serial() != serial {
			t.Fatalf("outcome %+v; enforcing %d, want %d applied", o, st.Current().Serial(), serial)
		}
	}
	expectRefused := func(want error, enforced uint64) {
		t.Helper()
		o := rec.next(t)
		if o.Applied || o.Err == nil || (want != nil && !errors.Is(o.Err, want)) {
			t.Fatalf("outcome %+v, want refusal with %v", o, want)
		}
		if got := st.Current().Serial(); got != enforced {
			t.Fatalf("enforcing serial %d after a refused policy, want %d", got, enforced)
		}
	}

	write(signed(t, 10, year, key))
	expectApplied(10)
	renameOver(signed(t, 11, year, key))
	expectApplied(11)
	renameOver(signed(t, 9, year, key)) // replayed older serial
	expectRefused(store.ErrReplay, 11)
	write([]byte("\x00\x01garbage"))
	expectRefused(nil, 11)
	renameOver(signed(t, 12, time.Now().Add(-time.Minute), key)) // expired
	expectRefused(store.ErrExpired, 11)
	renameOver(signed(t, 13, year, stranger)) // untrusted key
	expectRefused(nil, 11)
	// Truncate in place, then rewrite in place.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	expectRefused(nil, 11)
	write(signed(t, 14, year, key))
	expectApplied(14)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	select {
	case <-missing:
	case <-time.After(10 * time.Second):
		t.Fatal("deletion not reported")
	}
	if st.Current().Serial() != 14 {
		t.Fatal("deleting the file disturbed the enforced policy")
	}
	write(signed(t, 15, year, key)) // the file reappears
	expectApplied(15)

	// A restart enforces the last good policy even with garbage in the file.
	write([]byte("garbage"))
	expectRefused(nil, 15)
	st2, err := store.New(store.Options{Trust: policytest.Keyring(key), StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := st2.Restore(); err != nil || c.Serial() != 15 {
		t.Fatalf("Restore = %v, %v; want serial 15", c.Serial(), err)
	}
}
