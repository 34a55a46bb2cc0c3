package dsse

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"sort"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// Keyring is a set of trusted public keys, indexed by key id.
type Keyring struct {
	keys  map[string]ed25519.PublicKey
	names map[string]string // key id -> file or label, for messages
}

// NewKeyring trusts the given keys.
func NewKeyring(pubs ...ed25519.PublicKey) *Keyring {
	k := &Keyring{keys: map[string]ed25519.PublicKey{}, names: map[string]string{}}
	for _, p := range pubs {
		k.Add(p, "")
	}
	return k
}

// LoadKeyring trusts the public keys in the given files.
func LoadKeyring(paths ...string) (*Keyring, error) {
	k := NewKeyring()
	for _, p := range paths {
		pub, err := LoadPublicKey(p)
		if err != nil {
			return nil, err
		}
		k.Add(pub, p)
	}
	return k, nil
}

// Add trusts pub, labelled name in messages.
func (k *Keyring) Add(pub ed25519.PublicKey, name string) {
	id := KeyID(pub)
	k.keys[id] = pub
	if name == "" {
		name = short(id)
	}
	k.names[id] = name
}

// Len is the number of trusted keys.
func (k *Keyring) Len() int { return len(k.keys) }

// Name returns the label of a trusted key id, or its short form.
func (k *Keyring) Name(id string) string {
	if n, ok := k.names[id]; ok {
		return n
	}
	return short(id)
}

// IDs lists the trusted key ids, sorted.
func (k *Keyring) IDs() []string {
	ids := make([]string, 0, len(k.keys))
	for id := range k.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Verified is what a successful verification yields.
type Verified struct {
	Payload []byte
	Signers []string // key ids of the distinct trusted keys whose signatures verified
}

// Verify checks an envelope: payload type, then each signature against the
// trusted keys, counting distinct keys. It succeeds when at least threshold
// distinct trusted keys signed; signatures by unknown keys are then ignored.
// On failure the error is a Problems listing every reason.
func (k *Keyring) Verify(data []byte, payloadType string, threshold int) (*Verified, error) {
	if threshold < 1 {
		return nil, fmt.Errorf("dsse: %w", ErrBadThreshold)
	}
	if len(k.keys) == 0 {
		return nil, fmt.Errorf("dsse: %w", ErrEmptyKeyring)
	}
	if threshold > len(k.keys) {
		return nil, fmt.Errorf("dsse: %w (%d > %d)", ErrKeyringTooFew, threshold, len(k.keys))
	}
	env, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if env.PayloadType != payloadType {
		return nil, fmt.Errorf("dsse: %w: %q, want %q", ErrPayloadType, env.PayloadType, payloadType)
	}
	payload, err := env.DecodeB64Payload()
	if err != nil {
		return nil, fmt.Errorf("dsse: %w: payload is not base64", ErrMalformed)
	}
	if len(env.Signatures) == 0 {
		return nil, fmt.Errorf("dsse: %w", ErrNoSignatures)
	}
	pae := ssldsse.PAE(env.PayloadType, payload)
	var probs Problems
	good := map[string]bool{}
	var signers []string
	for i, s := range env.Signatures {
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			if sig, err = base64.URLEncoding.DecodeString(s.Sig); err != nil {
				probs = append(probs, fmt.Errorf("dsse: signatures[%d]: %w: not base64", i, ErrMalformed))
				continue
			}
		}
		id, ok := k.match(s.KeyID, sig, pae)
		switch {
		case !ok && id == "":
			probs = append(probs, fmt.Errorf("dsse: signatures[%d]: %w (keyid %s)", i, ErrUnknownKey, short(s.KeyID)))
		case !ok:
			probs = append(probs, fmt.Errorf("dsse: signatures[%d]: %w from %s", i, ErrBadSignature, k.Name(id)))
		case good[id]:
			probs = append(probs, fmt.Errorf("dsse: signatures[%d]: %w %s (counted once)", i, ErrDuplicateKey, k.Name(id)))
		default:
			good[id] = true
			signers = append(signers, id)
		}
	}
	if len(signers) >= threshold {
		return &Verified{Payload: payload, Signers: signers}, nil
	}
	probs = append(probs, fmt.Errorf("dsse: %w: %d of %d distinct trusted keys signed", ErrThreshold, len(signers), threshold))
	return nil, probs
}

// match finds the trusted key a signature belongs to. It returns the key id
// and whether the signature verified; an empty id means no trusted key was
// named (and, with no keyid, none verified).
func (k *Keyring) match(keyID string, sig, pae []byte) (string, bool) {
	if keyID != "" {
		pub, ok := k.keys[keyID]
		if !ok {
			return "", false
		}
		return keyID, ed25519.Verify(pub, pae, sig)
	}
	// DSSE allows an empty keyid: try every trusted key.
	for id, pub := range k.keys {
		if ed25519.Verify(pub, pae, sig) {
			return id, true
		}
	}
	return "", false
}
