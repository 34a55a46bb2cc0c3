package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
)

// TestNATSCalloutFlags: keygen writes an account seed once and never over
// it; the service refuses a missing registry, a user key as issuer and an
// unknown role before it connects anywhere.
func TestNATSCalloutFlags(t *testing.T) {
	dir := t.TempDir()
	seed := filepath.Join(dir, "callout.nk")
	out, _, err := run("nats-callout", "keygen", "-o", seed)
	if err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(seed)
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	if !strings.Contains(out, pub) || !nkeys.IsValidPublicAccountKey(pub) {
		t.Errorf("keygen printed %q, want the account key %s", out, pub)
	}
	if _, _, err := run("nats-callout", "keygen", "-o", seed); err == nil || !strings.Contains(err.Error(), "never overwritten") {
		t.Errorf("keygen over an existing seed: %v", err)
	}
	user, _ := nkeys.CreateUser()
	useed, _ := user.Seed()
	userSeed := filepath.Join(dir, "user.nk")
	os.WriteFile(userSeed, useed, 0o600)
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("secret\n"), 0o600)
	ca := brokertest.NewPKI(t).CA
	base := []string{"nats-callout", "--nats", "nats://127.0.0.1:1", "--password-file", pw, "--fleet-ca", ca, "--operator-ca", ca}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--issuer-seed", seed}, "--sites and --crl (or --registry) are required"},
		{[]string{"--issuer-seed", userSeed, "--registry", dir}, "not an account key"},
		{[]string{"--issuer-seed", seed, "--registry", dir, "--operator", "console@ops=admin"}, "ROLE one of console, lgctl"},
		{[]string{"--issuer-seed", seed, "--registry", dir, "--sites", "x"}, "not both"},
	} {
		_, _, err := run(append(base, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.args, err, c.want)
		}
	}
}
