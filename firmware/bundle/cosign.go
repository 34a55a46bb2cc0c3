package bundle

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"linkguard.dev/linkguard/policy/dsse"
)

// ErrAlreadySigned is Cosign's refusal of a key that has signed already.
var ErrAlreadySigned = errors.New("bundle: already signed by this key")

// Cosign copies the bundle in r to w with key's signature added to its
// manifest envelope, over the manifest's exact bytes: release managers sign
// one build apart, each on their own machine, and the device counts their
// signatures together. Before signing it checks what a signer vouches for:
// the envelope's canonical form, the manifest, that key has not signed, and
// then, as the payloads are copied, every payload's sha256 and that nothing
// follows the last (a compressed payload is decompressed to check it, and
// copied compressed). It checks no other signature (that takes the release
// public keys: Verify).
//
// It returns the manifest and the key ids of the signatures the bundle now
// carries, the new one last. w has received part of a bundle when Cosign
// fails; the caller discards it.
func Cosign(w io.Writer, r io.Reader, key ed25519.PrivateKey) (Manifest, []string, error) {
	raw, env, err := readEnvelope(r)
	if err != nil {
		return Manifest{}, nil, err
	}
	if env.PayloadType != PayloadType {
		return Manifest{}, nil, fmt.Errorf("%w: payload type %q is not a bundle manifest", ErrFormat, env.PayloadType)
	}
	m, err := decodeManifest(env.Payload, 0, 0)
	if err != nil {
		return Manifest{}, nil, err
	}
	signed, err := dsse.Cosign(raw, key, limits)
	if errors.Is(err, dsse.ErrAlreadySigned) {
		return Manifest{}, nil, fmt.Errorf("%w: %w", ErrAlreadySigned, err)
	}
	if errors.Is(err, dsse.ErrTooLarge) {
		return Manifest{}, nil, fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	if err != nil {
		return Manifest{}, nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	cosigned, canon, err := canonicalEnvelope(signed)
	if err != nil {
		return Manifest{}, nil, err
	}
	ids := make([]string, len(cosigned.Signatures))
	for i, sig := range cosigned.Signatures {
		ids[i] = sig.KeyID
	}
	if len(canon) > MaxEnvelope {
		return Manifest{}, nil, fmt.Errorf("%w: manifest envelope: %d bytes, cap %d", ErrTooLarge, len(canon), MaxEnvelope)
	}
	var hdr [8]byte
	copy(hdr[:], Magic)
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(canon)))
	if _, err := w.Write(hdr[:]); err != nil {
		return Manifest{}, nil, fmt.Errorf("bundle: write: %w", err)
	}
	if _, err := w.Write(canon); err != nil {
		return Manifest{}, nil, fmt.Errorf("bundle: write: %w", err)
	}
	// The payloads are copied as stored (compressed ones stay compressed),
	// and read through as a device reads them, so every hash is checked.
	br := &Reader{r: r, m: m, envelope: canon, storedTo: w}
	for {
		_, pr, err := br.Next()
		if err == io.EOF {
			return m, ids, nil
		}
		if err != nil {
			return Manifest{}, nil, err
		}
		if _, err := io.Copy(io.Discard, pr); err != nil {
			return Manifest{}, nil, err
		}
	}
}
