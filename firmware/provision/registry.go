package provision

import (
	"bufio"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"linkguard.dev/linkguard/hal/atomicfile"
)

// The files of a CA registry directory. RegistryFile is the record; the
// others are written from it after every change, for the brokers.
const (
	RegistryFile = "issued.json" // every certificate issued, and its revocation
	SiteMapFile  = "sites"       // DEVICE SITE / !DEVICE lines (scripts/mosquitto/linkguard-acl, scripts/natsauth)
	CRLFile      = "crl.pem"     // the CA's CRL: mosquitto's crlfile, scripts/natsauth's crl
)

// DefaultCRLValidity is how long a CRL the registry writes is valid. A
// broker that checks CRLs refuses every client once it has expired, so
// it is long, and `lgctl ca crl` writes a fresh one before.
const DefaultCRLValidity = 30 * 24 * time.Hour

// ErrUnknownDevice is a revocation of a device the CA never issued to.
var ErrUnknownDevice = errors.New("provision: the CA issued no certificate to this device")

// Issued is one certificate the CA signed.
type Issued struct {
	Device   string    `json:"device"`
	Site     string    `json:"site"`
	Serial   string    `json:"serial"` // hexadecimal
	Issued   time.Time `json:"issued"`
	NotAfter time.Time `json:"not_after"`
	// Revoked is set once the certificate is revoked, with a reason.
	Revoked *time.Time `json:"revoked,omitempty"`
	Reason  string     `json:"reason,omitempty"`
}

type registryDoc struct {
	// CRLNumber is the number of the last CRL written: RFC 5280 wants
	// them increasing, and mosquitto takes the one it is given.
	CRLNumber int64    `json:"crl_number"`
	Certs     []Issued `json:"certs"`
}

// Registry is the fleet CA's record, kept in a directory beside its key:
// the certificates it issued (device, site, serial, expiry), which are
// revoked, and, written from that record after every change, the site map
// the brokers' device rules are made from and a CRL signed by the CA.
// Technicians who share a CA share its registry; a change holds a lock
// file in the directory, so two lgctl processes on one machine take turns.
type Registry struct {
	Dir string
	CA  *CA
	// CRLValidity is the NextUpdate of the CRLs written (default
	// DefaultCRLValidity).
	CRLValidity time.Duration
	now         func() time.Time
}

// OpenRegistry opens (creating it if need be) the registry in dir for ca.
func OpenRegistry(dir string, ca *CA) (*Registry, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("provision: registry: %w", err)
	}
	if ca.Cert.KeyUsage != 0 && ca.Cert.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return nil, fmt.Errorf("provision: registry: the CA certificate %q may not sign CRLs (no cRLSign key usage): brokers could not be told of revocations; issue the CA with keyUsage keyCertSign, cRLSign", ca.Cert.Subject.CommonName)
	}
	return &Registry{Dir: dir, CA: ca, CRLValidity: DefaultCRLValidity, now: time.Now}, nil
}

// Record notes a certificate the CA signed for device at site (DER, as
// CA.Sign returns it) and writes the site map and the CRL again.
func (r *Registry) Record(certDER []byte, site string) error {
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return fmt.Errorf("provision: registry: %w", err)
	}
	if !idRE.MatchString(site) {
		return fmt.Errorf("provision: registry: %q is not a site", site)
	}
	return r.change(func(d *registryDoc) error {
		d.Certs = append(d.Certs, Issued{
			Device: cert.Subject.CommonName, Site: site, Serial: cert.SerialNumber.Text(16),
			Issued: r.now().UTC().Truncate(time.Second), NotAfter: cert.NotAfter.UTC(),
		})
		return nil
	})
}

// Revoke revokes every certificate of device not revoked yet, or with
// serial (hexadecimal) only that one, and writes the CRL and site map:
// the list of certificates it revoked.
func (r *Registry) Revoke(device, serial, reason string) ([]Issued, error) {
	var done []Issued
	err := r.change(func(d *registryDoc) error {
		known := false
		now := r.now().UTC().Truncate(time.Second)
		for i := range d.Certs {
			c := &d.Certs[i]
			if c.Device != device {
				continue
			}
			known = true
			if c.Revoked != nil || serial != "" && !strings.EqualFold(c.Serial, strings.TrimPrefix(serial, "0x")) {
				continue
			}
			c.Revoked, c.Reason = &now, reason
			done = append(done, *c)
		}
		if !known {
			return fmt.Errorf("%w: %q", ErrUnknownDevice, device)
		}
		return nil
	})
	return done, err
}

// Refresh writes the CRL (with a new number and validity) and the site
// map again, changing nothing else: run it before the CRL's NextUpdate.
func (r *Registry) Refresh() error { return r.change(func(*registryDoc) error { return nil }) }

// Certs are the certificates on record, in the order issued.
func (r *Registry) Certs() ([]Issued, error) {
	d, err := r.load()
	return d.Certs, err
}

// SiteMap is the map the registry writes: a device with a certificate not
// revoked has the site of its latest one; a device whose every
// certificate is revoked is "!DEVICE".
func SiteMap(certs []Issued) string {
	site := map[string]string{}
	live := map[string]bool{}
	for _, c := range certs {
		if c.Revoked == nil {
			site[c.Device], live[c.Device] = c.Site, true
		} else if _, ok := site[c.Device]; !ok {
			site[c.Device] = ""
		}
	}
	var b strings.Builder
	b.WriteString("# device site: written by the fleet CA's registry (lgctl provision, lgctl ca); do not edit\n")
	for _, d := range slices.Sorted(maps.Keys(site)) {
		if live[d] {
			fmt.Fprintf(&b, "%s %s\n", d, site[d])
		} else {
			fmt.Fprintf(&b, "!%s\n", d)
		}
	}
	return b.String()
}

// Sites is a parsed site map: the site of each device and the devices
// revoked ("!DEVICE").
type Sites struct {
	Site    map[string]string
	Revoked map[string]bool
}

// ParseSiteMap reads a site map as linkguard-acl does: "DEVICE SITE"
// lines, "!DEVICE" lines, blank lines and # comments; a device listed
// twice, or both listed and revoked, is an error.
func ParseSiteMap(r io.Reader) (Sites, error) {
	s := Sites{Site: map[string]string{}, Revoked: map[string]bool{}}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		switch {
		case len(f) == 1 && strings.HasPrefix(f[0], "!") && idRE.MatchString(f[0][1:]):
			s.Revoked[f[0][1:]] = true
		case len(f) == 2 && idRE.MatchString(f[0]) && idRE.MatchString(f[1]):
			if old, ok := s.Site[f[0]]; ok {
				return s, fmt.Errorf("provision: site map line %d: device %s is listed twice (sites %s and %s)", n, f[0], old, f[1])
			}
			s.Site[f[0]] = f[1]
		default:
			return s, fmt.Errorf("provision: site map line %d: want \"DEVICE SITE\" or \"!DEVICE\", got %q", n, line)
		}
	}
	for d := range s.Revoked {
		if _, ok := s.Site[d]; ok {
			return s, fmt.Errorf("provision: site map: device %s is both listed and revoked", d)
		}
	}
	return s, sc.Err()
}

// CRL is a revocation list signed by the CA naming every revoked
// certificate of certs, numbered number, valid from now for validity.
func (ca *CA) CRL(certs []Issued, number int64, now time.Time, validity time.Duration) ([]byte, error) {
	var entries []x509.RevocationListEntry
	for _, c := range certs {
		if c.Revoked == nil {
			continue
		}
		serial, ok := new(big.Int).SetString(c.Serial, 16)
		if !ok {
			return nil, fmt.Errorf("provision: registry: %s: serial %q is not hexadecimal", c.Device, c.Serial)
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: *c.Revoked})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(number), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(validity),
		RevokedCertificateEntries: entries,
	}, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("provision: CRL: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), nil
}

// change runs fn on the record under the lock and writes the record, the
// CRL and the site map.
func (r *Registry) change(fn func(*registryDoc) error) error {
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	d, err := r.load()
	if err != nil {
		return err
	}
	if err := fn(&d); err != nil {
		return err
	}
	d.CRLNumber++
	validity := r.CRLValidity
	if validity <= 0 {
		validity = DefaultCRLValidity
	}
	crl, err := r.CA.CRL(d.Certs, d.CRLNumber, r.now(), validity)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	// The record first: a CRL or site map lost after it is written again
	// by the next change or Refresh; a record lost after them would forget
	// a revocation they already show.
	if err := atomicfile.Write(filepath.Join(r.Dir, RegistryFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("provision: registry: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(r.Dir, CRLFile), crl, 0o644); err != nil {
		return fmt.Errorf("provision: registry: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(r.Dir, SiteMapFile), []byte(SiteMap(d.Certs)), 0o644); err != nil {
		return fmt.Errorf("provision: registry: %w", err)
	}
	return nil
}

func (r *Registry) load() (registryDoc, error) {
	var d registryDoc
	b, err := os.ReadFile(filepath.Join(r.Dir, RegistryFile))
	if errors.Is(err, os.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return d, fmt.Errorf("provision: registry: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return d, fmt.Errorf("provision: registry %s: %w", filepath.Join(r.Dir, RegistryFile), err)
	}
	return d, nil
}

// lock takes the registry's lock file, waiting up to 10 s for another
// lgctl to finish; a lock left by a process that died must be removed by
// hand (the error names it).
func (r *Registry) lock() (func(), error) {
	path := filepath.Join(r.Dir, ".lock")
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			fmt.Fprintf(f, "%d\n", os.Getpid())
			f.Close()
			return func() { os.Remove(path) }, nil
		}
		if !errors.Is(err, os.ErrExist) || time.Now().After(deadline) {
			return nil, fmt.Errorf("provision: registry locked by another lgctl (%s; remove it if no lgctl is running): %w", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
