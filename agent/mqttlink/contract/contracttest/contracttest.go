// Package contracttest makes a throwaway fleet CA and device identities
// for tests and the testbench: what provisioning makes on real devices (an
// ECDSA P-256 key per device, a client certificate whose common name is the
// device id), in memory or as PEM files.
package contracttest

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
	"path/filepath"
	"sync/atomic"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
)

// CA is a fleet CA.
type CA struct {
	Cert   *x509.Certificate
	PEM    []byte
	key    *ecdsa.PrivateKey
	serial atomic.Int64
}

// NewCA makes a fleet CA named name.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &CA{Cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	ca.serial.Store(1)
	return ca, nil
}

// Pool holds the CA alone.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Identity is a device's key and certificate.
type Identity struct {
	Key     *ecdsa.PrivateKey
	CertDER []byte
	Cert    *x509.Certificate
}

// Issue makes a key and a client certificate for device, valid from
// notBefore to notAfter (zero: an hour ago to a year on).
func (ca *CA) Issue(device string, notBefore, notAfter time.Time) (*Identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-time.Hour)
	}
	if notAfter.IsZero() {
		notAfter = time.Now().Add(365 * 24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial.Add(1)), Subject: pkix.Name{CommonName: device},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := ca.Sign(tmpl, &key.PublicKey)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Identity{Key: key, CertDER: der, Cert: cert}, nil
}

// Sign certifies pub as tmpl says.
func (ca *CA) Sign(tmpl *x509.Certificate, pub any) ([]byte, error) {
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(ca.serial.Add(1))
	}
	return x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.key)
}

// Signer seals reports as the identity's device.
func (id *Identity) Signer() *contract.Signer {
	s, err := contract.NewSigner(id.Key, id.CertDER)
	if err != nil {
		panic(err) // a key and the certificate made for it always match
	}
	return s
}

// WriteFiles writes the identity as dir/<device>.crt and dir/<device>.key
// (PEM, the key 0600) and returns their paths.
func (id *Identity) WriteFiles(dir string) (certFile, keyFile string, err error) {
	kb, err := x509.MarshalPKCS8PrivateKey(id.Key)
	if err != nil {
		return "", "", err
	}
	name := id.Cert.Subject.CommonName
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: id.CertDER}), 0o644); err != nil {
		return "", "", fmt.Errorf("contracttest: %w", err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return "", "", fmt.Errorf("contracttest: %w", err)
	}
	return certFile, keyFile, nil
}

// WriteCA writes the CA certificate to dir/fleet-ca.pem and returns its path.
func (ca *CA) WriteCA(dir string) (string, error) {
	p := filepath.Join(dir, "fleet-ca.pem")
	if err := os.WriteFile(p, ca.PEM, 0o644); err != nil {
		return "", fmt.Errorf("contracttest: %w", err)
	}
	return p, nil
}
