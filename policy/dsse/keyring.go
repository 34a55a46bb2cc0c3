package dsse

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"sort"
)

// Keyring is a set of trusted public keys, indexed by key id.
type Keyring struct {
	keys  map[string]ed25519.PublicKey
	names map[string]string // key id -> file or label, for messages
	// verify is ed25519.Verify; tests count the verifications through it.
	verify func(pub ed25519.PublicKey, message, sig []byte) bool
}

// NewKeyring trusts the given keys.
func NewKeyring(pubs ...ed25519.PublicKey) *Keyring {
	k := &Keyring{keys: map[string]ed25519.PublicKey{}, names: map[string]string{}, verify: ed25519.Verify}
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

// Verify is VerifyLimited within the default Limits, which suit policies.
func (k *Keyring) Verify(data []byte, payloadType string, threshold int) (*Verified, error) {
	return k.VerifyLimited(data, payloadType, threshold, Limits{})
}

// VerifyLimited checks an envelope within lim: size and signature count
// (ParseLimited), payload type, then each signature against the trusted key
// its keyid names, counting distinct keys. It succeeds when at least
// threshold distinct trusted keys signed; signatures by unknown keys are then
// ignored. On failure the error is a Problems listing every reason.
//
// The cost is bounded by the keyring, not by the envelope: a signature whose
// keyid is empty or names no trusted key is listed as a problem without any
// verification (DSSE allows an empty keyid, and trying it against every key
// is what let one envelope cost seconds of CPU), and each trusted key has
// one try, its first signature; a later one naming the same key is listed
// and not verified. So one envelope costs at most Len() ed25519
// verifications.
func (k *Keyring) VerifyLimited(data []byte, payloadType string, threshold int, lim Limits) (*Verified, error) {
	if threshold < 1 {
		return nil, fmt.Errorf("dsse: %w", ErrBadThreshold)
	}
	if len(k.keys) == 0 {
		return nil, fmt.Errorf("dsse: %w", ErrEmptyKeyring)
	}
	if threshold > len(k.keys) {
		return nil, fmt.Errorf("dsse: %w (%d > %d)", ErrKeyringTooFew, threshold, len(k.keys))
	}
	in, err := k.Inspect(data, payloadType, lim)
	if err != nil {
		return nil, err
	}
	if len(in.Signers) >= threshold {
		return &Verified{Payload: in.Payload, Signers: in.Signers}, nil
	}
	probs := in.Problems()
	probs = append(probs, fmt.Errorf("dsse: %w: %d of %d distinct trusted keys signed", ErrThreshold, len(in.Signers), threshold))
	return nil, probs
}

// Inspection is what became of each signature of an envelope, for tools
// that show who signed and who has not (lgctl policy status) rather than
// accept or refuse.
type Inspection struct {
	PayloadType string
	Payload     []byte
	Signatures  []SignatureCheck // one per signature, in envelope order
	Signers     []string         // distinct trusted key ids whose signature verified, in order
}

// SignatureCheck is the outcome of one signature.
type SignatureCheck struct {
	Index int
	KeyID string
	Sig   []byte // decoded; nil when not base64
	// Err is nil when a trusted key's signature verified; otherwise it
	// wraps ErrNoKeyID, ErrUnknownKey, ErrDuplicateKey, ErrMalformed or
	// ErrBadSignature.
	Err error
}

// Problems lists the signatures that did not verify.
func (in *Inspection) Problems() Problems {
	var probs Problems
	for _, s := range in.Signatures {
		if s.Err != nil {
			probs = append(probs, s.Err)
		}
	}
	return probs
}

// Inspect checks every signature of an envelope within lim, with no
// threshold: an envelope that parses, has the payload type and at least one
// signature yields an Inspection, however many of its signatures verified.
// It costs what VerifyLimited costs: at most Len() ed25519 verifications.
func (k *Keyring) Inspect(data []byte, payloadType string, lim Limits) (*Inspection, error) {
	env, err := ParseLimited(data, lim)
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
	in := &Inspection{PayloadType: env.PayloadType, Payload: payload, Signatures: make([]SignatureCheck, len(env.Signatures))}
	pae := PAE(env.PayloadType, payload)
	tried := map[string]bool{} // trusted key id -> whether its one try verified
	for i, s := range env.Signatures {
		c := &in.Signatures[i]
		c.Index, c.KeyID = i, s.KeyID
		if sig, err := decodeSig(s.Sig); err == nil {
			c.Sig = sig
		}
		id := s.KeyID
		pub, trusted := k.keys[id]
		good, dup := tried[id]
		switch {
		case id == "":
			c.Err = fmt.Errorf("dsse: signatures[%d]: %w", i, ErrNoKeyID)
			continue
		case !trusted:
			c.Err = fmt.Errorf("dsse: signatures[%d]: %w (keyid %s)", i, ErrUnknownKey, short(id))
			continue
		case dup && good:
			c.Err = fmt.Errorf("dsse: signatures[%d]: %w %s (counted once)", i, ErrDuplicateKey, k.Name(id))
			continue
		case dup:
			c.Err = fmt.Errorf("dsse: signatures[%d]: %w %s (its first signature failed; not tried again)", i, ErrDuplicateKey, k.Name(id))
			continue
		}
		tried[id] = false
		if c.Sig == nil {
			c.Err = fmt.Errorf("dsse: signatures[%d]: %w: not base64", i, ErrMalformed)
			continue
		}
		if !k.verify(pub, pae, c.Sig) {
			c.Err = fmt.Errorf("dsse: signatures[%d]: %w from %s", i, ErrBadSignature, k.Name(id))
			continue
		}
		tried[id] = true
		in.Signers = append(in.Signers, id)
	}
	return in, nil
}

// decodeSig decodes a signature in standard or URL base64, as DSSE allows.
func decodeSig(s string) ([]byte, error) {
	sig, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return base64.URLEncoding.DecodeString(s)
	}
	return sig, nil
}

// SignedOver reports whether sig, by the trusted key id, signs payload
// under payloadType. Tools use it to explain a bad signature (was it made
// over another copy of the document?); it costs one ed25519 verification.
func (k *Keyring) SignedOver(id, payloadType string, payload, sig []byte) bool {
	pub, ok := k.keys[id]
	return ok && k.verify(pub, PAE(payloadType, payload), sig)
}
