package nats_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
)

// TestShippedConfig has the NATS Server of go.mod check linkguard.conf as
// shipped (nats-server -t), with its certificate paths pointed at a test
// PKI and its two variables set as an operator would.
func TestShippedConfig(t *testing.T) {
	bin := brokertest.NATSServer(t)
	pki := brokertest.NewPKI(t)
	shipped, err := os.ReadFile("linkguard.conf")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := strings.NewReplacer(
		"/etc/nats/linkguard/server.pem", pki.ServerCert,
		"/etc/nats/linkguard/server.key", pki.ServerKey,
		"/etc/nats/linkguard/client-cas.pem", pki.CA,
		"/var/lib/nats", filepath.Join(dir, "js"),
	).Replace(string(shipped))
	path := filepath.Join(dir, "linkguard.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	kp, _ := nkeys.CreateAccount()
	pub, _ := kp.PublicKey()
	run := func(env ...string) (string, error) {
		cmd := exec.Command(bin, "-t", "-c", path)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("LINKGUARD_CALLOUT_PASSWORD=s3cret-for-test", "LINKGUARD_CALLOUT_ISSUER="+pub); err != nil {
		t.Fatalf("nats-server -t on the shipped configuration: %v\n%s", err, out)
	}
	// Without the issuer the configuration is refused, not run open.
	if out, err := run("LINKGUARD_CALLOUT_PASSWORD=x", "LINKGUARD_CALLOUT_ISSUER="); err == nil {
		t.Errorf("configuration with an empty callout issuer accepted:\n%s", out)
	}
}
