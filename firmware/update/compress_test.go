package update_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"linkguard.dev/linkguard/firmware/bundle"
	"linkguard.dev/linkguard/firmware/bundle/bundletest"
	"linkguard.dev/linkguard/firmware/slot"
	"linkguard.dev/linkguard/firmware/update"
)

// TestInstallCompressed installs a zstd bundle: the slot holds the
// decompressed binary; a signed bundle whose payload decompresses past its
// signed size, or to other bytes, leaves the slot state as it was.
func TestInstallCompressed(t *testing.T) {
	rel := bundletest.NewRelease(t)
	s, _ := slot.New(t.TempDir())
	in := &update.Installer{Slots: s, Keys: rel.Ring, Arch: "amd64"}
	dir := t.TempDir()
	bin := "#!/bin/sh\n" + strings.Repeat("# linkguard agent stand-in\n", 20000)

	if _, err := in.Install(rel.WriteFile(t, dir, bundletest.Spec{Version: "1.0.0"}), update.Options{}); err != nil {
		t.Fatal(err)
	}
	b := rel.Build(t, bundletest.Spec{Version: "1.1.0", Binary: bin, Compression: bundle.Zstd})
	if len(b) > len(bin)/10 {
		t.Fatalf("bundle of %d bytes for a %d-byte binary", len(b), len(bin))
	}
	before, _ := os.ReadFile(filepath.Join(s.Root(), slot.StateFile))
	for name, edit := range map[string]func(m *bundle.Manifest){
		"bomb": func(m *bundle.Manifest) {
			m.Payloads[0].Size = 4096
			h := sha256.Sum256([]byte(bin[:4096]))
			m.Payloads[0].SHA256 = hex.EncodeToString(h[:])
		},
		"other bytes":         func(m *bundle.Manifest) { m.Payloads[0].SHA256 = strings.Repeat("0", 64) },
		"unknown compression": func(m *bundle.Manifest) { m.Payloads[0].Compression = "lz4" },
	} {
		p := filepath.Join(dir, name+".lgb")
		os.WriteFile(p, rel.Resign(t, b, edit), 0o644)
		_, err := in.Install(p, update.Options{})
		if !errors.Is(err, bundle.ErrTooLarge) && !errors.Is(err, bundle.ErrDigest) && !errors.Is(err, bundle.ErrCompression) {
			t.Errorf("%s: %v", name, err)
		}
		if after, _ := os.ReadFile(filepath.Join(s.Root(), slot.StateFile)); string(after) != string(before) {
			t.Fatalf("%s: a refused bundle changed the slot state", name)
		}
	}

	p := filepath.Join(dir, "good.lgb")
	os.WriteFile(p, b, 0o644)
	res, err := in.Install(p, update.Options{})
	if err != nil || !res.Candidate || res.Slot != slot.B {
		t.Fatalf("install %+v %v", res, err)
	}
	got, err := os.ReadFile(filepath.Join(s.Dir(slot.B), bundle.BinaryName))
	if err != nil || string(got) != bin {
		t.Fatalf("slot holds %d bytes, want the %d decompressed: %v", len(got), len(bin), err)
	}
}
