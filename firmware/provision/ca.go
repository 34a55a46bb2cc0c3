package provision

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"time"
)

// CA signs device certificates on the technician's laptop.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     crypto.Signer
}

// LoadCA reads a PEM certificate and its PKCS#8 (or EC) PEM private key.
func LoadCA(certPath, keyPath string) (*CA, error) {
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	blk, _ := pem.Decode(cb)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("provision: %s: not a PEM certificate", certPath)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("provision: %s: %w", certPath, err)
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	kblk, _ := pem.Decode(kb)
	if kblk == nil {
		return nil, fmt.Errorf("provision: %s: not PEM", keyPath)
	}
	var key any
	switch kblk.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kblk.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(kblk.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("provision: %s: %w", keyPath, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("provision: %s: %T cannot sign", keyPath, key)
	}
	return &CA{Cert: cert, CertPEM: cb, Key: signer}, nil
}

// Sign issues a client certificate for the device deviceID, valid for
// validity, over the key of its request. The certificate's only name is
// its common name, deviceID: nothing the device put in its request (an
// organizational unit, alternative names, extensions) is copied, and a
// request whose common name is another device's is refused.
func (ca *CA) Sign(csr *x509.CertificateRequest, deviceID string, validity time.Duration) ([]byte, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("provision: CSR: %w", err)
	}
	if !idRE.MatchString(deviceID) {
		return nil, fmt.Errorf("provision: %q is not a device id", deviceID)
	}
	if csr.Subject.CommonName != deviceID {
		return nil, fmt.Errorf("provision: CSR names device %q, not %q, the device being provisioned", csr.Subject.CommonName, deviceID)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: deviceID},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
}
