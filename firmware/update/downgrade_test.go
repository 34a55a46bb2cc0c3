package update_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/firmware/bundle"
	"linkguard.dev/linkguard/firmware/bundle/bundletest"
	"linkguard.dev/linkguard/firmware/slot"
	"linkguard.dev/linkguard/firmware/update"
)

// TestThresholdAndTicket: with two release keys required, a bundle or a
// ticket with one signature is refused; a downgrade installs only with a
// ticket for this device and that version, unexpired, over either path.
func TestThresholdAndTicket(t *testing.T) {
	a, b, c := bundletest.NewRelease(t), bundletest.NewRelease(t), bundletest.NewRelease(t)
	s, _ := slot.New(t.TempDir())
	in := &update.Installer{Slots: s, Keys: bundletest.Ring(a, b, c), Threshold: 2, Arch: "amd64", Device: "rtr-1", Site: "s1"}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	two := func(v string) []byte { return b.Cosign(t, a.Build(t, bundletest.Spec{Version: v})) }

	if _, err := in.Install(write("one.lgb", a.Build(t, bundletest.Spec{Version: "1.0.0"})), update.Options{}); !errors.Is(err, bundle.ErrSignature) {
		t.Fatalf("one release signature of two: %v", err)
	}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		if _, err := in.Install(write(v+".lgb", two(v)), update.Options{}); err != nil {
			t.Fatalf("install %s with two signatures: %v", v, err)
		}
	}
	if _, err := s.Commit(slot.B); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(s.Root(), slot.StateFile))
	old := write("1.0.5.lgb", two("1.0.5"))
	now := time.Now()
	tk := func(version string, devices ...string) bundle.Ticket {
		return bundle.Ticket{Version: version, Devices: devices, Reason: "1.1.0 breaks RS-485 on rev 2", Issued: now.Add(-time.Hour), Expires: now.Add(24 * time.Hour)}
	}
	expired := tk("1.0.5", "rtr-1")
	expired.Issued, expired.Expires = now.Add(-48*time.Hour), now.Add(-time.Hour)
	for _, tt := range []struct {
		name   string
		ticket []byte
		says   string
	}{
		{"no ticket", nil, "needs a ticket"},
		{"one signature below k", a.Ticket(t, tk("1.0.5", "rtr-1")), "1 of 2"},
		{"ticket for another version", a.Ticket(t, tk("1.0.4", "rtr-1"), b), "not 1.0.5"},
		{"ticket for another device", a.Ticket(t, tk("1.0.5", "rtr-2"), b), `not device "rtr-1"`},
		{"expired ticket", a.Ticket(t, expired, b), "expired at"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := in.Install(old, update.Options{Ticket: tt.ticket})
			if !errors.Is(err, bundle.ErrDowngrade) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("Install = %v, want a refused downgrade saying %q", err, tt.says)
			}
		})
	}
	// The deprecated entry point asks for a downgrade and gets none.
	if _, err := in.InstallFile(old, true); !errors.Is(err, bundle.ErrDowngrade) {
		t.Fatalf("InstallFile(allowDowngrade): %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(s.Root(), slot.StateFile)); string(after) != string(before) {
		t.Fatal("a refused downgrade changed the slot state")
	}

	good := a.Ticket(t, tk("1.0.5", "rtr-1"), c)
	res, err := in.Install(old, update.Options{Ticket: good})
	if err != nil || res.Manifest.Version != "1.0.5" || !res.Candidate {
		t.Fatalf("downgrade with a ticket: %+v %v", res, err)
	}
	if _, err := s.Rollback("test"); err != nil {
		t.Fatal(err)
	}

	// Over update.fetch: allow_downgrade alone is refused, the ticket inline
	// lets it in.
	body := two("1.0.6")
	sum := sha256.Sum256(body)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer srv.Close()
	args := update.FetchArgs{URL: srv.URL + "/x.lgb", SHA256: hex.EncodeToString(sum[:]), AllowDowngrade: true}
	if _, err := in.Fetch(context.Background(), args); !errors.Is(err, bundle.ErrDowngrade) {
		t.Fatalf("fetch a downgrade without a ticket: %v", err)
	}
	args.Ticket = a.Ticket(t, bundle.Ticket{Version: "1.0.6", Site: "s1", Reason: "site-wide", Issued: now, Expires: now.Add(time.Hour)}, b)
	if res, err := in.Fetch(context.Background(), args); err != nil || res.Manifest.Version != "1.0.6" {
		t.Fatalf("fetch a downgrade with a site ticket: %+v %v", res, err)
	}
}
