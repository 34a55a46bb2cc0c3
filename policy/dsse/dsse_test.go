package dsse

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

const pt = "application/vnd.linkguard.test"

func TestVerify(t *testing.T) {
	a, b, c := newKey(t), newKey(t), newKey(t)
	ring := NewKeyring(pub(a), pub(b))
	payload := []byte("serial: 1\n")
	signed := func(keys ...ed25519.PrivateKey) []byte {
		env, err := Sign(pt, payload, keys...)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	tamper := func(env []byte, f func(*Envelope)) []byte {
		var e Envelope
		if err := json.Unmarshal(env, &e); err != nil {
			t.Fatal(err)
		}
		f(&e)
		out, _ := json.Marshal(&e)
		return out
	}
	tests := []struct {
		name      string
		env       []byte
		typ       string
		threshold int
		want      error
		signers   int
	}{
		{"one of one", signed(a), pt, 1, nil, 1},
		{"two of two", signed(a, b), pt, 2, nil, 2},
		{"unknown key ignored when threshold met", signed(a, c), pt, 1, nil, 1},
		{"below threshold", signed(a), pt, 2, ErrThreshold, 0},
		{"untrusted only", signed(c), pt, 1, ErrUnknownKey, 0},
		{"wrong payload type", signed(a), "other", 1, ErrPayloadType, 0},
		{"duplicate key does not count twice", tamper(signed(a), func(e *Envelope) {
			e.Signatures = append(e.Signatures, e.Signatures[0])
		}), pt, 2, ErrDuplicateKey, 0},
		{"payload changed", tamper(signed(a), func(e *Envelope) { e.Payload = "c2VyaWFsOiAyCg==" }), pt, 1, ErrBadSignature, 0},
		{"type changed keeps PAE honest", tamper(signed(a), func(e *Envelope) { e.PayloadType = "x" }), "x", 1, ErrBadSignature, 0},
		{"empty keyid is not tried against every key", tamper(signed(b), func(e *Envelope) { e.Signatures[0].KeyID = "" }), pt, 1, ErrNoKeyID, 0},
		{"empty keyid ignored when threshold met", tamper(signed(a, b), func(e *Envelope) { e.Signatures[1].KeyID = "" }), pt, 1, nil, 1},
		{"no signatures", tamper(signed(a), func(e *Envelope) { e.Signatures = nil }), pt, 1, ErrNoSignatures, 0},
		{"sig not base64", tamper(signed(a), func(e *Envelope) { e.Signatures[0].Sig = "!!" }), pt, 1, ErrMalformed, 0},
		{"payload not base64", tamper(signed(a), func(e *Envelope) { e.Payload = "!!" }), pt, 1, ErrMalformed, 0},
		{"not json", []byte("{"), pt, 1, ErrMalformed, 0},
		{"trailing data", append(signed(a), []byte("{}")...), pt, 1, ErrMalformed, 0},
		{"unknown field", []byte(`{"payloadType":"x","payload":"eA==","signatures":[],"extra":1}`), pt, 1, ErrMalformed, 0},
		{"threshold above keyring", signed(a, b), pt, 3, ErrKeyringTooFew, 0},
		{"threshold zero", signed(a), pt, 0, ErrBadThreshold, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := ring.Verify(tt.env, tt.typ, tt.threshold)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if string(v.Payload) != string(payload) || len(v.Signers) != tt.signers {
					t.Fatalf("got payload %q signers %d", v.Payload, len(v.Signers))
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	keyPath, pubPath, err := GenerateKeyFiles(dir, "committee-a")
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(keyPath)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
	if _, _, err := GenerateKeyFiles(dir, "committee-a"); err == nil {
		t.Fatal("GenerateKeyFiles overwrote an existing key")
	}
	priv, err := LoadPrivateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := LoadKeyring(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	env, err := Sign(pt, []byte("x"), priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ring.Verify(env, pt, 1); err != nil {
		t.Fatalf("round trip: %v", err)
	}
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrivateKey(keyPath); err == nil {
		t.Fatal("LoadPrivateKey accepted a world-readable key")
	}
	if _, err := LoadKeyring(filepath.Join(dir, "missing.pub")); err == nil {
		t.Fatal("LoadKeyring accepted a missing file")
	}
	if _, err := LoadKeyring(keyPath); err == nil {
		t.Fatal("LoadKeyring accepted a private key as public")
	}
}

func FuzzParse(f *testing.F) {
	k := newKey(f)
	env, _ := Sign(pt, []byte("serial: 1\n"), k)
	f.Add(env)
	f.Add([]byte(`{"payloadType":"a","payload":"eA==","signatures":[{"keyid":"","sig":""}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Add([]byte(`{"payloadType":"a","payload":"eA==","signatures":null}`))
	f.Add([]byte(`{"payloadType":"a","payload":"eA==","signatures":{"keyid":"x"}}`))
	f.Add([]byte(`{"payloadType":"a","payload":"eA==","signatures":[{"keyid":"x","sig":"eA==","extra":1}]}`))
	f.Add([]byte(`{"payloadType":"a","payload":"eA==","signatures":[{"keyid":5}]}`))
	f.Add(hostile(f, 2<<10, []byte("serial: 1\n"), cycle(""), 0))
	f.Add(hostile(f, 0, []byte("serial: 1\n"), cycle(KeyID(pub(k)), "", "unknown"), MaxSignatures+1))
	f.Add(hostile(f, 0, []byte("serial: 1\n"), cycle(KeyID(pub(k))), MaxSignatures))
	var verifies int
	ring := counting(NewKeyring(pub(k)), &verifies)
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Parse(data)
		if err == nil && (e.PayloadType == "" || e.Payload == "") {
			t.Fatal("Parse accepted an envelope without type or payload")
		}
		if err == nil && len(e.Signatures) > MaxSignatures {
			t.Fatalf("Parse accepted %d signatures", len(e.Signatures))
		}
		verifies = 0
		v, err := ring.Verify(data, pt, 1)
		if err == nil && len(v.Signers) != 1 {
			t.Fatal("verified without a signer")
		}
		if verifies > ring.Len() {
			t.Fatalf("%d verifications with %d trusted keys", verifies, ring.Len())
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	k := newKey(b)
	payload := make([]byte, 64<<10)
	env, _ := Sign(pt, payload, k)
	ring := NewKeyring(pub(k))
	b.SetBytes(int64(len(env)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ring.Verify(env, pt, 1); err != nil {
			b.Fatal(err)
		}
	}
}
