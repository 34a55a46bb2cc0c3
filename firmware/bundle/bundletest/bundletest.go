// Package bundletest builds real signed bundles for tests of the packages that
// consume them (slot, update, launcher, the CLIs). It is imported only by
// tests.
package bundletest

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"linkguard.dev/linkguard/firmware/bundle"
	"linkguard.dev/linkguard/policy/dsse"
)

// Release is a release key pair, its key files and the keyring that trusts it.
type Release struct {
	Key     ed25519.PrivateKey
	Ring    *dsse.Keyring
	KeyPath string // release.key (0600)
	PubPath string // release.pub
}

// NewRelease makes a fresh release key and its files.
func NewRelease(tb testing.TB) Release {
	tb.Helper()
	keyPath, pubPath, err := dsse.GenerateKeyFiles(tb.TempDir(), "release")
	if err != nil {
		tb.Fatal(err)
	}
	key, err := dsse.LoadPrivateKey(keyPath)
	if err != nil {
		tb.Fatal(err)
	}
	ring, err := dsse.LoadKeyring(pubPath)
	if err != nil {
		tb.Fatal(err)
	}
	return Release{Key: key, Ring: ring, KeyPath: keyPath, PubPath: pubPath}
}

// Spec describes a test bundle.
type Spec struct {
	Version         string
	Arch            string // default "amd64"
	MinHardware     int
	CompatibleFrom  string
	DowngradeReason string
	// Binary is the content of the "linkguard" payload, typically a shell
	// script standing in for the agent. Default: a script that exits 0.
	Binary string
	// Compression is how the binary is stored (bundle.Zstd: format 2).
	Compression bundle.Compression
	// Extra payloads by name (mode 0644).
	Extra map[string]string
}

// Build writes the bundle spec describes, signed by r, and returns its bytes.
func (r Release) Build(tb testing.TB, s Spec) []byte {
	tb.Helper()
	dir := tb.TempDir()
	if s.Arch == "" {
		s.Arch = "amd64"
	}
	if s.Binary == "" {
		s.Binary = "#!/bin/sh\nexit 0\n"
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
		return p
	}
	files := []bundle.File{{Name: bundle.BinaryName, Path: write("bin/linkguard", s.Binary), Mode: 0o755, Compression: s.Compression}}
	for name, content := range s.Extra {
		files = append(files, bundle.File{Name: name, Path: write("extra/"+name, content), Mode: 0o644})
	}
	b, err := bundle.BuildBytes(bundle.Manifest{
		Version:         s.Version,
		Arch:            s.Arch,
		MinHardware:     s.MinHardware,
		Created:         time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC),
		CompatibleFrom:  s.CompatibleFrom,
		DowngradeReason: s.DowngradeReason,
	}, files, r.Key)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// WriteFile builds the bundle into dir and returns its path.
func (r Release) WriteFile(tb testing.TB, dir string, s Spec) string {
	tb.Helper()
	p := filepath.Join(dir, "linkguard-"+s.Version+".lgb")
	if err := os.WriteFile(p, r.Build(tb, s), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// Ring trusts every release's key, as a device configured with several
// release keys does.
func Ring(rels ...Release) *dsse.Keyring {
	ring := dsse.NewKeyring()
	for _, r := range rels {
		ring.Add(r.Key.Public().(ed25519.PublicKey), r.PubPath)
	}
	return ring
}

// Cosign returns b with r's signature added, as a second release manager
// signs a build apart.
func (r Release) Cosign(tb testing.TB, b []byte) []byte {
	tb.Helper()
	var out bytes.Buffer
	if _, _, err := bundle.Cosign(&out, bytes.NewReader(b), r.Key); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes()
}

// Ticket signs a downgrade ticket with r and others.
func (r Release) Ticket(tb testing.TB, t bundle.Ticket, others ...Release) []byte {
	tb.Helper()
	keys := []ed25519.PrivateKey{r.Key}
	for _, o := range others {
		keys = append(keys, o.Key)
	}
	env, err := bundle.SignTicket(t, keys...)
	if err != nil {
		tb.Fatal(err)
	}
	return env
}

// Resign returns bundle b with its manifest changed by edit and signed again
// by r alone, the payload bytes unchanged: a bundle the release key signed
// that lies about its payloads (a decompression bomb, a wrong size), which
// only the payload checks can catch.
func (r Release) Resign(tb testing.TB, b []byte, edit func(*bundle.Manifest)) []byte {
	tb.Helper()
	n := binary.BigEndian.Uint32(b[4:8])
	var env struct {
		Payload []byte `json:"payload"`
	}
	if err := json.Unmarshal(b[8:8+n], &env); err != nil {
		tb.Fatal(err)
	}
	var m bundle.Manifest
	if err := json.Unmarshal(env.Payload, &m); err != nil {
		tb.Fatal(err)
	}
	edit(&m)
	return r.Sign(tb, m, b[8+n:])
}

// Sign returns a bundle of manifest m, taken as it is (format, sizes and
// hashes unchecked), signed by r and followed by body as its payload bytes.
func (r Release) Sign(tb testing.TB, m bundle.Manifest, body []byte) []byte {
	tb.Helper()
	payload, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := dsse.Sign(bundle.PayloadType, payload, r.Key)
	if err != nil {
		tb.Fatal(err)
	}
	// The canonical spelling: []byte fields in base64, as a bundle has them.
	var c Envelope
	if err := json.Unmarshal(raw, &c); err != nil {
		tb.Fatal(err)
	}
	return Frame(tb, c, body)
}

// Envelope is a manifest envelope as a bundle spells it.
type Envelope struct {
	PayloadType string `json:"payloadType"`
	Payload     []byte `json:"payload"`
	Signatures  []struct {
		KeyID string `json:"keyid"`
		Sig   []byte `json:"sig"`
	} `json:"signatures"`
}

// Frame writes a bundle: the header, e in canonical form, then body.
func Frame(tb testing.TB, e Envelope, body []byte) []byte {
	tb.Helper()
	canon, err := json.Marshal(e)
	if err != nil {
		tb.Fatal(err)
	}
	var out bytes.Buffer
	out.WriteString(bundle.Magic)
	binary.Write(&out, binary.BigEndian, uint32(len(canon)))
	out.Write(canon)
	out.Write(body)
	return out.Bytes()
}
