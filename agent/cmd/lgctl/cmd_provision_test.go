package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/firmware/provision"
	"linkguard.dev/linkguard/policy/dsse"
)

// TestProvisionRefusesBeforeConnecting: answers that cannot make a device
// that starts are refused on the laptop, before the serial line is opened.
func TestProvisionRefusesBeforeConnecting(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey := writeCA(t, dir)
	_, committee, _ := dsse.GenerateKeyFiles(dir, "committee")
	_, ops, _ := dsse.GenerateKeyFiles(dir, "ops")
	policy := filepath.Join(dir, "policy.signed.json")
	os.WriteFile(policy, []byte("{}"), 0o644)
	big := filepath.Join(dir, "big.json")
	os.WriteFile(big, make([]byte, 40<<10), 0o644)
	notPub := filepath.Join(dir, "committee.pem")
	os.WriteFile(notPub, []byte("x"), 0o644)
	base := []string{"provision", "--port", filepath.Join(dir, "no-such-port"), "--device-id", "rtr-1", "--site", "s", "--broker", "mqtts://b:8883",
		"--ca-cert", caCert, "--ca-key", caKey, "--trust", committee, "--operator", ops, "--outside", "eth0"}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no policy", nil, "--policy is required to generate the configuration"},
		{"relay", []string{"--policy", policy, "--kind", "relay"}, "a relay's buses and feeds are its site's wiring"},
		{"unknown kind", []string{"--policy", policy, "--kind", "toaster"}, `--kind: "toaster" is not one of router, relay`},
		{"unknown mode", []string{"--policy", policy, "--links-mode", "tap"}, `--links-mode: "tap" is not one of inline, monitor`},
		{"inline without inside", []string{"--policy", policy}, "links.inside: is required"},
		{"key not NAME.pub", []string{"--policy", policy, "--release", notPub}, "committee.pem: a public key file is named NAME.pub"},
		{"policy too large for a line", []string{"--policy", big}, "more than one provisioning line carries (32768): copy it to /etc/linkguard/policy/policy.signed.json"},
		{"generated, then the port", []string{"--policy", policy, "--links-mode", "monitor"}, "no-such-port"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := run(append(base, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}

// TestProvisionUnlockTokenOverPty: after lgctl provision the device's
// console is locked; provisioning again is refused with what to do; a
// token signed by one of two committee members is refused by the device,
// cosigned by the second it unlocks the console once.
func TestProvisionUnlockTokenOverPty(t *testing.T) {
	devEnd, techPort := ptyPair(t)
	dir := t.TempDir()
	caCert, caKey := writeCA(t, dir)
	keyA, pubA, _ := dsse.GenerateKeyFiles(dir, "committee-a")
	keyB, pubB, _ := dsse.GenerateKeyFiles(dir, "committee-b")
	cfg := filepath.Join(dir, "device.yaml")
	os.WriteFile(cfg, []byte("device: {id: rtr-9, site: north, kind: router}\n"), 0o644)
	devDir := filepath.Join(t.TempDir(), "etc")
	con := &provision.Console{Dir: devDir}
	serveConsole(t, con, devEnd)
	args := []string{"provision", "--port", techPort, "--timeout", "2s", "--device-id", "rtr-9", "--site", "north", "--broker", "mqtts://broker:8883",
		"--ca-cert", caCert, "--ca-key", caKey, "--trust", pubA, "--trust", pubB, "--config", cfg}
	if out, _, err := run(args...); err != nil || !strings.Contains(out, "rtr-9 provisioned: identity, key, cert, ca, config, done, trust, locked") {
		t.Fatalf("provision: %v\n%s", err, out)
	}
	before := map[string]string{}
	filepath.WalkDir(devDir, func(p string, d fs.DirEntry, _ error) error {
		if !d.IsDir() {
			b, _ := os.ReadFile(p)
			before[p] = string(b)
		}
		return nil
	})

	_, _, err := run(args...)
	for _, want := range []string{"device refused: locked", "rtr-9's console is locked", "lgctl provision unlock-token --key A.key --device rtr-9", "--unlock-token"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("provisioning a locked device: %v, want %q", err, want)
		}
	}

	tok := filepath.Join(dir, "unlock.json")
	if _, stderr, err := run("provision", "unlock-token", "--key", keyA, "--device", "rtr-9", "--action", "unlock", "--valid", "30m", "-o", tok); err != nil ||
		!strings.Contains(stderr, "signed a token for rtr-9 (action unlock") {
		t.Fatalf("unlock-token: %v %s", err, stderr)
	}
	if _, _, err := run(append(args, "--unlock-token", tok)...); err == nil || !strings.Contains(err.Error(), "1 of 2 distinct trusted keys signed") {
		t.Fatalf("provision with a token 1 of 2 signed: %v", err)
	}
	for p, b := range before {
		if got, _ := os.ReadFile(p); string(got) != b {
			t.Errorf("%s changed while locked", p)
		}
	}
	if _, stderr, err := run("provision", "unlock-token", "cosign", "--key", keyB, tok); err != nil || !strings.Contains(stderr, "2 signature(s)") {
		t.Fatalf("cosign: %v %s", err, stderr)
	}
	if _, _, err := run("provision", "unlock-token", "cosign", "--key", keyB, tok); err == nil || !strings.Contains(err.Error(), "already signed") {
		t.Fatalf("cosign twice: %v", err)
	}
	out, _, err := run(append(args, "--unlock-token", tok)...)
	if err != nil || !strings.Contains(out, "  unlock\n") || !strings.Contains(out, "provisioned: identity, key, cert, ca, config, done, trust, locked") {
		t.Fatalf("provision with a token 2 of 2 signed: %v\n%s", err, out)
	}
	if _, _, err := run(append(args, "--unlock-token", tok)...); err == nil || !strings.Contains(err.Error(), "used already") {
		t.Fatalf("the token again: %v", err)
	}
}

// TestUnlockTokenRefusals: tokens devices would refuse are refused on the
// laptop, before the line is opened.
func TestUnlockTokenRefusals(t *testing.T) {
	dir := t.TempDir()
	key, _, _ := dsse.GenerateKeyFiles(dir, "committee")
	priv, _ := dsse.LoadPrivateKey(key)
	other := filepath.Join(dir, "other.json")
	if _, _, err := run("provision", "unlock-token", "--key", key, "--device", "rtr-2", "-o", other); err != nil {
		t.Fatal(err)
	}
	old, _ := provision.NewUnlockToken("rtr-1", provision.ActionReset, time.Now().Add(-2*time.Hour), time.Hour)
	env, _ := provision.SignUnlockToken(old, priv)
	expired := filepath.Join(dir, "expired.json")
	os.WriteFile(expired, env, 0o644)
	notToken := filepath.Join(dir, "policy.yaml")
	os.WriteFile(notToken, []byte("serial: 1\n"), 0o644)
	mk := []string{"provision", "unlock-token", "--key", key, "--device", "rtr-1", "-o", filepath.Join(dir, "t.json")}
	caCert, caKey := writeCA(t, dir)
	prov := []string{"provision", "--port", filepath.Join(dir, "no-such-port"), "--device-id", "rtr-1", "--site", "s", "--broker", "mqtts://b:8883",
		"--ca-cert", caCert, "--ca-key", caKey, "--config", notToken}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"too long", append(mk, "--valid", "25h"), "--valid 25h0m0s: a token is valid for more than 0 and at most 24h0m0s"},
		{"unknown action", append(mk, "--action", "wipe"), `action "wipe" is not unlock or reset`},
		{"not a device id", append(mk[:5:5], "../x", "-o", filepath.Join(dir, "x.json")), `device "../x" is not a device id`},
		{"exists", append(mk[:6:6], "-o", other), "exists; not replacing it without --force"},
		{"cosign expired", []string{"provision", "unlock-token", "cosign", "--key", key, expired}, "the reset token for rtr-1 expired at"},
		{"cosign not a token", []string{"provision", "unlock-token", "cosign", "--key", key, notToken}, "not a signed envelope"},
		{"provision, another device's", append(prov, "--unlock-token", other), "the token is for device rtr-2, not rtr-1"},
		{"provision, expired", append(prov, "--unlock-token", expired), "expired at"},
		{"flash, not a token", []string{"flash", "--port", filepath.Join(dir, "no-such-port"), "--unlock-token", notToken, notToken}, "not a signed envelope"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := run(tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}
