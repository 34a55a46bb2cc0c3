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
	"testing"

	"linkguard.dev/linkguard/firmware/bundle"
	"linkguard.dev/linkguard/firmware/bundle/bundletest"
	"linkguard.dev/linkguard/firmware/slot"
	"linkguard.dev/linkguard/firmware/update"
)

func TestInstallFileAndFetch(t *testing.T) {
	rel := bundletest.NewRelease(t)
	s, _ := slot.New(t.TempDir())
	in := &update.Installer{Slots: s, Keys: rel.Ring, Arch: "amd64"}
	dir := t.TempDir()

	res, err := in.InstallFile(rel.WriteFile(t, dir, bundletest.Spec{Version: "1.0.0"}), false)
	if err != nil || res.Candidate || res.Slot != slot.A {
		t.Fatalf("first install %+v %v", res, err)
	}
	before, _ := os.ReadFile(filepath.Join(s.Root(), slot.StateFile))
	for name, spec := range map[string]bundletest.Spec{
		"downgrade": {Version: "0.9.0"},
		"arch":      {Version: "1.1.0", Arch: "mipsle"},
	} {
		if _, err := in.InstallFile(rel.WriteFile(t, dir, spec), false); err == nil {
			t.Errorf("%s installed", name)
		}
	}
	if after, _ := os.ReadFile(filepath.Join(s.Root(), slot.StateFile)); string(after) != string(before) {
		t.Fatal("a refused bundle changed the slot state")
	}
	if _, err := os.Stat(s.Dir(slot.B)); !os.IsNotExist(err) {
		t.Fatal("a refused bundle touched the inactive slot")
	}

	b := rel.Build(t, bundletest.Spec{Version: "1.1.0"})
	sum := sha256.Sum256(b)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(b) }))
	defer srv.Close()
	args := update.FetchArgs{URL: srv.URL + "/x.lgb", SHA256: hex.EncodeToString(sum[:])}
	if _, err := in.Fetch(context.Background(), update.FetchArgs{URL: args.URL, SHA256: args.SHA256, Size: 100}); err == nil {
		t.Fatal("fetch over the announced size accepted")
	}
	res, err = in.Fetch(context.Background(), args)
	if err != nil || !res.Candidate || res.Slot != slot.B || res.Manifest.Version != "1.1.0" {
		t.Fatalf("fetch %+v %v", res, err)
	}
	if left, _ := filepath.Glob(filepath.Join(s.Root(), "download", "*")); len(left) != 0 {
		t.Fatalf("download left behind: %q", left)
	}

	// Wrong key over the fetch path.
	other := bundletest.NewRelease(t)
	s2, _ := slot.New(t.TempDir())
	in2 := &update.Installer{Slots: s2, Keys: other.Ring, Arch: "amd64"}
	if _, err := in2.Fetch(context.Background(), args); !errors.Is(err, bundle.ErrSignature) {
		t.Fatalf("fetch signed by another key: %v", err)
	}
}
