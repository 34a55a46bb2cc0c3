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
	// Compression stores the file compressed (Zstd); the slot receives it
	// decompressed. A bundle with any compressed file is format 2, which
	// devices older than format 2 refuse.
	Compression Compression
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
	// A compressed file is held in memory as stored, compressed in the same
	// read that hashes it, so what is written is what the manifest says.
	stored := make([][]byte, len(files))
	for i, f := range files {
		if f.Mode&^fs.ModePerm != 0 {
			return Manifest{}, fmt.Errorf("bundle: %s: mode %v: only permission bits may be set", f.Name, f.Mode)
		}
		p := Payload{Name: f.Name, Mode: uint32(f.Mode), Compression: f.Compression}
		var sum []byte
		var err error
		if f.Compression == None {
			sum, p.Size, err = hashFile(f.Path, nil)
		} else {
			stored[i], p.StoredSize, sum, p.Size, err = compressFile(f.Path, f.Compression)
			if err == nil {
				h := sha256.Sum256(stored[i][:tableLen(p.StoredSize)])
				p.StoredSHA256 = hex.EncodeToString(h[:])
				m.Format = 2
			}
		}
		if err != nil {
			return Manifest{}, err
		}
		p.SHA256 = hex.EncodeToString(sum)
		m.Payloads = append(m.Payloads, p)
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
		if stored[i] != nil {
			if _, err := w.Write(stored[i]); err != nil {
				return Manifest{}, fmt.Errorf("bundle: write: %w", err)
			}
			continue
		}
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
