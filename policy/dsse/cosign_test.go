package dsse

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

func TestCosign(t *testing.T) {
	a, b, c := newKey(t), newKey(t), newKey(t)
	payload := []byte("serial: 1\r\nissued: x\n")
	env, err := Sign(pt, payload, a)
	if err != nil {
		t.Fatal(err)
	}
	ab, err := Cosign(env, b, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	abc, err := Cosign(ab, c, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewKeyring(pub(a), pub(b), pub(c)).Verify(abc, pt, 3)
	if err != nil {
		t.Fatalf("three signatures gathered one by one: %v", err)
	}
	if !bytes.Equal(v.Payload, payload) {
		t.Fatalf("payload changed: %q", v.Payload)
	}
	// The signatures it had are kept as they were, in their order.
	var before, after Envelope
	json.Unmarshal(ab, &before)
	json.Unmarshal(abc, &after)
	if len(after.Signatures) != 3 || after.Signatures[0] != before.Signatures[0] || after.Signatures[1] != before.Signatures[1] ||
		after.Signatures[2].KeyID != KeyID(pub(c)) || after.Payload != before.Payload || after.PayloadType != before.PayloadType {
		t.Fatalf("cosign rewrote the envelope: %+v -> %+v", before, after)
	}

	d := newKey(t)
	for _, tt := range []struct {
		name string
		env  []byte
		lim  Limits
		want error
	}{
		{"already signed first", abc, Limits{}, ErrAlreadySigned},
		{"at the signature cap", ab, Limits{MaxSignatures: 2}, ErrTooManySignatures},
		{"over the size cap", ab, Limits{MaxSize: len(ab) + 10}, ErrTooLarge},
		{"not an envelope", []byte("serial: 1\n"), Limits{}, ErrMalformed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			key := d
			if tt.want == ErrAlreadySigned {
				key = a
			}
			if _, err := Cosign(tt.env, key, tt.lim); !errors.Is(err, tt.want) {
				t.Fatalf("Cosign = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := Cosign(abc, c, Limits{}); !errors.Is(err, ErrAlreadySigned) {
		t.Fatalf("cosign by the last signer again: %v", err)
	}
}

func TestInspect(t *testing.T) {
	a, b, c, d := newKey(t), newKey(t), newKey(t), newKey(t)
	payload := []byte("serial: 1\n")
	env, _ := Sign(pt, payload, a, c)
	other, _ := Sign(pt, []byte("serial: 2\n"), b)
	var e, o Envelope
	json.Unmarshal(env, &e)
	json.Unmarshal(other, &o)
	// a good, c untrusted, b's signature over another payload, a again.
	e.Signatures = []Signature{e.Signatures[0], e.Signatures[1], o.Signatures[0], e.Signatures[0]}
	data, _ := json.Marshal(&e)
	var n int
	ring := counting(NewKeyring(pub(a), pub(b), pub(d)), &n)
	in, err := ring.Inspect(data, pt, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Signers) != 1 || in.Signers[0] != KeyID(pub(a)) || !bytes.Equal(in.Payload, payload) {
		t.Fatalf("signers %v payload %q", in.Signers, in.Payload)
	}
	want := []error{nil, ErrUnknownKey, ErrBadSignature, ErrDuplicateKey}
	for i, w := range want {
		if got := in.Signatures[i].Err; w == nil && got != nil || w != nil && !errors.Is(got, w) {
			t.Errorf("signatures[%d]: %v, want %v", i, got, w)
		}
	}
	if n != 2 {
		t.Errorf("%d verifications, want 2", n)
	}
	if len(in.Problems()) != 3 {
		t.Errorf("problems %v", in.Problems())
	}
	// b's bad signature is explained: it signs another payload.
	bad := in.Signatures[2]
	if !ring.SignedOver(bad.KeyID, pt, []byte("serial: 2\n"), bad.Sig) || ring.SignedOver(bad.KeyID, pt, payload, bad.Sig) {
		t.Error("SignedOver does not tell which payload b signed")
	}
	if ring.SignedOver(KeyID(pub(c)), pt, payload, in.Signatures[1].Sig) {
		t.Error("SignedOver trusted an untrusted key")
	}
	if _, err := ring.Inspect(data, "other", Limits{}); !errors.Is(err, ErrPayloadType) {
		t.Errorf("other type: %v", err)
	}
}
