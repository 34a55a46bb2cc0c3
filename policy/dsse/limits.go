package dsse

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Default bounds on one envelope. Envelopes come from outside (any broker
// client can publish on the retained policy topic), so reading one must cost
// a known amount of memory and CPU whatever it holds; these defaults suit
// policies, the largest signed documents.
const (
	// MaxEnvelopeSize is the default size cap. A synthetic national policy
	// of 100,000 prefixes (policytest.Synthetic, 100 per approval) signed
	// by three keys is 2.3 MB; the cap leaves about 2.7 times that for
	// longer holder names, sites and notes. Parsing costs about three times
	// the envelope's size in memory (the decoder's copy, the base64 payload,
	// the decoded payload), so the cap is also what bounds memory.
	MaxEnvelopeSize = 6 << 20

	// MaxSignatures is the default cap on signatures in one envelope. A
	// committee signs with a handful of keys; sixteen leaves room for key
	// rotation (old and new keys side by side) while bounding the parse.
	MaxSignatures = 16
)

// Limits bound what one envelope may cost. The zero value means the
// defaults above; a reader of smaller documents (commands, bundle manifests)
// sets a smaller MaxSize. A field of zero or less means its default: there is
// no "unlimited".
type Limits struct {
	MaxSize       int // bytes of envelope JSON
	MaxSignatures int // signatures in the envelope
}

func (l Limits) maxSize() int {
	if l.MaxSize <= 0 {
		return MaxEnvelopeSize
	}
	return l.MaxSize
}

func (l Limits) maxSignatures() int {
	if l.MaxSignatures <= 0 {
		return MaxSignatures
	}
	return l.MaxSignatures
}

// CheckSize refuses an envelope of n bytes over the size cap with
// ErrTooLarge. Parse and Verify call it first; an intake that holds messages
// before parsing them (a queue, a channel) calls it on arrival, so that what
// will be refused is not kept.
func (l Limits) CheckSize(n int) error {
	if c := l.maxSize(); n > c {
		return fmt.Errorf("dsse: %w: %d bytes, cap %d", ErrTooLarge, n, c)
	}
	return nil
}

// wireEnvelope is Envelope as ParseLimited decodes it.
type wireEnvelope struct {
	PayloadType string        `json:"payloadType"`
	Payload     string        `json:"payload"`
	Signatures  signatureList `json:"signatures"`
}

// signatureList decodes the signatures array one element at a time, so an
// envelope with more than max of them is refused after max+1 are decoded
// rather than after all of them are allocated.
type signatureList struct {
	max  int
	sigs []Signature
}

func (l *signatureList) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	tok, err := dec.Token()
	if err != nil {
		return err // not reached: the envelope's decoder has checked the syntax
	}
	if tok == nil { // null, as encoding/json allows for a slice
		l.sigs = nil
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return errors.New("signatures is not an array")
	}
	for dec.More() {
		if len(l.sigs) == l.max {
			return fmt.Errorf("%w: over the cap of %d", ErrTooManySignatures, l.max)
		}
		var s Signature
		if err := dec.Decode(&s); err != nil {
			// %v: the offset in err counts from the array, not the
			// envelope, so jsonErr must not find it and print it as a
			// line and column.
			return fmt.Errorf("signatures[%d]: %v", len(l.sigs), err)
		}
		l.sigs = append(l.sigs, s)
	}
	return nil
}
