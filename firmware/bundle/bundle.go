package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"regexp"
	"slices"
	"time"

	"linkguard.dev/linkguard/policy/dsse"
)

// PayloadType is the DSSE payload type of a bundle manifest. Release keys
// sign it; policy and operator keys sign other types, so a policy signature
// can never pass for a firmware release.
const PayloadType = "application/vnd.linkguard.bundle-manifest+json"

// Magic starts every bundle file.
const Magic = "LGB1"

// BinaryName is the payload the launcher executes from a slot.
const BinaryName = "linkguard"

// Limits on what a bundle may declare, so a hostile file cannot make the
// device allocate or write without bound.
const (
	// MaxEnvelope caps the signed manifest. The largest manifest validate
	// allows (MaxPayloads payloads with 128-byte names) signed by
	// dsse.MaxSignatures keys is under 24 KiB (TestManifestCap), so 64 KiB
	// leaves room for a downgrade reason and is still small enough to read
	// whole before the signature is checked.
	MaxEnvelope    = 64 << 10
	MaxPayloads    = 64
	DefaultMaxSize = 64 << 20  // one payload
	DefaultMaxAll  = 128 << 20 // all payloads
)

// limits is what dsse may spend on a manifest envelope.
var limits = dsse.Limits{MaxSize: MaxEnvelope}

// Errors callers act on (errors.Is).
var (
	ErrFormat       = errors.New("bundle: malformed")
	ErrSignature    = errors.New("bundle: signature not valid")
	ErrArch         = errors.New("bundle: wrong architecture")
	ErrHardware     = errors.New("bundle: hardware too old")
	ErrDowngrade    = errors.New("bundle: downgrade not allowed")
	ErrIncompatible = errors.New("bundle: installed version too old to update from")
	ErrDigest       = errors.New("bundle: payload sha256 mismatch")
	ErrTooLarge     = errors.New("bundle: too large")
)

// Manifest describes a release. It is the signed part of a bundle.
type Manifest struct {
	Format         int       `json:"format"`
	Product        string    `json:"product"`
	Version        string    `json:"version"`
	Arch           string    `json:"arch"`
	MinHardware    int       `json:"min_hardware"`
	Created        time.Time `json:"created"`
	CompatibleFrom string    `json:"compatible_from,omitempty"`
	// DowngradeReason is the release's note on why one would go back to it.
	// It permits nothing: a downgrade takes a Ticket.
	DowngradeReason string    `json:"downgrade_reason,omitempty"`
	Payloads        []Payload `json:"payloads"`
}

// Payload is one file carried by a bundle, in the order it follows the
// manifest. Size and SHA256 are always those of the file as it lands in the
// slot; a compressed payload (format 2) adds how it is stored in the bundle,
// and is checked in the order compress.go describes.
type Payload struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Mode   uint32 `json:"mode"`

	Compression  Compression `json:"compression,omitempty"`
	StoredSize   int64       `json:"stored_size,omitempty"`   // compressed stream, without the chunk table
	StoredSHA256 string      `json:"stored_sha256,omitempty"` // of the chunk table
}

// FileMode returns the payload's permission bits.
func (p Payload) FileMode() fs.FileMode { return fs.FileMode(p.Mode) }

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$`)

// validate checks the manifest on its own, without the device's view.
func (m *Manifest) validate(maxSize, maxAll int64) error {
	// Format 2 is format 1 with compressed payloads; devices older than it
	// refuse it by number rather than install what they cannot decode.
	if m.Format != 1 && m.Format != 2 {
		return fmt.Errorf("%w: format %d, want 1 or 2", ErrFormat, m.Format)
	}
	if m.Product != BinaryName {
		return fmt.Errorf("%w: product %q", ErrFormat, m.Product)
	}
	if _, err := ParseVersion(m.Version); err != nil {
		return fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if m.CompatibleFrom != "" {
		if _, err := ParseVersion(m.CompatibleFrom); err != nil {
			return fmt.Errorf("%w: compatible_from: %w", ErrFormat, err)
		}
	}
	if m.Arch == "" || m.MinHardware < 0 || m.Created.IsZero() {
		return fmt.Errorf("%w: arch, min_hardware and created are required", ErrFormat)
	}
	if len(m.Payloads) == 0 || len(m.Payloads) > MaxPayloads {
		return fmt.Errorf("%w: %d payloads", ErrFormat, len(m.Payloads))
	}
	seen := make(map[string]bool, len(m.Payloads))
	var total, stored int64
	hasBinary := false
	for i, p := range m.Payloads {
		if len(p.Name) > 128 || !nameRE.MatchString(p.Name) {
			return fmt.Errorf("%w: payloads[%d]: bad name %q", ErrFormat, i, p.Name)
		}
		for other := range seen {
			// "a" and "a/b" cannot both exist in a directory tree.
			if other == p.Name || hasDirPrefix(other, p.Name) || hasDirPrefix(p.Name, other) {
				return fmt.Errorf("%w: payloads[%d]: %q clashes with %q", ErrFormat, i, p.Name, other)
			}
		}
		seen[p.Name] = true
		if p.Mode != 0o644 && p.Mode != 0o755 && p.Mode != 0o600 {
			return fmt.Errorf("%w: payloads[%d]: mode %#o", ErrFormat, i, p.Mode)
		}
		if p.Size < 0 || p.Size > maxSize {
			return fmt.Errorf("%w: payloads[%d]: size %d", ErrTooLarge, i, p.Size)
		}
		total += p.Size
		if total > maxAll {
			return fmt.Errorf("%w: payloads total more than %d bytes", ErrTooLarge, maxAll)
		}
		if !isSHA256(p.SHA256) {
			return fmt.Errorf("%w: payloads[%d]: sha256 %q", ErrFormat, i, p.SHA256)
		}
		if p.Compression != None && m.Format < 2 {
			return fmt.Errorf("%w: payloads[%d]: compression in a format %d manifest", ErrFormat, i, m.Format)
		}
		if err := p.checkStored(i, maxSize); err != nil {
			return err
		}
		stored += p.stored()
		if stored > maxAll {
			return fmt.Errorf("%w: payloads stored in more than %d bytes", ErrTooLarge, maxAll)
		}
		if p.Name == BinaryName {
			hasBinary = true
			if p.Mode != 0o755 {
				return fmt.Errorf("%w: %s must have mode 0755", ErrFormat, BinaryName)
			}
		}
	}
	if !hasBinary {
		return fmt.Errorf("%w: no %q payload", ErrFormat, BinaryName)
	}
	return nil
}

func hasDirPrefix(s, dir string) bool {
	return len(s) > len(dir) && s[len(dir)] == '/' && s[:len(dir)] == dir
}

// envelope is the DSSE envelope as stored in a bundle. The stored bytes must be
// exactly json.Marshal of this struct: a bundle has one spelling, so flipping
// any byte of it (even one the signature does not cover, such as a key id or
// base64 padding bits) is rejected.
type envelope struct {
	PayloadType string      `json:"payloadType"`
	Payload     []byte      `json:"payload"`
	Signatures  []signature `json:"signatures"`
}

type signature struct {
	KeyID string `json:"keyid"`
	Sig   []byte `json:"sig"`
}

// canonicalEnvelope parses raw with dsse within the manifest limits (size,
// signature count) and returns it with its canonical spelling.
func canonicalEnvelope(raw []byte) (envelope, []byte, error) {
	var e envelope
	d, err := dsse.ParseLimited(raw, limits)
	if errors.Is(err, dsse.ErrTooLarge) {
		return e, nil, fmt.Errorf("%w: manifest envelope: %w", ErrTooLarge, err)
	}
	if err != nil {
		return e, nil, fmt.Errorf("%w: envelope: %w", ErrFormat, err)
	}
	// The same decoding encoding/json gives a []byte field, so that the
	// canonical form is json.Marshal of envelope.
	e.PayloadType = d.PayloadType
	if e.Payload, err = base64.StdEncoding.DecodeString(d.Payload); err != nil {
		return e, nil, fmt.Errorf("%w: envelope: payload: %w", ErrFormat, err)
	}
	for i, s := range d.Signatures {
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			return e, nil, fmt.Errorf("%w: envelope: signatures[%d]: %w", ErrFormat, i, err)
		}
		e.Signatures = append(e.Signatures, signature{KeyID: s.KeyID, Sig: sig})
	}
	c, err := json.Marshal(e)
	if err != nil {
		return e, nil, fmt.Errorf("%w: envelope: %w", ErrFormat, err)
	}
	return e, c, nil
}

// Keyring verifies a DSSE envelope against trusted release keys; a
// *dsse.Keyring loaded from the release public keys is one.
type Keyring interface {
	Verify(envelopeJSON []byte, payloadType string, threshold int) (*dsse.Verified, error)
}

// Policy is the device's view a bundle is checked against.
type Policy struct {
	Keys      Keyring
	Threshold int    // release signatures required, on bundles and downgrade tickets; 0 means 1
	Arch      string // GOARCH of the device ("arm", "arm64", "mipsle", "mips", "amd64")
	Hardware  int    // hardware revision of the device
	Installed string // version running now; "" when none is installed

	// Device and Site are this device's id and site, which a downgrade
	// ticket must name.
	Device, Site string
	// Ticket is a signed downgrade ticket (TicketPayloadType), the only
	// thing that lets an older version than Installed in: signed by
	// Threshold release keys, naming the bundle's exact version and this
	// device (or its site), and unexpired at Now. A downgrade reason in the
	// manifest is a note, not a permission.
	Ticket []byte
	Now    time.Time // when the ticket is judged; zero means time.Now()

	MaxSize int64 // one payload; 0 means DefaultMaxSize
	MaxAll  int64 // all payloads; 0 means DefaultMaxAll
}

// Reader streams a bundle: NewReader checks the signed manifest, Next yields
// the payloads, each hashed as it is read.
type Reader struct {
	r        io.Reader
	m        Manifest
	envelope []byte
	next     int
	cur      *payloadReader
	done     bool
	// storedTo, if set, receives every payload's bytes as stored in the
	// bundle, once checked (Cosign copies a bundle through it).
	storedTo io.Writer
}

// NewReader reads a bundle's header and manifest from r and checks them
// against p: signature, architecture, hardware, version. Nothing of the
// payloads has been read when it returns.
func NewReader(r io.Reader, p Policy) (*Reader, error) {
	raw, env, err := readEnvelope(r)
	if err != nil {
		return nil, err
	}
	if p.Keys == nil {
		return nil, fmt.Errorf("%w: no release keys configured", ErrSignature)
	}
	th := max(p.Threshold, 1)
	v, err := p.Keys.Verify(raw, PayloadType, th)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSignature, err)
	}
	payload, ids := v.Payload, v.Signers
	if len(ids) < th {
		return nil, fmt.Errorf("%w: %d valid signatures, want %d", ErrSignature, len(ids), th)
	}
	// Stricter than DSSE: every signature must be one that verified, so no
	// byte of the envelope can change without the bundle being refused. A
	// repeated signature names a key that verified (dsse counts it once and
	// does not try it again), so it is refused by count.
	for _, s := range env.Signatures {
		if !slices.Contains(ids, s.KeyID) {
			return nil, fmt.Errorf("%w: signature with key id %q did not verify", ErrSignature, s.KeyID)
		}
	}
	if len(env.Signatures) != len(ids) {
		return nil, fmt.Errorf("%w: %d signatures by %d keys", ErrSignature, len(env.Signatures), len(ids))
	}
	m, err := decodeManifest(payload, p.MaxSize, p.MaxAll)
	if err != nil {
		return nil, err
	}
	if err := p.check(&m); err != nil {
		return nil, err
	}
	return &Reader{r: r, m: m, envelope: raw}, nil
}

// readEnvelope reads a bundle's header and manifest envelope, within
// MaxEnvelope and in canonical form; no signature is checked.
func readEnvelope(r io.Reader) ([]byte, envelope, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, envelope{}, fmt.Errorf("%w: header: %w", ErrFormat, err)
	}
	if string(hdr[:4]) != Magic {
		return nil, envelope{}, fmt.Errorf("%w: not a LinkGuard bundle", ErrFormat)
	}
	n := binary.BigEndian.Uint32(hdr[4:])
	if n == 0 {
		return nil, envelope{}, fmt.Errorf("%w: envelope length 0", ErrFormat)
	}
	// Compared as uint32: int(n) would turn negative on 32-bit devices.
	if n > MaxEnvelope {
		return nil, envelope{}, fmt.Errorf("%w: manifest envelope: %d bytes, cap %d", ErrTooLarge, n, MaxEnvelope)
	}
	raw := make([]byte, n)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, envelope{}, fmt.Errorf("%w: envelope: %w", ErrFormat, err)
	}
	env, canon, err := canonicalEnvelope(raw)
	if err != nil {
		return nil, envelope{}, err
	}
	if !bytes.Equal(canon, raw) {
		return nil, envelope{}, fmt.Errorf("%w: envelope is not in canonical form", ErrFormat)
	}
	return raw, env, nil
}

// decodeManifest decodes a manifest strictly and validates it within the
// payload caps (0: the defaults).
func decodeManifest(payload []byte, maxSize, maxAll int64) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%w: manifest: %w", ErrFormat, err)
	}
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if maxAll <= 0 {
		maxAll = DefaultMaxAll
	}
	if err := m.validate(maxSize, maxAll); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

func (p Policy) check(m *Manifest) error {
	if m.Arch != p.Arch {
		return fmt.Errorf("%w: bundle is for %s, device is %s", ErrArch, m.Arch, p.Arch)
	}
	if p.Hardware < m.MinHardware {
		return fmt.Errorf("%w: needs hardware revision %d, device has %d", ErrHardware, m.MinHardware, p.Hardware)
	}
	if p.Installed == "" {
		return nil
	}
	cur, err := ParseVersion(p.Installed)
	if err != nil {
		return fmt.Errorf("bundle: installed version: %w", err)
	}
	nv, _ := ParseVersion(m.Version) // validated
	if nv.Compare(cur) < 0 {
		if p.Ticket == nil {
			return fmt.Errorf("%w: %s is older than installed %s: a downgrade needs a ticket signed by the release keys for this device and version", ErrDowngrade, m.Version, p.Installed)
		}
		if err := p.checkTicket(nv); err != nil {
			return fmt.Errorf("%w: %s over installed %s: %w", ErrDowngrade, m.Version, p.Installed, err)
		}
	}
	if m.CompatibleFrom != "" {
		from, _ := ParseVersion(m.CompatibleFrom)
		if cur.Compare(from) < 0 {
			return fmt.Errorf("%w: %s updates from %s or later, installed is %s", ErrIncompatible, m.Version, m.CompatibleFrom, p.Installed)
		}
	}
	return nil
}

// Manifest returns the verified manifest.
func (r *Reader) Manifest() Manifest { return r.m }

// Envelope returns the signed envelope as stored in the bundle, to keep beside
// an installed slot as evidence of what was installed.
func (r *Reader) Envelope() []byte { return r.envelope }

// Next returns the next payload and a reader of its bytes. The reader fails
// with ErrDigest at its end if the bytes do not match the signed sha256, so a
// consumer that copies it to completion without error has verified bytes.
// A payload not read to its end is drained and checked by the next call.
// After the last payload Next returns io.EOF, having checked that nothing
// follows it.
func (r *Reader) Next() (Payload, io.Reader, error) {
	if r.cur != nil {
		if _, err := io.Copy(io.Discard, r.cur); err != nil {
			return Payload{}, nil, err
		}
		r.cur = nil
	}
	if r.next == len(r.m.Payloads) {
		if !r.done {
			var b [1]byte
			n, err := io.ReadFull(r.r, b[:])
			if n > 0 {
				return Payload{}, nil, fmt.Errorf("%w: data after the last payload", ErrFormat)
			}
			if err != io.EOF {
				return Payload{}, nil, fmt.Errorf("bundle: reading end: %w", err)
			}
			r.done = true
		}
		return Payload{}, nil, io.EOF
	}
	p := r.m.Payloads[r.next]
	r.next++
	want, _ := hex.DecodeString(p.SHA256)
	pr := &payloadReader{r: io.LimitReader(r.r, p.Size), left: p.Size, h: sha256.New(), want: want, name: p.Name}
	if p.Compression != None { // validated: Zstd
		tableSum, _ := hex.DecodeString(p.StoredSHA256)
		cr := &chunkReader{r: io.LimitReader(r.r, p.stored()), name: p.Name, tableSum: tableSum, streamLen: p.StoredSize, copyTo: r.storedTo}
		d := newDecodedReader(cr, p.Size)
		pr.r = d
		pr.end = func() error {
			if _, err := d.Read(nil); err != io.EOF {
				return err
			}
			return nil
		}
	} else if r.storedTo != nil {
		pr.r = io.TeeReader(pr.r, r.storedTo)
	}
	r.cur = pr
	return p, r.cur, nil
}

type payloadReader struct {
	r    io.Reader
	left int64
	h    hash.Hash
	want []byte
	name string
	// end, if set, is called when the signed size has been read and before
	// the digest is judged: a compressed payload checks there that its
	// stream ends.
	end func() error
	err error
}

func (pr *payloadReader) Read(b []byte) (int, error) {
	if pr.err != nil {
		return 0, pr.err
	}
	n, err := pr.r.Read(b)
	pr.h.Write(b[:n])
	pr.left -= int64(n)
	if err == nil && pr.left == 0 && pr.end != nil {
		if err = pr.end(); err == nil {
			err = io.EOF
		}
		pr.end = nil
	}
	if err == io.EOF || (err == nil && pr.left == 0) {
		if pr.left > 0 {
			pr.err = fmt.Errorf("%w: payload %s: %w", ErrFormat, pr.name, io.ErrUnexpectedEOF)
		} else if !bytes.Equal(pr.h.Sum(nil), pr.want) {
			pr.err = fmt.Errorf("%w: payload %s", ErrDigest, pr.name)
		} else {
			pr.err = io.EOF
		}
		return n, pr.err
	}
	if err != nil {
		pr.err = err
		if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrDigest) && !errors.Is(err, ErrTooLarge) {
			pr.err = fmt.Errorf("bundle: payload %s: %w", pr.name, err) // else named already
		}
		return n, pr.err
	}
	return n, nil
}

// Verify reads a whole bundle, checking everything without writing anything,
// and returns its manifest.
func Verify(r io.Reader, p Policy) (Manifest, error) {
	br, err := NewReader(r, p)
	if err != nil {
		return Manifest{}, err
	}
	for {
		_, _, err := br.Next()
		if err == io.EOF {
			return br.m, nil
		}
		if err != nil {
			return Manifest{}, err
		}
	}
}
