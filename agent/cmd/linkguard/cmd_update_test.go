package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/firmware/bundle"
	"linkguard.dev/linkguard/firmware/bundle/bundletest"
	"linkguard.dev/linkguard/firmware/slot"
	"linkguard.dev/linkguard/policy/dsse"
)

// updateConfig writes a device configuration whose update section trusts rel.
func updateConfig(t *testing.T, rel bundletest.Release) (cfgPath, root string) {
	dir := t.TempDir()
	_, committee, err := dsse.GenerateKeyFiles(dir, "committee")
	if err != nil {
		t.Fatal(err)
	}
	root = filepath.Join(dir, "slots")
	cfg := "device: {id: rtr-1, site: s1, kind: router}\n" +
		"policy: {file: " + filepath.Join(dir, "policy.json") + ", trust: [" + committee + "]}\n" +
		"update: {root: " + root + ", trust: [" + rel.PubPath + "], hardware: 2}\n"
	cfgPath = filepath.Join(dir, "linkguard.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath, root
}

func TestUpdateInstall(t *testing.T) {
	rel := bundletest.NewRelease(t)
	cfg, root := updateConfig(t, rel)
	file := func(s bundletest.Spec) string {
		s.Arch = runtime.GOARCH
		return rel.WriteFile(t, t.TempDir(), s)
	}
	if out, _, err := run("update", "install", "-c", cfg, file(bundletest.Spec{Version: "1.0.0"})); err != nil || !strings.Contains(out, "active now") {
		t.Fatalf("first install: %v %q", err, out)
	}
	if out, _, err := run("update", "install", "-c", cfg, file(bundletest.Spec{Version: "1.1.0"})); err != nil || !strings.Contains(out, "as candidate") {
		t.Fatalf("second install: %v %q", err, out)
	}
	out, _, err := run("update", "status", "-c", cfg)
	var st slot.State
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Candidate != slot.B || st.B.Version != "1.1.0" {
		t.Fatalf("status: %v %q", err, out)
	}
	if _, _, err := run("update", "commit", "-c", cfg, "b"); err != nil {
		t.Fatal(err)
	}

	// Refusals leave the slots untouched.
	before, _ := os.ReadFile(filepath.Join(root, slot.StateFile))
	ticket := func(device string) string {
		p := filepath.Join(t.TempDir(), "ticket.json")
		now := time.Now()
		os.WriteFile(p, rel.Ticket(t, bundle.Ticket{Version: "1.0.5", Devices: []string{device}, Reason: "1.1.0 breaks RS-485 on rev 2",
			Issued: now, Expires: now.Add(time.Hour)}), 0o644)
		return p
	}
	other := bundletest.NewRelease(t)
	wrongKey := other.WriteFile(t, t.TempDir(), bundletest.Spec{Version: "1.2.0", Arch: runtime.GOARCH})
	tampered := file(bundletest.Spec{Version: "1.2.0"})
	b, _ := os.ReadFile(tampered)
	b[len(b)-3] ^= 0x40
	os.WriteFile(tampered, b, 0o644)
	for _, tc := range []struct {
		name string
		args []string
		want error
	}{
		{"downgrade", []string{file(bundletest.Spec{Version: "1.0.5"})}, bundle.ErrDowngrade},
		{"signed downgrade reason without a ticket", []string{file(bundletest.Spec{Version: "1.0.5", DowngradeReason: "1.1.0 breaks RS-485 on rev 2"})}, bundle.ErrDowngrade},
		{"ticket for another device", []string{"--allow-downgrade", "--ticket", ticket("rtr-2"), file(bundletest.Spec{Version: "1.0.5"})}, bundle.ErrTicket},
		{"wrong arch", []string{rel.WriteFile(t, t.TempDir(), bundletest.Spec{Version: "1.2.0", Arch: "mips"})}, bundle.ErrArch},
		{"wrong key", []string{wrongKey}, bundle.ErrSignature},
		{"tampered payload", []string{tampered}, bundle.ErrDigest},
		{"hardware", []string{file(bundletest.Spec{Version: "1.2.0", MinHardware: 3})}, bundle.ErrHardware},
	} {
		if _, _, err := run(append([]string{"update", "install", "-c", cfg}, tc.args...)...); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if after, _ := os.ReadFile(filepath.Join(root, slot.StateFile)); string(after) != string(before) {
		t.Fatal("a refused bundle changed the slot state")
	}
	// A downgrade with a ticket for this device and version is accepted.
	if _, _, err := run("update", "install", "-c", cfg, "--allow-downgrade", "--ticket", ticket("rtr-1"), file(bundletest.Spec{Version: "1.0.5"})); err != nil {
		t.Fatalf("downgrade with a ticket: %v", err)
	}
	if out, _, err := run("update", "rollback", "-c", cfg); err != nil || !strings.Contains(out, "slot b") {
		t.Fatalf("rollback: %v %q", err, out)
	}
}
