package main

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"linkguard.dev/linkguard/firmware/provision"
)

// TestCARegistry: a device provisioned with --registry is on record with
// its site; revoking it needs a reason, puts its certificate's serial in a
// CRL the CA signed and "!DEVICE" in the site map, and a second revocation
// or an unknown device is an error; a CA that may not sign CRLs is refused
// before anything is issued.
func TestCARegistry(t *testing.T) {
	devEnd, techPort := ptyPair(t)
	dir := t.TempDir()
	caCert, caKey := writeCA(t, dir)
	reg := filepath.Join(dir, "registry")
	cfg := filepath.Join(dir, "device.yaml")
	os.WriteFile(cfg, []byte("device: {id: rtr-7, site: north-2, kind: router}\n"), 0o644)
	con := &provision.Console{Dir: filepath.Join(t.TempDir(), "etc")}
	serveConsole(t, con, devEnd)
	if out, _, err := run("provision", "--port", techPort, "--timeout", "2s", "--device-id", "rtr-7", "--site", "north-2", "--broker", "mqtts://broker:8883",
		"--ca-cert", caCert, "--ca-key", caKey, "--registry", reg, "--config", cfg); err != nil || !strings.Contains(out, "rtr-7 provisioned") {
		t.Fatalf("provision: %v\n%s", err, out)
	}
	ca := []string{"--ca-cert", caCert, "--ca-key", caKey, "--registry", reg}
	out, _, err := run(append([]string{"ca", "list"}, ca...)...)
	if err != nil || !strings.Contains(out, "rtr-7") || !strings.Contains(out, "north-2") || !strings.Contains(out, "valid") {
		t.Fatalf("ca list: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(reg, provision.SiteMapFile)); !strings.Contains(string(b), "\nrtr-7 north-2\n") {
		t.Fatalf("site map after provisioning:\n%s", b)
	}
	if _, _, err := run(append([]string{"ca", "revoke", "rtr-7"}, ca...)...); err == nil || !strings.Contains(err.Error(), "--reason") {
		t.Fatalf("revoke without a reason: %v", err)
	}
	out, _, err = run(append([]string{"ca", "revoke", "rtr-7", "--reason", "stolen from the cabinet"}, ca...)...)
	if err != nil || !strings.Contains(out, "revoked rtr-7 certificate") || !strings.Contains(out, "fleet-crl.pem") {
		t.Fatalf("ca revoke: %v\n%s", err, out)
	}
	certs, err := provision.OpenRegistry(reg, mustCA(t, caCert, caKey))
	if err != nil {
		t.Fatal(err)
	}
	issued, _ := certs.Certs()
	if len(issued) != 1 || issued[0].Revoked == nil || issued[0].Reason != "stolen from the cabinet" {
		t.Fatalf("registry after revoke: %+v", issued)
	}
	pemCRL, _ := os.ReadFile(filepath.Join(reg, provision.CRLFile))
	blk, _ := pem.Decode(pemCRL)
	if blk == nil {
		t.Fatalf("no CRL in %s", provision.CRLFile)
	}
	crl, err := x509.ParseRevocationList(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(mustCA(t, caCert, caKey).Cert); err != nil {
		t.Fatalf("CRL not signed by the CA: %v", err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Text(16) != issued[0].Serial {
		t.Fatalf("CRL entries %+v, want serial %s", crl.RevokedCertificateEntries, issued[0].Serial)
	}
	if b, _ := os.ReadFile(filepath.Join(reg, provision.SiteMapFile)); !strings.Contains(string(b), "\n!rtr-7\n") {
		t.Fatalf("site map after revoking:\n%s", b)
	}
	if _, _, err := run(append([]string{"ca", "revoke", "rtr-7", "--reason", "again"}, ca...)...); err == nil || !strings.Contains(err.Error(), "nothing to revoke") {
		t.Fatalf("revoking twice: %v", err)
	}
	if _, _, err := run(append([]string{"ca", "revoke", "rtr-404", "--reason", "x"}, ca...)...); err == nil || !strings.Contains(err.Error(), "no certificate to this device") {
		t.Fatalf("revoking an unknown device: %v", err)
	}
	// A fresh CRL: a new number, the same revocation.
	if _, _, err := run(append([]string{"ca", "crl"}, ca...)...); err != nil {
		t.Fatal(err)
	}
	pemCRL2, _ := os.ReadFile(filepath.Join(reg, provision.CRLFile))
	blk2, _ := pem.Decode(pemCRL2)
	crl2, err := x509.ParseRevocationList(blk2.Bytes)
	if err != nil || crl2.Number.Cmp(crl.Number) <= 0 || len(crl2.RevokedCertificateEntries) != 1 {
		t.Fatalf("ca crl: %v, number %v after %v", err, crl2.Number, crl.Number)
	}

	// A CA without cRLSign could never tell the brokers: refused.
	old := t.TempDir()
	oc, ok := writeCAWith(t, old, x509.KeyUsageCertSign)
	if _, _, err := run("ca", "list", "--ca-cert", oc, "--ca-key", ok, "--registry", filepath.Join(old, "registry")); err == nil || !strings.Contains(err.Error(), "cRLSign") {
		t.Fatalf("a CA that may not sign CRLs: %v", err)
	}
}

func mustCA(t *testing.T, cert, key string) *provision.CA {
	t.Helper()
	ca, err := provision.LoadCA(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}
