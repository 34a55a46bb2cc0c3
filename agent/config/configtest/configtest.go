// Package configtest writes a complete device configuration onto disk — the
// configuration file and every key, certificate, policy and directory it
// names — so tests can check, break and start a configuration the agent
// accepts. It is imported only by tests.
package configtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"linkguard.dev/linkguard/hal/envtest"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/policytest"
)

// Device is a router's configuration on disk, monitoring lo.
type Device struct {
	Dir    string // holds everything below
	Config string // the configuration file, mode 0644
	YAML   string // what Config holds

	// Files the configuration names, and some it does not.
	CommitteePub, OperatorPub, ReleasePub string
	CommitteeKey, OperatorKey             string // private halves, 0600
	CA, Cert, Key                         string // broker CA, client certificate and its key (0600)
	OtherKey                              string // a client key of another certificate (0600)
	Policy                                string // signed by the committee key
	StateDir                              string
}

// Router writes a valid router configuration in a new test directory.
func Router(tb testing.TB) *Device {
	tb.Helper()
	dir := tb.TempDir()
	d := &Device{Dir: dir, Config: filepath.Join(dir, "linkguard.yaml"), StateDir: filepath.Join(dir, "state")}
	keys := filepath.Join(dir, "secret")
	for _, sub := range []string{"trust", "operators", "release", "tls", "policy", "secret"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	gen := func(sub, name string) (priv, pub string) {
		priv, pub, err := dsse.GenerateKeyFiles(keys, name)
		if err != nil {
			tb.Fatal(err)
		}
		moved := filepath.Join(dir, sub, name+".pub")
		if err := os.Rename(pub, moved); err != nil {
			tb.Fatal(err)
		}
		return priv, moved
	}
	d.CommitteeKey, d.CommitteePub = gen("trust", "committee")
	d.OperatorKey, d.OperatorPub = gen("operators", "ops")
	_, d.ReleasePub = gen("release", "release")

	d.CA, d.Cert, d.Key, d.OtherKey = writePKI(tb, filepath.Join(dir, "tls"), "rtr-1")

	committee, err := dsse.LoadPrivateKey(d.CommitteeKey)
	if err != nil {
		tb.Fatal(err)
	}
	d.Policy = filepath.Join(dir, "policy", "policy.signed.json")
	writeFile(tb, d.Policy, policytest.Sign(tb, policytest.YAML(policytest.Synthetic(4, 1)), committee), 0o644)

	d.Write(tb, `device: {id: rtr-1, site: north, kind: router}
state_dir: `+d.StateDir+`
policy: {file: `+d.Policy+`, trust: [`+d.CommitteePub+`]}
links: {mode: monitor, outside: lo}
mqtt:
  url: mqtts://127.0.0.1:8883
  ca: `+d.CA+`
  cert: `+d.Cert+`
  key: `+d.Key+`
  operators: [`+d.OperatorPub+`]
  queue: {max_mb: 8}
update: {root: `+filepath.Join(dir, "slots")+`, trust: [`+d.ReleasePub+`]}
`)
	return d
}

// Write replaces the configuration file's content.
func (d *Device) Write(tb testing.TB, yaml string) {
	tb.Helper()
	d.YAML = yaml
	writeFile(tb, d.Config, []byte(yaml), 0o644)
}

// Replace rewrites the configuration with old replaced by new, which must
// occur in it.
func (d *Device) Replace(tb testing.TB, old, new string) {
	tb.Helper()
	if !strings.Contains(d.YAML, old) {
		tb.Fatalf("configtest: %q is not in the configuration:\n%s", old, d.YAML)
	}
	d.Write(tb, strings.Replace(d.YAML, old, new, 1))
}

func writeFile(tb testing.TB, p string, data []byte, mode os.FileMode) {
	tb.Helper()
	if err := os.WriteFile(p, data, mode); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		tb.Fatal(err)
	}
}

// writePKI writes a CA, a client certificate for device with its key, and a
// second key that belongs to no certificate.
func writePKI(tb testing.TB, dir, device string) (ca, cert, key, other string) {
	tb.Helper()
	caKey := ecKey(tb)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "configtest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	devKey := ecKey(tb)
	devDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: device},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, caCert, &devKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	ca, cert, key, other = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "device.crt"), filepath.Join(dir, "device.key"), filepath.Join(dir, "other.key")
	writeFile(tb, ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	writeFile(tb, cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: devDER}), 0o644)
	writeFile(tb, key, keyPEM(tb, devKey), 0o600)
	writeFile(tb, other, keyPEM(tb, ecKey(tb)), 0o600)
	return ca, cert, key, other
}

func ecKey(tb testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func keyPEM(tb testing.TB, k *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Tap creates a veth pair in this network namespace for a monitor to
// watch, up and removed when the test ends, and returns its two ends:
// frames sent on peer arrive on name. (lo's 64 KiB MTU makes too large a
// capture ring.) It needs root and ip(8): outside CI the test is skipped
// without them.
func Tap(tb testing.TB) (name, peer string) {
	tb.Helper()
	envtest.Root(tb)
	ip := envtest.Command(tb, "ip")
	n := tapSeq.Add(1)
	name, peer = fmt.Sprintf("lgtap%d.%d", os.Getpid()%1000, n), fmt.Sprintf("lgpeer%d.%d", os.Getpid()%1000, n)
	for _, args := range [][]string{
		{"link", "add", name, "type", "veth", "peer", "name", peer},
		{"link", "set", name, "up"},
		{"link", "set", peer, "up"},
	} {
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			tb.Fatalf("configtest: ip %q: %v\n%s", args, err, out)
		}
		if args[1] == "add" {
			tb.Cleanup(func() { _ = exec.Command(ip, "link", "del", name).Run() })
		}
	}
	return name, peer
}

var tapSeq atomic.Int32
