package contract

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"sync"
	"time"
)

// Report kinds: the topic suffix a signed report was published under. The
// kind is part of what is signed, so a report cannot be replayed as another
// kind.
const (
	KindState     = "state"
	KindTelemetry = "telemetry"
	KindEvents    = "events"
	KindResult    = "cmd/result"
)

// sealContext separates report signatures from anything else the device
// key signs (its TLS handshakes have contexts of their own).
const sealContext = "linkguard/v1 report\x00"

// sigMember opens the last member of a sealed report.
var sigMember = []byte(`,"sig":"`)

// MaxReportBytes bounds what a consumer reads as one report: the agent's
// largest (telemetry of a busy router, an event with long fields) stay far
// below it.
const MaxReportBytes = 1 << 20

// Signer seals a device's reports with the device's own key, the one its
// fleet certificate names. The agent signs with the key of its broker
// identity (mqtt.cert, mqtt.key).
type Signer struct {
	key     crypto.Signer
	certB64 string
}

// NewSigner signs with key, certified by certDER (the device certificate).
// Only ECDSA P-256 (what provisioning makes) and Ed25519 keys are taken.
func NewSigner(key crypto.Signer, certDER []byte) (*Signer, error) {
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("contract: signer certificate: %w", err)
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&k.PublicKey) {
			return nil, errors.New("contract: signer key does not match its certificate")
		}
	case ed25519.PrivateKey:
		if pub, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(k.Public()) {
			return nil, errors.New("contract: signer key does not match its certificate")
		}
	default:
		return nil, fmt.Errorf("contract: signer key %T: only ECDSA P-256 and Ed25519 keys sign reports", key)
	}
	return &Signer{key: key, certB64: base64.StdEncoding.EncodeToString(certDER)}, nil
}

// LoadSigner reads a PEM certificate and key pair (the device's broker
// identity).
func LoadSigner(certFile, keyFile string) (*Signer, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("contract: signer: %w", err)
	}
	k, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("contract: signer key %T cannot sign", pair.PrivateKey)
	}
	return NewSigner(k, pair.Certificate[0])
}

// Seal signs a report of kind: msg, a JSON object as json.Marshal makes it,
// gains the member "cert" (the device certificate, base64 DER) and, last,
// "sig": the signature, base64, over
//
//	"linkguard/v1 report" NUL kind NUL body
//
// where body is the sealed message with its trailing `,"sig":"…"` member cut
// off (so it ends with the cert member and "}"). ECDSA signs the SHA-256 of
// that input (ASN.1), Ed25519 the input itself. Any consumer, in any
// language, recovers body by cutting the sealed message at its last
// `,"sig":"`.
func (s *Signer) Seal(kind string, msg []byte) ([]byte, error) {
	msg = bytes.TrimSpace(msg)
	if len(msg) < 2 || msg[0] != '{' || msg[len(msg)-1] != '}' {
		return nil, errors.New("contract: seal: not a JSON object")
	}
	body := make([]byte, 0, len(msg)+len(s.certB64)+128)
	body = append(body, msg[:len(msg)-1]...)
	if len(msg) > 2 {
		body = append(body, ',')
	}
	body = append(body, `"cert":"`...)
	body = append(body, s.certB64...)
	body = append(body, `"}`...)
	sig, err := s.sign(kind, body)
	if err != nil {
		return nil, fmt.Errorf("contract: seal: %w", err)
	}
	out := append(body[:len(body)-1], sigMember...)
	out = base64.StdEncoding.AppendEncode(out, sig)
	return append(out, `"}`...), nil
}

func (s *Signer) sign(kind string, body []byte) ([]byte, error) {
	in := sealInput(kind, body)
	if k, ok := s.key.(ed25519.PrivateKey); ok {
		return ed25519.Sign(k, in), nil
	}
	sum := sha256.Sum256(in)
	return s.key.Sign(rand.Reader, sum[:], crypto.SHA256)
}

func sealInput(kind string, body []byte) []byte {
	in := make([]byte, 0, len(sealContext)+len(kind)+1+len(body))
	in = append(in, sealContext...)
	in = append(in, kind...)
	in = append(in, 0)
	return append(in, body...)
}

// Unsealed cuts a sealed report into the body its signature covers (what
// Seal signed) and the signature. ok is false when the message carries no
// well-formed trailing sig member.
func Unsealed(payload []byte) (body, sig []byte, ok bool) {
	payload = bytes.TrimSpace(payload)
	i := bytes.LastIndex(payload, sigMember)
	if i < 0 || !bytes.HasSuffix(payload, []byte(`"}`)) || len(payload)-2 < i+len(sigMember) {
		return nil, nil, false
	}
	enc := payload[i+len(sigMember) : len(payload)-2]
	if len(enc) == 0 || len(enc) > 256 {
		return nil, nil, false
	}
	sig, err := base64.StdEncoding.AppendDecode(nil, enc)
	if err != nil {
		return nil, nil, false
	}
	body = make([]byte, 0, i+1)
	body = append(body, payload[:i]...)
	return append(body, '}'), sig, true
}

// Why a report does not verify.
var (
	ErrUnsigned      = errors.New("unsigned")
	ErrBadSignature  = errors.New("bad signature")
	ErrUntrustedCert = errors.New("certificate not issued by the fleet CA")
	ErrRevokedCert   = errors.New("certificate revoked")
	ErrWrongDevice   = errors.New("topic, payload and certificate do not name the same device")
	ErrTooLarge      = errors.New("report too large")
	ErrMalformed     = errors.New("malformed report")
)

// ReportVerifier checks sealed reports against the fleet CA: the
// certificate chains to Roots for client authentication and is not
// revoked, its common name is the device the topic and the payload name,
// and the signature covers the report under its kind. Safe for concurrent
// use; parsed certificates are cached (a fleet of devices reuses a handful
// of bytes each).
type ReportVerifier struct {
	Roots *x509.CertPool
	// Revoked, when set, is asked for each certificate's serial (a CRL
	// loaded by the caller).
	Revoked func(serial *big.Int) bool
	Now     func() time.Time

	mu    sync.Mutex
	certs map[string]*verifiedCert
}

type verifiedCert struct {
	cert *x509.Certificate
	err  error
}

// maxCachedCerts bounds the cache against a stream of junk certificates.
const maxCachedCerts = 1 << 16

// Report is what a verified report names.
type Report struct {
	Device string
	Cert   *x509.Certificate
}

// Verify checks one report of kind published under the topic of
// topicDevice. The error is one of the Err values above, wrapped with
// detail.
func (v *ReportVerifier) Verify(kind, topicDevice string, payload []byte) (Report, error) {
	if len(payload) > MaxReportBytes {
		return Report{}, ErrTooLarge
	}
	body, sig, ok := Unsealed(payload)
	if !ok {
		return Report{}, ErrUnsigned
	}
	var head struct {
		Device string `json:"device"`
		Cert   string `json:"cert"`
	}
	if err := json.Unmarshal(body, &head); err != nil || head.Cert == "" {
		return Report{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	cert, err := v.cert(head.Cert)
	if err != nil {
		return Report{}, err
	}
	if head.Device == "" || head.Device != topicDevice || cert.Subject.CommonName != topicDevice {
		return Report{}, fmt.Errorf("%w: topic %q, payload %q, certificate %q", ErrWrongDevice, topicDevice, head.Device, cert.Subject.CommonName)
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	if now.After(cert.NotAfter) || now.Before(cert.NotBefore) {
		return Report{}, fmt.Errorf("%w: outside its validity", ErrUntrustedCert)
	}
	if v.Revoked != nil && v.Revoked(cert.SerialNumber) {
		return Report{}, fmt.Errorf("%w: serial %s", ErrRevokedCert, cert.SerialNumber)
	}
	in := sealInput(kind, body)
	switch pub := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		sum := sha256.Sum256(in)
		ok = ecdsa.VerifyASN1(pub, sum[:], sig)
	case ed25519.PublicKey:
		ok = ed25519.Verify(pub, in, sig)
	default:
		ok = false
	}
	if !ok {
		return Report{}, ErrBadSignature
	}
	return Report{Device: topicDevice, Cert: cert}, nil
}

// cert parses and chain-verifies a base64 certificate once; validity in
// time is checked by the caller at every use.
func (v *ReportVerifier) cert(b64 string) (*x509.Certificate, error) {
	v.mu.Lock()
	c, ok := v.certs[b64]
	v.mu.Unlock()
	if ok {
		return c.cert, c.err
	}
	c = &verifiedCert{}
	der, err := base64.StdEncoding.DecodeString(b64)
	if err == nil {
		c.cert, err = x509.ParseCertificate(der)
	}
	switch {
	case err != nil:
		c.err = fmt.Errorf("%w: certificate: %v", ErrMalformed, err)
	case v.Roots == nil:
		c.err = fmt.Errorf("%w: no fleet CA configured", ErrUntrustedCert)
	default:
		// Chain validity is judged at the certificate's own start, so a
		// cached verdict does not go stale; expiry is checked per use.
		_, err = c.cert.Verify(x509.VerifyOptions{Roots: v.Roots, CurrentTime: c.cert.NotBefore.Add(time.Second),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		if err != nil {
			c.err = fmt.Errorf("%w: %v", ErrUntrustedCert, err)
		}
	}
	v.mu.Lock()
	if v.certs == nil || len(v.certs) >= maxCachedCerts {
		v.certs = map[string]*verifiedCert{}
	}
	v.certs[b64] = c
	v.mu.Unlock()
	return c.cert, c.err
}

// LoadFleetCA reads the fleet CA certificates (PEM) that device
// certificates chain to.
func LoadFleetCA(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("contract: fleet CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("contract: fleet CA %s: no PEM certificate", file)
	}
	return pool, nil
}

// KindOf is the report kind of a device topic's suffix ("" if the topic
// carries no signed report).
func KindOf(suffix string) string {
	switch suffix {
	case KindState, KindTelemetry, KindEvents, KindResult:
		return suffix
	}
	return ""
}

// ReasonOf names a verification error for people and events: "unsigned",
// "bad signature", ...
func ReasonOf(err error) string {
	for _, e := range []error{ErrUnsigned, ErrBadSignature, ErrUntrustedCert, ErrRevokedCert, ErrWrongDevice, ErrTooLarge, ErrMalformed} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	if err == nil {
		return ""
	}
	return strings.SplitN(err.Error(), ":", 2)[0]
}

// LoadRevoked reads a CRL (PEM or DER) that one of the fleet CA
// certificates in caFile signed, for ReportVerifier.Revoked: a consumer
// refuses reports sealed by a certificate the CA revoked, as the broker
// refuses its connection.
func LoadRevoked(crlFile, caFile string) (func(*big.Int) bool, error) {
	b, err := os.ReadFile(crlFile)
	if err != nil {
		return nil, fmt.Errorf("contract: crl: %w", err)
	}
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	crl, err := x509.ParseRevocationList(b)
	if err != nil {
		return nil, fmt.Errorf("contract: crl %s: %w", crlFile, err)
	}
	cab, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("contract: fleet CA: %w", err)
	}
	signed := false
	for blk, rest := pem.Decode(cab); blk != nil; blk, rest = pem.Decode(rest) {
		if ca, err := x509.ParseCertificate(blk.Bytes); err == nil && crl.CheckSignatureFrom(ca) == nil {
			signed = true
			break
		}
	}
	if !signed {
		return nil, fmt.Errorf("contract: crl %s: not signed by a fleet CA of %s", crlFile, caFile)
	}
	revoked := make(map[string]bool, len(crl.RevokedCertificateEntries))
	for _, e := range crl.RevokedCertificateEntries {
		revoked[e.SerialNumber.String()] = true
	}
	return func(s *big.Int) bool { return revoked[s.String()] }, nil
}
