package dsse

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Envelope is a DSSE envelope as it travels on disk and over MQTT: the
// envelope of the DSSE specification (secure-systems-lab/dsse, envelope.md),
// field for field go-securesystemslib's dsse.Envelope.
type Envelope struct {
	PayloadType string      `json:"payloadType"`
	Payload     string      `json:"payload"`
	Signatures  []Signature `json:"signatures"`
}

// Signature is one signature of an envelope: the keyid (KeyID of the
// signer's key) and the base64 ed25519 signature of the envelope's PAE.
type Signature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// DecodeB64Payload decodes the payload: standard base64, else URL-safe
// base64, as go-securesystemslib decodes it.
func (e *Envelope) DecodeB64Payload() ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(e.Payload)
	if err != nil {
		if b, err = base64.URLEncoding.DecodeString(e.Payload); err != nil {
			return nil, errors.New("dsse: payload is not base64")
		}
	}
	return b, nil
}

// PAE is DSSE's pre-authentication encoding of a payload, what a signature
// covers: "DSSEv1 <len(type)> <type> <len(payload)> <payload>" (the
// specification's protocol.md). It is written here rather than taken from
// go-securesystemslib's dsse package, whose other file imports
// golang.org/x/crypto/ssh: 130 KB of every device binary for a key-id
// scheme LinkGuard does not use. A test holds the two equal.
func PAE(payloadType string, payload []byte) []byte {
	b := make([]byte, 0, len("DSSEv1 ")+2*20+len(payloadType)+len(payload)+2)
	b = append(b, "DSSEv1 "...)
	b = strconv.AppendInt(b, int64(len(payloadType)), 10)
	b = append(append(append(b, ' '), payloadType...), ' ')
	b = strconv.AppendInt(b, int64(len(payload)), 10)
	return append(append(b, ' '), payload...)
}

// Sentinel errors that callers act on. Verify wraps them.
var (
	ErrMalformed         = errors.New("malformed envelope")
	ErrTooLarge          = errors.New("envelope too large")
	ErrTooManySignatures = errors.New("too many signatures")
	ErrNoKeyID           = errors.New("signature without a keyid")
	ErrPayloadType       = errors.New("wrong payload type")
	ErrThreshold         = errors.New("not enough valid signatures")
	ErrUnknownKey        = errors.New("signature by an untrusted key")
	ErrBadSignature      = errors.New("bad signature")
	ErrDuplicateKey      = errors.New("duplicate signature by one key")
	ErrNoSignatures      = errors.New("no signatures")
	ErrEmptyKeyring      = errors.New("no trusted keys")
	ErrBadThreshold      = errors.New("threshold must be at least 1")
	ErrKeyringTooFew     = errors.New("threshold exceeds the number of trusted keys")
	ErrAlreadySigned     = errors.New("already signed by this key")
)

// Sign wraps payload in an envelope signed by every key, and returns the
// envelope as indented JSON.
func Sign(payloadType string, payload []byte, keys ...ed25519.PrivateKey) ([]byte, error) {
	if len(keys) == 0 {
		return nil, errors.New("dsse: sign: no keys")
	}
	pae := PAE(payloadType, payload)
	env := Envelope{PayloadType: payloadType, Payload: base64.StdEncoding.EncodeToString(payload)}
	seen := map[string]bool{}
	for _, k := range keys {
		pub := k.Public().(ed25519.PublicKey)
		id := KeyID(pub)
		if seen[id] {
			return nil, fmt.Errorf("dsse: sign: key %s given twice", short(id))
		}
		seen[id] = true
		env.Signatures = append(env.Signatures, Signature{
			KeyID: id,
			Sig:   base64.StdEncoding.EncodeToString(ed25519.Sign(k, pae)),
		})
	}
	out, err := json.MarshalIndent(&env, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("dsse: sign: %w", err)
	}
	return append(out, '\n'), nil
}

// Cosign adds key's signature to an existing envelope, over its exact
// payload type and payload (never another copy of the document: that is what
// makes signatures gathered one by one count together), and returns the
// envelope as indented JSON with the signatures it had, in their order, and
// the new one last. It refuses an envelope over lim, one key has signed
// already (ErrAlreadySigned) and one that would go over lim's signature cap
// (ErrTooManySignatures). It checks no other signature: that takes the
// trusted keys (Keyring.Inspect).
func Cosign(envelope []byte, key ed25519.PrivateKey, lim Limits) ([]byte, error) {
	env, err := ParseLimited(envelope, lim)
	if err != nil {
		return nil, err
	}
	payload, err := env.DecodeB64Payload()
	if err != nil {
		return nil, fmt.Errorf("dsse: %w: payload is not base64", ErrMalformed)
	}
	id := KeyID(key.Public().(ed25519.PublicKey))
	for i, s := range env.Signatures {
		if s.KeyID == id {
			return nil, fmt.Errorf("dsse: cosign: %w: signatures[%d] is key %s's", ErrAlreadySigned, i, short(id))
		}
	}
	if n := lim.maxSignatures(); len(env.Signatures) >= n {
		return nil, fmt.Errorf("dsse: cosign: %w: the envelope has %d, the cap", ErrTooManySignatures, n)
	}
	env.Signatures = append(env.Signatures, Signature{
		KeyID: id,
		Sig:   base64.StdEncoding.EncodeToString(ed25519.Sign(key, PAE(env.PayloadType, payload))),
	})
	out, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("dsse: cosign: %w", err)
	}
	out = append(out, '\n')
	if err := lim.CheckSize(len(out)); err != nil {
		return nil, fmt.Errorf("dsse: cosign: %w", err)
	}
	return out, nil
}

// Parse decodes an envelope strictly, within the default Limits: unknown
// fields, trailing data and missing fields are errors.
func Parse(data []byte) (*Envelope, error) { return ParseLimited(data, Limits{}) }

// ParseLimited is Parse within lim: an envelope over the size cap is refused
// before it is read (ErrTooLarge), and one with more signatures than the cap
// as soon as the decoder meets the first one too many (ErrTooManySignatures).
func ParseLimited(data []byte, lim Limits) (*Envelope, error) {
	if err := lim.CheckSize(len(data)); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	w := wireEnvelope{Signatures: signatureList{max: lim.maxSignatures()}}
	if err := dec.Decode(&w); err != nil {
		if errors.Is(err, ErrTooManySignatures) {
			return nil, fmt.Errorf("dsse: %w", err)
		}
		return nil, fmt.Errorf("dsse: %w: %s", ErrMalformed, jsonErr(data, err))
	}
	env := Envelope{PayloadType: w.PayloadType, Payload: w.Payload, Signatures: w.Signatures.sigs}
	if dec.More() {
		return nil, fmt.Errorf("dsse: %w: data after the envelope", ErrMalformed)
	}
	if env.PayloadType == "" {
		return nil, fmt.Errorf("dsse: %w: payloadType is missing", ErrMalformed)
	}
	if env.Payload == "" {
		return nil, fmt.Errorf("dsse: %w: payload is missing", ErrMalformed)
	}
	return &env, nil
}

// jsonErr adds line:column to a JSON syntax error.
func jsonErr(data []byte, err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	off := int64(-1)
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	if off < 0 || off > int64(len(data)) {
		return err.Error()
	}
	line := 1 + bytes.Count(data[:off], []byte{'\n'})
	col := int(off) - bytes.LastIndexByte(data[:off], '\n')
	return fmt.Sprintf("%d:%d: %v", line, col, err)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Problems collects every reason an envelope was refused, one per line.
type Problems []error

func (p Problems) Error() string {
	s := make([]string, len(p))
	for i, e := range p {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap lets errors.Is see every problem.
func (p Problems) Unwrap() []error { return p }
