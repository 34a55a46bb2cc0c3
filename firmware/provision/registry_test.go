package provision

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// crlCA is a CA whose certificate may sign CRLs, as a fleet CA must.
func crlCA(t *testing.T) *CA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fleet CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	crt, _ := x509.ParseCertificate(der)
	return &CA{Cert: crt, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Key: key}
}

// issue signs a CSR for device as lgctl provision does.
func issue(t *testing.T, ca *CA, device string) []byte {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: device}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	cert, err := ca.Sign(csr, device, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestRegistryRevokes: the registry records what the CA signs, and a
// revocation puts the device's certificates (all, or the one serial
// named) in a CRL the CA signed, and the device as "!DEVICE" in the site
// map once none of its certificates is left.
func TestRegistryRevokes(t *testing.T) {
	ca := crlCA(t)
	dir := t.TempDir()
	reg, err := OpenRegistry(dir, ca)
	if err != nil {
		t.Fatal(err)
	}
	certs := map[string][]*x509.Certificate{}
	for _, d := range []struct{ id, site string }{{"r1", "north-3"}, {"r2", "south-1"}, {"r1", "north-4"}, {"r3", "north-3"}} {
		der := issue(t, ca, d.id)
		if err := reg.Record(der, d.site); err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		certs[d.id] = append(certs[d.id], c)
	}
	sites := func() Sites {
		t.Helper()
		f, err := os.Open(filepath.Join(dir, SiteMapFile))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		s, err := ParseSiteMap(f)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := sites(); s.Site["r1"] != "north-4" || s.Site["r2"] != "south-1" || len(s.Revoked) != 0 {
		t.Fatalf("site map after provisioning: %+v", s)
	}

	// One of r1's two certificates, by serial: r1 is still in the map.
	serial := certs["r1"][0].SerialNumber.Text(16)
	done, err := reg.Revoke("r1", strings.ToUpper(serial), "key replaced")
	if err != nil || len(done) != 1 || done[0].Serial != serial {
		t.Fatalf("revoke r1 %s: %v %+v", serial, err, done)
	}
	if s := sites(); s.Site["r1"] != "north-4" {
		t.Fatalf("r1 left the site map with a certificate still valid: %+v", s)
	}
	// All of r2's.
	if done, err := reg.Revoke("r2", "", "stolen"); err != nil || len(done) != 1 {
		t.Fatalf("revoke r2: %v %+v", err, done)
	}
	if done, err := reg.Revoke("r2", "", "again"); err != nil || len(done) != 0 {
		t.Fatalf("revoking r2 again: %v %+v, want nothing more revoked", err, done)
	}
	if _, err := reg.Revoke("r9", "", ""); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("revoking a device never issued to: %v", err)
	}
	if s := sites(); !s.Revoked["r2"] || s.Site["r2"] != "" || s.Site["r3"] != "north-3" {
		t.Fatalf("site map after revoking r2: %+v", s)
	}

	pemCRL, err := os.ReadFile(filepath.Join(dir, CRLFile))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemCRL)
	if blk == nil || blk.Type != "X509 CRL" {
		t.Fatalf("crl.pem is not a PEM CRL:\n%s", pemCRL)
	}
	crl, err := x509.ParseRevocationList(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca.Cert); err != nil {
		t.Fatalf("CRL not signed by the CA: %v", err)
	}
	revoked := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		revoked[e.SerialNumber.Text(16)] = true
	}
	want := map[string]bool{serial: true, certs["r2"][0].SerialNumber.Text(16): true}
	if len(revoked) != len(want) || !revoked[serial] || !revoked[certs["r2"][0].SerialNumber.Text(16)] {
		t.Fatalf("CRL revokes %v, want %v", revoked, want)
	}
	if !crl.NextUpdate.After(time.Now().Add(DefaultCRLValidity - time.Hour)) {
		t.Errorf("CRL valid until %v only", crl.NextUpdate)
	}
	n := crl.Number.Int64()
	if err := reg.Refresh(); err != nil {
		t.Fatal(err)
	}
	pemCRL, _ = os.ReadFile(filepath.Join(dir, CRLFile))
	blk, _ = pem.Decode(pemCRL)
	crl2, _ := x509.ParseRevocationList(blk.Bytes)
	if crl2.Number.Int64() <= n || len(crl2.RevokedCertificateEntries) != 2 {
		t.Errorf("refreshed CRL number %v (was %d), %d entries", crl2.Number, n, len(crl2.RevokedCertificateEntries))
	}

	// A CA certificate that may not sign CRLs is refused up front.
	noCRL := testCA(t)
	if _, err := OpenRegistry(t.TempDir(), noCRL); err == nil || !strings.Contains(err.Error(), "cRLSign") {
		t.Errorf("a CA without cRLSign: %v", err)
	}
}

// TestParseSiteMap holds the Go reader to linkguard-acl's rules.
func TestParseSiteMap(t *testing.T) {
	for _, tc := range []struct {
		in, err string
	}{
		{"# c\n\nr1 north-3\n!r2\n", ""},
		{"r1 north-3\nr1 south-1\n", "listed twice"},
		{"r1 north-3\n!r1\n", "both listed and revoked"},
		{"r1\n", "want"},
		{"r1 a/b\n", "want"},
		{"!r/1\n", "want"},
	} {
		_, err := ParseSiteMap(strings.NewReader(tc.in))
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.err)
		}
	}
}
