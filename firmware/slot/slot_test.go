package slot_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/firmware/bundle"
	"linkguard.dev/linkguard/firmware/bundle/bundletest"
	"linkguard.dev/linkguard/firmware/slot"
)

func install(t *testing.T, s *slot.Store, rel bundletest.Release, version string) slot.Installed {
	t.Helper()
	b := rel.Build(t, bundletest.Spec{Version: version, Extra: map[string]string{"config/policy.yaml": "v: " + version + "\n"}})
	st, _ := s.Load()
	pol := bundle.Policy{Keys: rel.Ring, Arch: "amd64", Installed: st.Installed()}
	r, err := bundle.NewReader(bytes.NewReader(b), pol)
	if err != nil {
		t.Fatal(err)
	}
	in, err := s.Install(r, slot.InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestInstallCommitRollback(t *testing.T) {
	rel := bundletest.NewRelease(t)
	s, err := slot.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(); !errors.Is(err, slot.ErrNoState) {
		t.Fatalf("fresh Load: %v", err)
	}
	if _, err := s.PrepareBoot(3); !errors.Is(err, slot.ErrNoBootable) {
		t.Fatalf("boot of empty root: %v", err)
	}
	in := install(t, s, rel, "1.0.0")
	if in.Slot != slot.A || in.Candidate {
		t.Fatalf("first install = %+v, want active A", in)
	}
	data, err := os.ReadFile(filepath.Join(s.Dir(slot.A), "config/policy.yaml"))
	if err != nil || string(data) != "v: 1.0.0\n" {
		t.Fatalf("payload: %q %v", data, err)
	}
	if fi, err := os.Stat(s.Binary(slot.A)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("binary mode: %v %v", fi, err)
	}
	in = install(t, s, rel, "1.1.0")
	if in.Slot != slot.B || !in.Candidate {
		t.Fatalf("second install = %+v", in)
	}
	// A second install while the candidate is on trial is refused.
	b := rel.Build(t, bundletest.Spec{Version: "1.2.0"})
	r, _ := bundle.NewReader(bytes.NewReader(b), bundle.Policy{Keys: rel.Ring, Arch: "amd64"})
	if _, err := s.Install(r, slot.InstallOptions{}); !errors.Is(err, slot.ErrCandidatePending) {
		t.Fatalf("install during trial: %v", err)
	}
	boot, err := s.PrepareBoot(2)
	if err != nil || boot.Slot != slot.B || !boot.Trial || boot.Attempt != 1 {
		t.Fatalf("boot 1 = %+v, %v", boot, err)
	}
	if _, err := s.Commit(slot.A); !errors.Is(err, slot.ErrNotCandidate) {
		t.Fatalf("commit of non-candidate: %v", err)
	}
	boot, _ = s.PrepareBoot(2)
	if boot.Attempt != 2 {
		t.Fatalf("boot 2 = %+v", boot)
	}
	boot, _ = s.PrepareBoot(2)
	if boot.Slot != slot.A || boot.Trial || boot.RolledBk == nil || boot.RolledBk.FromVersion != "1.1.0" {
		t.Fatalf("boot 3 = %+v, want rollback to A", boot)
	}
	rb, err := slot.PendingRollback(s.Root())
	if err != nil || rb == nil || rb.To != slot.A || rb.Attempts != 2 {
		t.Fatalf("pending rollback %+v %v", rb, err)
	}
	if err := s.AckRollback(*rb); err != nil {
		t.Fatal(err)
	}
	if rb, _ := slot.PendingRollback(s.Root()); rb != nil {
		t.Fatalf("rollback not cleared: %+v", rb)
	}

	// Install again, commit, and roll back by hand.
	in = install(t, s, rel, "1.2.0")
	if _, err := s.Commit(in.Slot); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(in.Slot); err != nil {
		t.Fatalf("second commit not idempotent: %v", err)
	}
	st, _ := s.Load()
	if st.Active != slot.B || st.Installed() != "1.2.0" {
		t.Fatalf("after commit %+v", st)
	}
	st, err = s.Rollback("operator")
	if err != nil || st.Active != slot.A || st.Installed() != "1.0.0" || st.Rollback.Reason != "operator" {
		t.Fatalf("manual rollback %+v %v", st, err)
	}
}

func TestTamperedDuringInstall(t *testing.T) {
	rel := bundletest.NewRelease(t)
	s, _ := slot.New(t.TempDir())
	install(t, s, rel, "1.0.0")
	before, _ := os.ReadFile(filepath.Join(s.Root(), slot.StateFile))
	b := rel.Build(t, bundletest.Spec{Version: "1.1.0", Binary: "#!/bin/sh\necho new\n"})
	r, err := bundle.NewReader(bytes.NewReader(b), bundle.Policy{Keys: rel.Ring, Arch: "amd64", Installed: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	// The file changes between verification and install: the last payload
	// byte flips.
	b[len(b)-2] ^= 1
	if _, err := s.Install(r, slot.InstallOptions{}); !errors.Is(err, bundle.ErrDigest) {
		t.Fatalf("install of changed bundle: %v", err)
	}
	st, _ := s.Load()
	if st.Candidate != "" || st.Active != slot.A || !st.A.Valid || st.B.Valid {
		t.Fatalf("state after failed install: %+v (before %s)", st, before)
	}
	boot, err := s.PrepareBoot(3)
	if err != nil || boot.Slot != slot.A {
		t.Fatalf("boot after failed install %+v %v", boot, err)
	}
}

func TestCorruptState(t *testing.T) {
	s, _ := slot.New(t.TempDir())
	for _, c := range []string{"{", `{"active":"c"}`, `{"active":"a","candidate":"a"}`, `{"active":"a","x":1}`} {
		os.WriteFile(filepath.Join(s.Root(), slot.StateFile), []byte(c), 0o644)
		if _, err := s.Load(); err == nil {
			t.Errorf("Load accepted %s", c)
		}
	}
}

func TestConfirm(t *testing.T) {
	rel := bundletest.NewRelease(t)
	s, _ := slot.New(t.TempDir())
	install(t, s, rel, "1.0.0")
	in := install(t, s, rel, "1.1.0")
	if _, err := s.PrepareBoot(3); err != nil {
		t.Fatal(err)
	}
	healthy := make(chan struct{})
	checks := []slot.Check{
		{Name: "policy", Healthy: func(context.Context) error { return nil }},
		{Name: "broker", Healthy: func(context.Context) error {
			select {
			case <-healthy:
				return nil
			default:
				return io.ErrUnexpectedEOF
			}
		}},
	}
	self := slot.Self{Root: s.Root(), Slot: in.Slot, Trial: true}
	done := make(chan error, 1)
	go func() {
		done <- slot.Confirm(context.Background(), self, 5*time.Millisecond, slog.New(slog.DiscardHandler), checks...)
	}()
	time.Sleep(30 * time.Millisecond)
	if st, _ := s.Load(); st.Candidate != in.Slot {
		t.Fatalf("committed while broker check failing: %+v", st)
	}
	close(healthy)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Load(); st.Candidate != "" || st.Active != in.Slot {
		t.Fatalf("not committed: %+v", st)
	}
	// Not on trial: returns at once.
	if err := slot.Confirm(context.Background(), slot.Self{Root: s.Root(), Slot: in.Slot}, time.Hour, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
}

func TestBootRepairs(t *testing.T) {
	rel := bundletest.NewRelease(t)
	s, _ := slot.New(t.TempDir())
	install(t, s, rel, "1.0.0")
	in := install(t, s, rel, "1.1.0")
	// A candidate whose binary vanished is rolled back, not started.
	os.Remove(s.Binary(in.Slot))
	b, err := s.PrepareBoot(3)
	if err != nil || b.Slot != slot.A || b.RolledBk == nil || b.RolledBk.Reason != "candidate not bootable" {
		t.Fatalf("boot = %+v, %v", b, err)
	}
	// An unreadable state file boots the older slot and says so.
	in = install(t, s, rel, "1.2.0")
	s.Commit(in.Slot)
	for n, age := range map[slot.Name]time.Duration{slot.A: time.Minute, slot.B: time.Hour} {
		old := time.Now().Add(-age)
		os.Chtimes(filepath.Join(s.Dir(n), "manifest.dsse.json"), old, old)
	}
	os.WriteFile(filepath.Join(s.Root(), slot.StateFile), []byte(`{"active":`), 0o644)
	b, err = s.PrepareBoot(3)
	if err != nil || b.Slot != slot.B || b.Trial || b.RolledBk != nil {
		t.Fatalf("boot after corruption = %+v, %v", b, err)
	}
	if rb, _ := slot.PendingRollback(s.Root()); rb == nil || !strings.Contains(rb.Reason, "unreadable") {
		t.Fatalf("no marker for the repair: %+v", rb)
	}
	if _, err := os.Stat(filepath.Join(s.Root(), slot.StateFile+".corrupt")); err != nil {
		t.Fatal("corrupt state not kept")
	}
}
