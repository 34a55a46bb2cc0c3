package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"

	"linkguard.dev/linkguard/policy/dsse"
)

// File is a payload to build into a bundle, read from disk.
type File struct {
	Name string      // name inside the slot, e.g. "linkguard", "config/default.yaml"
	Path string      // where it is read from
	Mode fs.FileMode // 0755 for executables, 0644 otherwise
}

// Build writes a bundle of files to w. m carries the release facts (version,
// arch, ...); its Payloads are filled in from files. Each file is hashed, the
// manifest signed with the release keys, and the files copied while hashed again, so a file that
// changes during the build fails it instead of producing a bundle that every
// device would reject.
func Build(w io.Writer, m Manifest, files []File, keys ...ed25519.PrivateKey) (Manifest, error) {
	m.Format = 1
	if m.Product == "" {
		m.Product = BinaryName
	}
	m.Payloads = m.Payloads[:0:0]
	for _, f := range files {
		if f.Mode&^fs.ModePerm != 0 {
			return Manifest{}, fmt.Errorf("bundle: %s: mode %v: only permission bits may be set", f.Name, f.Mode)
		}
		sum, size, err := hashFile(f.Path, nil)
		if err != nil {
			return Manifest{}, err
		}
		m.Payloads = append(m.Payloads, Payload{Name: f.Name, Size: size, SHA256: hex.EncodeToString(sum), Mode: uint32(f.Mode)})
	}
	if err := m.validate(DefaultMaxSize, DefaultMaxAll); err != nil {
		return Manifest{}, err
	}
	payload, err := json.Marshal(m)
	if err != nil {
		return Manifest{}, fmt.Errorf("bundle: manifest: %w", err)
	}
	raw, err := dsse.Sign(PayloadType, payload, keys...)
	if err != nil {
		return Manifest{}, fmt.Errorf("bundle: sign: %w", err)
	}
	_, env, err := canonicalEnvelope(raw)
	if err != nil {
		return Manifest{}, err
	}
	var hdr [8]byte
	copy(hdr[:], Magic)
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(env)))
	if _, err := w.Write(hdr[:]); err != nil {
		return Manifest{}, fmt.Errorf("bundle: write: %w", err)
	}
	if _, err := w.Write(env); err != nil {
		return Manifest{}, fmt.Errorf("bundle: write: %w", err)
	}
	for i, f := range files {
		sum, _, err := hashFile(f.Path, w)
		if err != nil {
			return Manifest{}, err
		}
		if hex.EncodeToString(sum) != m.Payloads[i].SHA256 {
			return Manifest{}, fmt.Errorf("bundle: %s changed during the build", f.Path)
		}
	}
	return m, nil
}

func hashFile(path string, w io.Writer) ([]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("bundle: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	dst := io.Writer(h)
	if w != nil {
		dst = io.MultiWriter(h, w)
	}
	n, err := io.Copy(dst, f)
	if err != nil {
		return nil, 0, fmt.Errorf("bundle: %s: %w", path, err)
	}
	return h.Sum(nil), n, nil
}

// BuildBytes is Build into memory, for tests and small bundles.
func BuildBytes(m Manifest, files []File, keys ...ed25519.PrivateKey) ([]byte, error) {
	var b bytes.Buffer
	if _, err := Build(&b, m, files, keys...); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
