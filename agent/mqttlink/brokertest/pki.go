package brokertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a throwaway certificate authority with a server certificate for
// 127.0.0.1/localhost, all written as PEM files in Dir. CAKey lets a test
// sign device certificates as a technician's lgctl provision does.
type PKI struct {
	Dir                              string
	CA, CAKey, ServerCert, ServerKey string
	caCert                           *x509.Certificate
	caKey                            *ecdsa.PrivateKey
	serial                           int64
	issued                           map[string]*big.Int // name -> serial of its latest certificate
}

// NewPKI creates a CA and a server certificate under a test directory.
func NewPKI(tb testing.TB) *PKI {
	tb.Helper()
	p := &PKI{Dir: tb.TempDir()}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "linkguard test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	p.caCert, _ = x509.ParseCertificate(der)
	p.caKey, p.serial = key, 1
	p.CA = filepath.Join(p.Dir, "ca.pem")
	writePEM(tb, p.CA, "CERTIFICATE", der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	p.CAKey = filepath.Join(p.Dir, "ca.key")
	writePEM(tb, p.CAKey, "EC PRIVATE KEY", kder)
	p.ServerCert, p.ServerKey = p.issue(tb, "server", true)
	return p
}

// Client issues a client certificate whose common name is name (the device
// id, or an operator console's name).
func (p *PKI) Client(tb testing.TB, name string) (cert, key string) {
	tb.Helper()
	return p.issue(tb, name, false)
}

// ClientTLS is a tls.Config for a client certificate named name.
func (p *PKI) ClientTLS(tb testing.TB, name string) *tls.Config {
	tb.Helper()
	cert, key := p.Client(tb, name)
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		tb.Fatal(err)
	}
	return &tls.Config{RootCAs: p.Pool(), Certificates: []tls.Certificate{c}, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// Pool holds the CA.
func (p *PKI) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.caCert)
	return pool
}

func (p *PKI) issue(tb testing.TB, name string, server bool) (string, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	p.serial++
	if p.issued == nil {
		p.issued = map[string]*big.Int{}
	}
	p.issued[name] = big.NewInt(p.serial)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	cert := filepath.Join(p.Dir, name+".pem")
	keyPath := filepath.Join(p.Dir, name+".key")
	writePEM(tb, cert, "CERTIFICATE", der)
	writePEM(tb, keyPath, "EC PRIVATE KEY", kder)
	return cert, keyPath
}

// CRL writes a certificate revocation list signed by the CA that revokes
// the latest certificate issued to each of names, valid for a day, and
// returns its path (the same file each call: write it again and reload the
// broker to revoke more). With no names it is an empty, valid CRL.
func (p *PKI) CRL(tb testing.TB, names ...string) string {
	tb.Helper()
	var entries []x509.RevocationListEntry
	for _, n := range names {
		serial, ok := p.issued[n]
		if !ok {
			tb.Fatalf("brokertest: CRL: no certificate was issued to %q", n)
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: time.Now().Add(-time.Minute)})
	}
	p.serial++
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(p.serial), ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().Add(24 * time.Hour),
		RevokedCertificateEntries: entries,
	}, p.caCert, p.caKey)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(p.Dir, "crl.pem")
	writePEM(tb, path, "X509 CRL", der)
	return path
}

func writePEM(tb testing.TB, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
}
