package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
