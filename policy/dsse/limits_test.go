package dsse

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// cycle names key ids in turn: signature i gets ids[i%len(ids)].
func cycle(ids ...string) func(int) string {
	return func(i int) string { return ids[i%len(ids)] }
}

// hostile builds an envelope of type pt around payload with n signatures,
// their key ids from keyid and each sig a well-formed signature of something
// else (so that ed25519.Verify, tried on it, hashes the whole message before
// it fails, as it would for a forgery). With n <= 0 it adds as many as fit in
// size bytes.
func hostile(tb testing.TB, size int, payload []byte, keyid func(int) string, n int) []byte {
	tb.Helper()
	junk := base64.StdEncoding.EncodeToString(ed25519.Sign(newKey(tb), []byte("something else")))
	var b bytes.Buffer
	b.WriteString(`{"payloadType":"` + pt + `","payload":"` + base64.StdEncoding.EncodeToString(payload) + `","signatures":[`)
	for i := 0; n <= 0 || i < n; i++ {
		sig := `{"keyid":"` + keyid(i) + `","sig":"` + junk + `"}`
		if n <= 0 && b.Len()+len(sig)+3 > size {
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(sig)
	}
	b.WriteString("]}")
	return b.Bytes()
}

// counting makes ring count its ed25519 verifications in *n.
func counting(ring *Keyring, n *int) *Keyring {
	ring.verify = func(pub ed25519.PublicKey, msg, sig []byte) bool {
		*n++
		return ed25519.Verify(pub, msg, sig)
	}
	return ring
}

func TestSignSetsKeyID(t *testing.T) {
	a, b := newKey(t), newKey(t)
	env, err := Sign(pt, []byte("x"), a, b)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Parse(env)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Signatures) != 2 || e.Signatures[0].KeyID != KeyID(pub(a)) || e.Signatures[1].KeyID != KeyID(pub(b)) {
		t.Fatalf("signatures %+v: want keyids of a and b", e.Signatures)
	}
}

func TestVerifyBounds(t *testing.T) {
	a, b, c := newKey(t), newKey(t), newKey(t)
	ida, idb := KeyID(pub(a)), KeyID(pub(b))
	payload := []byte("serial: 1\n")
	signed, err := Sign(pt, payload, a)
	if err != nil {
		t.Fatal(err)
	}
	var one Envelope
	if err := json.Unmarshal(signed, &one); err != nil {
		t.Fatal(err)
	}
	good, bad := one.Signatures[0], one.Signatures[0]
	bad.Sig = base64.StdEncoding.EncodeToString(make([]byte, ed25519.SignatureSize))
	// with returns the envelope with the given signatures.
	with := func(sigs ...Signature) []byte {
		e := one
		e.Signatures = sigs
		out, err := json.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	repeat := func(s Signature, n int) []Signature {
		out := make([]Signature, n)
		for i := range out {
			out[i] = s
		}
		return out
	}
	untrusted := Signature{KeyID: KeyID(pub(c)), Sig: good.Sig}
	noKeyID := Signature{Sig: good.Sig}
	tests := []struct {
		name      string
		env       []byte
		lim       Limits
		threshold int
		want      []error // each must be in the error; nil: verifies
		verifies  int     // ed25519 verifications
	}{
		{"one good", with(good), Limits{}, 1, nil, 1},
		{"over the size cap", append(with(good), bytes.Repeat([]byte(" "), MaxEnvelopeSize)...), Limits{}, 1, []error{ErrTooLarge}, 0},
		{"over a smaller size cap", with(good), Limits{MaxSize: 100}, 1, []error{ErrTooLarge}, 0},
		{"at the signature cap", with(repeat(good, MaxSignatures)...), Limits{}, 1, nil, 1},
		{"over the signature cap", with(repeat(good, MaxSignatures+1)...), Limits{}, 1, []error{ErrTooManySignatures}, 0},
		{"over a smaller signature cap", with(good, good, good), Limits{MaxSignatures: 2}, 1, []error{ErrTooManySignatures}, 0},
		{"fills the size cap with empty keyids", hostile(t, MaxEnvelopeSize, payload, cycle(""), 0), Limits{}, 1, []error{ErrTooManySignatures}, 0},
		{"empty keyid", with(noKeyID), Limits{}, 1, []error{ErrNoKeyID, ErrThreshold}, 0},
		{"empty keyids to the cap", with(repeat(noKeyID, MaxSignatures)...), Limits{}, 1, []error{ErrNoKeyID, ErrThreshold}, 0},
		{"unknown keyid", with(untrusted), Limits{}, 1, []error{ErrUnknownKey, ErrThreshold}, 0},
		{"made-up keyid", with(Signature{KeyID: "x", Sig: good.Sig}), Limits{}, 1, []error{ErrUnknownKey}, 0},
		{"duplicate keyid counted once, verified once", with(repeat(good, 4)...), Limits{}, 2, []error{ErrDuplicateKey, ErrThreshold}, 1},
		{"duplicate after a bad signature not tried", with(bad, good), Limits{}, 1, []error{ErrBadSignature, ErrDuplicateKey, ErrThreshold}, 1},
		{"duplicate after a malformed signature not tried", with(Signature{KeyID: ida, Sig: "!!"}, good), Limits{}, 1, []error{ErrMalformed, ErrDuplicateKey}, 0},
		{"mixed to the cap: one try per trusted key", hostile(t, 0, payload, cycle(ida, "", idb, "unknown", ida, idb), MaxSignatures), Limits{}, 1, []error{ErrBadSignature, ErrNoKeyID, ErrUnknownKey, ErrDuplicateKey}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n int
			ring := counting(NewKeyring(pub(a), pub(b)), &n)
			v, err := ring.VerifyLimited(tt.env, pt, tt.threshold, tt.lim)
			if tt.want == nil && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tt.want == nil && (string(v.Payload) != string(payload) || len(v.Signers) != 1) {
				t.Fatalf("got payload %q signers %d", v.Payload, len(v.Signers))
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("Verify error = %v, want %v in it", err, w)
				}
			}
			if n != tt.verifies {
				t.Errorf("%d ed25519 verifications, want %d", n, tt.verifies)
			}
		})
	}
}

func TestCapsNamed(t *testing.T) {
	ring := NewKeyring(pub(newKey(t)))
	_, err := ring.VerifyLimited(make([]byte, 1001), pt, 1, Limits{MaxSize: 1000})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "1001 bytes") || !strings.Contains(err.Error(), "cap 1000") {
		t.Errorf("size: %v; want ErrTooLarge naming 1001 bytes and cap 1000", err)
	}
	_, err = ring.Verify(hostile(t, 0, []byte("x"), cycle(""), MaxSignatures+1), pt, 1)
	if !errors.Is(err, ErrTooManySignatures) || !strings.Contains(err.Error(), fmt.Sprint(MaxSignatures)) {
		t.Errorf("count: %v; want ErrTooManySignatures naming %d", err, MaxSignatures)
	}
}

// TestVerifyCostBoundedByKeyring: however many signatures name trusted keys,
// empty or unknown ones, verifications never exceed the trusted keys.
func TestVerifyCostBoundedByKeyring(t *testing.T) {
	keys := make([]ed25519.PublicKey, MaxSignatures)
	ids := make([]string, 0, 2*len(keys))
	for i := range keys {
		keys[i] = pub(newKey(t))
		ids = append(ids, KeyID(keys[i]), "")
	}
	for _, size := range []int{1, 3, len(keys)} {
		var n int
		ring := counting(NewKeyring(keys[:size]...), &n)
		for _, th := range []int{1, size} {
			n = 0
			_, err := ring.Verify(hostile(t, 0, []byte("x"), cycle(ids...), MaxSignatures), pt, th)
			if !errors.Is(err, ErrThreshold) {
				t.Fatalf("junk signatures: %v", err)
			}
			if n > size {
				t.Errorf("keyring of %d, threshold %d: %d verifications", size, th, n)
			}
		}
	}
}

// BenchmarkVerifyHostile verifies envelopes built to cost the most: the
// size cap filled with signatures under empty, unknown or repeated trusted
// key ids (refused by the signature cap), and envelopes at the signature cap
// with a payload that fills the size cap (the most work a refused envelope
// can ask for: every trusted key named once, so each is tried once over a
// 4.7 MB message).
func BenchmarkVerifyHostile(b *testing.B) {
	committee := make([]ed25519.PublicKey, 3)
	for i := range committee {
		committee[i] = pub(newKey(b))
	}
	sixteen := make([]ed25519.PublicKey, MaxSignatures)
	for i := range sixteen {
		sixteen[i] = pub(newKey(b))
	}
	idsOf := func(keys []ed25519.PublicKey) []string {
		ids := make([]string, len(keys))
		for i, k := range keys {
			ids[i] = KeyID(k)
		}
		return ids
	}
	small := []byte("serial: 1\n")
	// Base64 makes 3 bytes 4; leave room for the signatures.
	big := bytes.Repeat([]byte("x"), (MaxEnvelopeSize-8<<10)/4*3)
	tid := KeyID(committee[0])
	cases := []struct {
		name string
		ring []ed25519.PublicKey
		env  []byte
		want error
	}{
		{"fill-size-cap/empty-keyid", committee, hostile(b, MaxEnvelopeSize, small, cycle(""), 0), ErrTooManySignatures},
		{"fill-size-cap/unknown-keyid", committee, hostile(b, MaxEnvelopeSize, small, cycle(strings.Repeat("f", 64)), 0), ErrTooManySignatures},
		{"fill-size-cap/repeated-trusted-keyid", committee, hostile(b, MaxEnvelopeSize, small, cycle(tid), 0), ErrTooManySignatures},
		{"signature-cap/mixed-keyids", committee, hostile(b, 0, small, cycle(tid, "", "unknown", tid), MaxSignatures), ErrThreshold},
		{"signature-cap/big-payload/3-keys", committee, hostile(b, 0, big, cycle(append(idsOf(committee), "")...), MaxSignatures), ErrThreshold},
		{"signature-cap/big-payload/16-keys", sixteen, hostile(b, 0, big, cycle(idsOf(sixteen)...), MaxSignatures), ErrThreshold},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if len(c.env) > MaxEnvelopeSize {
				b.Fatalf("envelope of %d bytes is over the cap", len(c.env))
			}
			ring := NewKeyring(c.ring...)
			b.SetBytes(int64(len(c.env)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ring.Verify(c.env, pt, 1); !errors.Is(err, c.want) {
					b.Fatalf("Verify: %v, want %v", err, c.want)
				}
			}
		})
	}
}

// BenchmarkVerifyOversized is the envelope of issue 11: 33 MB, 300,000
// signatures with empty key ids, refused by the size cap before it is read.
func BenchmarkVerifyOversized(b *testing.B) {
	env := hostile(b, 0, bytes.Repeat([]byte("x"), 1<<20), cycle(""), 300_000)
	if len(env) < 33_000_000 {
		b.Fatalf("envelope of %d bytes, want 33 MB", len(env))
	}
	ring := NewKeyring(pub(newKey(b)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ring.Verify(env, pt, 1); !errors.Is(err, ErrTooLarge) {
			b.Fatalf("Verify: %v", err)
		}
	}
}
