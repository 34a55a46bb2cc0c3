package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"linkguard.dev/linkguard/firmware/provision"
)

// writeCA writes a throwaway CA certificate and key (PKCS#8) into dir.
func writeCA(t *testing.T, dir string) (certPath, keyPath string) {
	return writeCAWith(t, dir, x509.KeyUsageCertSign|x509.KeyUsageCRLSign)
}

// writeCAWith is writeCA with the CA certificate's key usage.
func writeCAWith(t *testing.T, dir string, usage x509.KeyUsage) (certPath, keyPath string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "site CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: usage, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certPath, keyPath = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return certPath, keyPath
}

// serveConsole runs the device's provisioning console on devEnd until the
// test ends, then checks it ended cleanly.
func serveConsole(t *testing.T, con *provision.Console, devEnd *os.File) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- con.Serve(t.Context(), devEnd) }()
	t.Cleanup(func() {
		devEnd.Close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}
