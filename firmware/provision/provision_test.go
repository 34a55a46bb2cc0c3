package provision

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"linkguard.dev/linkguard/firmware/bundle/bundletest"
	"linkguard.dev/linkguard/firmware/slot"
	"linkguard.dev/linkguard/firmware/update"
	"linkguard.dev/linkguard/hal/envtest"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/policytest"
)

func testCA(t *testing.T) *CA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	crt, _ := x509.ParseCertificate(der)
	return &CA{Cert: crt, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Key: key}
}

// ptyPair starts socat with two linked ptys and opens both ends.
func ptyPair(t *testing.T) (dev, tech *os.File) {
	a, b := envtest.SocatPair(t)
	open := func(p string) *os.File {
		f, err := os.OpenFile(p, os.O_RDWR|syscall.O_NOCTTY, 0)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	return open(a), open(b)
}

func serve(t *testing.T, c *Console, f *os.File) (stop func() error) {
	done := make(chan error, 1)
	go func() { done <- c.Serve(context.Background(), f) }()
	return func() error {
		f.Close()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			return errors.New("console did not stop")
		}
	}
}

func plan(t *testing.T, ca *CA) Plan {
	pubPath := filepath.Join(t.TempDir(), "committee")
	_, pub, err := dsse.GenerateKeyFiles(filepath.Dir(pubPath), "committee")
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, _ := os.ReadFile(pub)
	priv, _ := dsse.LoadPrivateKey(filepath.Join(filepath.Dir(pubPath), "committee.key"))
	return Plan{
		Identity: Identity{DeviceID: "rtr-017", Site: "north-3", Broker: "mqtts://broker.example:8883"},
		SignCSR:  func(csr *x509.CertificateRequest) ([]byte, error) { return ca.Sign(csr, "rtr-017", 24*time.Hour) },
		CA:       ca.CertPEM,
		Keys:     map[string][]byte{"trust/committee.pub": pubPEM},
		Config:   []byte("device:\n  id: rtr-017\n  site: north-3\n"),
		Policy:   policytest.Sign(t, policytest.YAML(policytest.Synthetic(2, 1)), priv),
	}
}

// TestProvisionOverPty: provisioning end to end over a real pty pair, then
// interrupted and resumed with a new console process state, then (the
// unlock jumper fitted, since DONE locked the console) run again and a
// bundle flashed over the same line.
func TestProvisionOverPty(t *testing.T) {
	devEnd, techEnd := ptyPair(t)
	defer techEnd.Close()
	dir := t.TempDir()
	rel := bundletest.NewRelease(t)
	slots, _ := slot.New(filepath.Join(t.TempDir(), "slots"))
	var validated []string
	var jumper atomic.Bool
	con := &Console{Dir: dir, Installer: &update.Installer{Slots: slots, Keys: rel.Ring, Arch: "amd64"},
		Physical: []Presence{PresenceFunc(func() (bool, error) { return jumper.Load(), nil })},
		ValidateConfig: func(data []byte, id Identity) error {
			validated = append(validated, id.DeviceID)
			if !bytes.Contains(data, []byte("id: "+id.DeviceID)) {
				return errors.New("config is for another device")
			}
			return nil
		}}
	stop := serve(t, con, devEnd)
	c := NewClient(techEnd)
	ctx := context.Background()
	ca := testCA(t)
	p := plan(t, ca)

	// Interrupt after the certificate: the technician pulls the cable.
	var steps []string
	p.Progress = func(s string) { steps = append(steps, s) }
	c.Timeout = 2 * time.Second
	for _, req := range [][]string{{"HELLO"}, {"IDENTITY", p.Identity.DeviceID, p.Identity.Site, p.Identity.Broker}} {
		if _, err := c.Call(ctx, req[0], req[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Call(ctx, "DONE"); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("DONE before the steps: %v", err)
	}
	if _, err := c.Call(ctx, "KEYGEN"); err != nil {
		t.Fatal(err)
	}
	key1, _ := os.ReadFile(filepath.Join(dir, KeyFile))

	st, err := Provision(ctx, c, p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(st, ",") != "identity,key,cert,ca,config,done,trust,locked" {
		t.Fatalf("status %q (steps %q)", st, steps)
	}
	if _, err := c.Call(ctx, "FILE", PolicyName, b64(p.Policy)); !errors.Is(err, ErrLocked) {
		t.Fatalf("FILE after DONE: %v", err)
	}
	jumper.Store(true)
	key2, _ := os.ReadFile(filepath.Join(dir, KeyFile))
	if !bytes.Equal(key1, key2) {
		t.Fatal("the device key changed between KEYGENs")
	}
	if fi, _ := os.Stat(filepath.Join(dir, KeyFile)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("device key mode %v", fi.Mode())
	}
	// Everything sits in the device layout, whatever the wire called it.
	for name, want := range map[string][]byte{
		"tls/ca.crt": ca.CertPEM, "linkguard.yaml": p.Config, "policy/policy.signed.json": p.Policy,
		"trust/policy/committee.pub": p.Keys["trust/committee.pub"],
	} {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %v (%d bytes, want %d)", name, err, len(got), len(want))
		}
	}
	// A policy that is no DSSE envelope is refused.
	if _, err := c.Call(ctx, "FILE", PolicyName, b64([]byte("serial: 3\n"))); err == nil || !strings.Contains(err.Error(), "content") {
		t.Fatalf("policy that is no envelope: %v", err)
	}
	crtPEM, _ := os.ReadFile(filepath.Join(dir, CertFile))
	blk, _ := pem.Decode(crtPEM)
	crt, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || crt.Subject.CommonName != "rtr-017" {
		t.Fatalf("cert %v %v", crt, err)
	}
	if _, err := crt.Verify(x509.VerifyOptions{Roots: poolOf(ca.Cert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("device cert does not chain to the CA: %v", err)
	}

	// Run it again: idempotent, no new certificate requested.
	steps = nil
	if _, err := Provision(ctx, c, p); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(steps, ","), "keygen") {
		t.Fatalf("re-run asked for a new certificate: %q", steps)
	}
	// A different identity on a provisioned device is refused.
	other := p
	other.Identity.DeviceID = "rtr-999"
	var re *RemoteError
	if _, err := Provision(ctx, c, other); !errors.As(err, &re) || re.Code != "identity-mismatch" {
		t.Fatalf("re-provision as another device: %v", err)
	}
	// Config for another device is refused by the handed-in validator.
	if _, err := c.Call(ctx, "FILE", "config.yaml", "ZGV2aWNlOiB7fQo="); !errors.As(err, &re) || re.Code != "config" {
		t.Fatalf("foreign config: %v", err)
	}
	// Paths outside the allowed set are refused.
	if _, err := c.Call(ctx, "FILE", "../../etc/shadow", "eA=="); !errors.As(err, &re) || re.Code != "name" {
		t.Fatalf("path escape: %v", err)
	}

	// Flash a bundle over the same line, interrupted half way and resumed.
	dir2 := t.TempDir()
	bpath := rel.WriteFile(t, dir2, bundletest.Spec{Version: "1.0.0", Extra: map[string]string{"pad": strings.Repeat("x", 100_000)}})
	data, _ := os.ReadFile(bpath)
	if _, err := c.Call(ctx, "BUNDLE-BEGIN", itoa(len(data)), sha(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(ctx, "BUNDLE-DATA", "0", b64(data[:ChunkSize])); err != nil {
		t.Fatal(err)
	}
	var seen []int64
	inst, err := SendBundle(ctx, c, bpath, func(done, total int64) { seen = append(seen, done) })
	if err != nil {
		t.Fatal(err)
	}
	if seen[0] != ChunkSize || inst.Version != "1.0.0" || inst.Slot != "a" {
		t.Fatalf("resumed at %v, installed %+v", seen, inst)
	}
	rep, err := Health(ctx, c)
	if err != nil || rep.Slots == nil || rep.Slots.Installed() != "1.0.0" {
		t.Fatalf("health %+v %v", rep, err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func poolOf(c *x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}

// noisyLine corrupts the first request it carries, as a bad cable would.
type noisyLine struct {
	io.ReadWriter
	mu   sync.Mutex
	done bool
}

func (n *noisyLine) Write(b []byte) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.done && len(b) > 12 {
		n.done = true
		c := bytes.Clone(b)
		c[5] ^= 0x20
		return n.ReadWriter.Write(c)
	}
	return n.ReadWriter.Write(b)
}

type duplex struct {
	io.Reader
	io.Writer
}

func TestGarbledLineIsResent(t *testing.T) {
	toDev, fromTech := io.Pipe()
	toTech, fromDev := io.Pipe()
	con := &Console{Dir: t.TempDir()}
	go con.Serve(context.Background(), duplex{toDev, fromDev})
	c := NewClient(&noisyLine{ReadWriter: duplex{toTech, fromTech}})
	c.Timeout = time.Second
	r, err := c.Call(context.Background(), "IDENTITY", "rtr-1", "site-1", "mqtts://b:8883")
	if err != nil || r[0] != "IDENTITY" {
		t.Fatalf("%q %v", r, err)
	}
	fromTech.Close()
}

func TestFormatParse(t *testing.T) {
	l := Format("7", "FILE", "ca.crt", "eA==")
	f, err := Parse(l)
	if err != nil || strings.Join(f, " ") != "7 FILE ca.crt eA==" {
		t.Fatalf("%q %v", f, err)
	}
	for i := range l[:len(l)-1] {
		c := bytes.Clone(l)
		c[i] ^= 0x01
		if _, err := Parse(c); err == nil {
			t.Fatalf("flip at %d accepted: %q", i, c)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Format("1", "HELLO"))
	f.Add(Format("2", "FILE", "trust/a.pub", "eA=="))
	f.Add([]byte("1 HELLO *00000000\n"))
	f.Add([]byte(" *"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fields, err := Parse(b)
		if err != nil {
			return
		}
		if got := Format(fields...); !bytes.Equal(bytes.TrimRight(got, "\n"), bytes.TrimRight(b, "\r\n")) {
			t.Fatalf("%q parsed to %q, formats back as %q", b, fields, got)
		}
	})
}

func FuzzConsole(f *testing.F) {
	f.Add(Format("1", "IDENTITY", "a", "b", "mqtts://c"))
	f.Add(Format("1", "BUNDLE-DATA", "0", "eA=="))
	f.Add(Format("1", "FILE", "config.yaml", "eA=="))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		var out bytes.Buffer
		con := &Console{Dir: dir}
		if err := con.Serve(context.Background(), duplex{bytes.NewReader(b), &out}); err != nil {
			t.Fatal(err)
		}
		// Nothing is written outside the console's directory.
		filepath.Walk(filepath.Dir(dir), func(p string, _ os.FileInfo, _ error) error {
			if !strings.HasPrefix(p, dir) && p != filepath.Dir(dir) {
				t.Fatalf("wrote %s", p)
			}
			return nil
		})
	})
}

func TestInstallPath(t *testing.T) {
	for name, want := range map[string]string{
		"ca.crt": "tls/ca.crt", "config.yaml": "linkguard.yaml", "policy.signed.json": "policy/policy.signed.json",
		"trust/a.pub": "trust/policy/a.pub", "release/r.pub": "trust/release/r.pub", "operators/o.pub": "operators/o.pub",
	} {
		if !fileRE.MatchString(name) {
			t.Errorf("%s: not a FILE name", name)
		}
		if got := installPath(name); got != want {
			t.Errorf("%s installs at %s, want %s", name, got, want)
		}
	}
}
