package command

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/roster"
	"linkguard.dev/linkguard/policy/roster/rostertest"
)

// precheckCases are messages an intake meets, with the reason Precheck
// (and Verify) must give, or "" for one that passes the pre-check.
func precheckCases(t testing.TB, op, stranger ed25519.PrivateKey) []struct {
	name string
	msg  []byte
	want Reason
} {
	good := sign(t, cmd("p1", "dev-1", t0, t0.Add(time.Minute)), op)
	var e dsse.Envelope
	if err := json.Unmarshal(good, &e); err != nil {
		t.Fatal(err)
	}
	with := func(f func(e *dsse.Envelope)) []byte {
		c := e
		c.Signatures = append([]dsse.Signature(nil), e.Signatures...)
		f(&c)
		out, _ := json.Marshal(c)
		return out
	}
	badSig := with(func(e *dsse.Envelope) {
		e.Signatures = []dsse.Signature{{KeyID: e.Signatures[0].KeyID, Sig: base64.StdEncoding.EncodeToString(make([]byte, 64))}}
	})
	known := e.Signatures[0].KeyID
	sig := e.Signatures[0].Sig
	env := func(body string) []byte { return []byte(body) }
	typ := `"payloadType":"` + PayloadType + `"`
	return []struct {
		name string
		msg  []byte
		want Reason
	}{
		{"valid", good, ""},
		{"compact", with(func(*dsse.Envelope) {}), ""},
		{"known key, bad signature", badSig, ""},
		{"known key beside a stranger", with(func(e *dsse.Envelope) {
			e.Signatures = append([]dsse.Signature{{KeyID: strings.Repeat("ab", 32), Sig: "AAAA"}}, e.Signatures...)
		}), ""},
		{"trailing brace", append(with(func(*dsse.Envelope) {}), '}'), ""},
		{"url base64 payload", env(`{` + typ + `,"payload":"e30_","signatures":[{"keyid":"` + known + `","sig":"x"}]}`), ""},
		{"stranger", sign(t, cmd("p2", "dev-1", t0, t0.Add(time.Minute)), stranger), ReasonUntrusted},
		{"empty keyid", with(func(e *dsse.Envelope) { e.Signatures[0].KeyID = "" }), ReasonUntrusted},
		{"null signature", env(`{` + typ + `,"payload":"e30=","signatures":[null]}`), ReasonUntrusted},
		{"no signatures", with(func(e *dsse.Envelope) { e.Signatures = nil }), ReasonBadSignature},
		{"empty signatures", env(`{` + typ + `,"payload":"e30=","signatures":[]}`), ReasonBadSignature},
		{"too many signatures", with(func(e *dsse.Envelope) {
			for len(e.Signatures) <= dsse.MaxSignatures {
				e.Signatures = append(e.Signatures, e.Signatures[0])
			}
		}), ReasonMalformed},
		{"wrong payload type", with(func(e *dsse.Envelope) { e.PayloadType = "application/vnd.in-toto+json" }), ReasonMalformed},
		{"payload not base64", with(func(e *dsse.Envelope) { e.Payload = "not base64!" }), ReasonMalformed},
		{"payload missing", with(func(e *dsse.Envelope) { e.Payload = "" }), ReasonMalformed},
		{"unknown field", env(`{` + typ + `,"payload":"e30=","signatures":[{"keyid":"` + known + `","sig":"` + sig + `"}],"x":1}`), ReasonMalformed},
		{"unknown signature field", env(`{` + typ + `,"payload":"e30=","signatures":[{"keyid":"` + known + `","why":1}]}`), ReasonMalformed},
		{"keyid a number", env(`{` + typ + `,"payload":"e30=","signatures":[{"keyid":1}]}`), ReasonMalformed},
		{"data after", append(with(func(*dsse.Envelope) {}), []byte(" {}")...), ReasonMalformed},
		{"NUL after", append(with(func(*dsse.Envelope) {}), 0), ReasonMalformed},
		{"not JSON", []byte("ping please"), ReasonMalformed},
		{"JSON array", []byte(`[1,2,3]`), ReasonMalformed},
		{"null", []byte(`null`), ReasonMalformed},
		{"empty", nil, ReasonMalformed},
		{"bad syntax", env(`{` + typ + `,"payload":"e30=","signatures":[{"keyid":"` + known + `",}]}`), ReasonMalformed},
		{"binary", []byte{0xff, 0xfe, 0, 1}, ReasonMalformed},
		{"deep", []byte(strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)), ReasonMalformed},
		{"too large", bytes.Repeat([]byte(" "), MaxMessage+1), ReasonTooLarge},
		// What the walk leaves to dsse's parser, with the same verdicts.
		{"escaped name", env(`{"payload\u0054ype":"` + PayloadType + `","payload":"e30=","signatures":[{"keyid":"` + known + `","sig":"x"}]}`), ""},
		{"escaped keyid of a stranger", env(`{` + typ + `,"payload":"e30=","signatures":[{"keyid":"\u0061b","sig":"x"}]}`), ReasonUntrusted},
		{"name in capitals", env(`{"PAYLOADTYPE":"` + PayloadType + `","payload":"e30=","signatures":[{"KEYID":"` + known + `"}]}`), ""},
		{"repeated payloadType", env(`{"payloadType":"x",` + typ + `,"payload":"e30=","signatures":[{"keyid":"` + known + `"}]}`), ""},
		{"repeated signatures", env(`{` + typ + `,"payload":"e30=","signatures":[],"signatures":[{"keyid":"` + known + `"}]}`), ""},
		{"payload with an escaped newline", env(`{` + typ + `,"payload":"e30=\n","signatures":[{"keyid":"` + known + `"}]}`), ""},
	}
}

func TestPrecheck(t *testing.T) {
	v, op := setup(t, t.TempDir())
	stranger := key(t)
	knownID := dsse.KeyID(op.Public().(ed25519.PublicKey))
	known := func(id string) bool { return id == knownID }
	for _, tt := range precheckCases(t, op, stranger) {
		t.Run(tt.name, func(t *testing.T) {
			err := Precheck(tt.msg, known)
			if got := reasonOrEmpty(err); got != tt.want {
				t.Fatalf("Precheck = %v, want reason %q", err, tt.want)
			}
			if _, derr := precheckDecodedAll(tt.msg, known); reasonOrEmpty(derr) != tt.want {
				t.Fatalf("dsse's parser says %v, want reason %q", derr, tt.want)
			}
			signer, err := v.Precheck(tt.msg)
			if reasonOrEmpty(err) != tt.want || (err == nil) != (signer == knownID) {
				t.Fatalf("Verifier.Precheck = %q, %v", signer, err)
			}
			if tt.want == "" {
				return
			}
			if _, c, verr := v.Verify(tt.msg); c != nil || ReasonOf(verr) != tt.want {
				t.Fatalf("Verify = %v, but Precheck said %q", verr, tt.want)
			}
		})
	}
}

func reasonOrEmpty(err error) Reason {
	if err == nil {
		return ""
	}
	return ReasonOf(err)
}

// precheckDecodedAll is the pre-check with dsse's parser alone.
func precheckDecodedAll(msg []byte, known func(string) bool) ([]byte, error) {
	if err := precheckText(msg); err != nil {
		return nil, err
	}
	return precheckDecoded(msg, known)
}

// TestPrecheckJudge: the Verifier's pre-check asks who may sign now, and
// refuses everything when Verify would.
func TestPrecheckJudge(t *testing.T) {
	c := newCrew(t)
	s := c.spec()
	s.Expires = t0.Add(time.Hour)
	v := rosterVerifier(t, rostertest.InForce(t, s, roster.Thresholds{}), roster.Thresholds{})
	tech := signBy(t, typed("j1", Ping), c.keys("tech")...)
	if signer, err := v.Precheck(tech); err != nil || signer != dsse.KeyID(c["tech"].Key.Public().(ed25519.PublicKey)) {
		t.Fatalf("roster member: %q, %v", signer, err)
	}
	if _, err := v.Precheck(signBy(t, typed("j2", Ping), key(t))); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("stranger under a roster: %v", err)
	}
	later := t0.Add(2 * time.Hour)
	v.Now = func() time.Time { return later }
	if _, err := v.Precheck(tech); !errors.Is(err, ErrRosterExpired) {
		t.Fatalf("expired roster: %v", err)
	}
	none := rosterVerifier(t, &holder{}, roster.Thresholds{})
	if _, err := none.Precheck(tech); !errors.Is(err, ErrNoRoster) {
		t.Fatalf("no roster, no keys: %v", err)
	}
	if _, _, err := none.Verify(tech); !errors.Is(err, ErrNoRoster) {
		t.Fatalf("Verify without roster or keys: %v", err)
	}
}

// TestPrecheckNoAllocs: refusing junk and passing a command cost no
// allocation.
func TestPrecheckNoAllocs(t *testing.T) {
	_, op := setup(t, t.TempDir())
	knownID := dsse.KeyID(op.Public().(ed25519.PublicKey))
	set := map[string]bool{knownID: true}
	known := func(id string) bool { return set[id] }
	for _, tt := range precheckCases(t, op, key(t)) {
		if strings.Contains(tt.name, "escape") || strings.Contains(tt.name, "capitals") || strings.Contains(tt.name, "repeated") {
			continue // left to dsse's parser, which allocates
		}
		if n := testing.AllocsPerRun(100, func() { Precheck(tt.msg, known) }); n != 0 {
			t.Errorf("%s: %.0f allocations", tt.name, n)
		}
	}
}

// FuzzPrecheck holds the walk to dsse's parser and the pre-check to
// Verify: the same reason as a pre-check by dsse's parser, never a refusal
// of what Verify accepts, and a refusal's reason is Verify's.
func FuzzPrecheck(f *testing.F) {
	v, op := setup(f, f.TempDir())
	v.Seen, _ = OpenSeen("", t0)
	for _, tt := range precheckCases(f, op, key(f)) {
		f.Add(tt.msg)
	}
	knownID := dsse.KeyID(op.Public().(ed25519.PublicKey))
	known := func(id string) bool { return id == knownID }
	f.Fuzz(func(t *testing.T, msg []byte) {
		err := Precheck(msg, known)
		_, ref := precheckDecodedAll(msg, known)
		if reasonOrEmpty(err) != reasonOrEmpty(ref) {
			t.Fatalf("walk says %v, dsse's parser %v", err, ref)
		}
		_, c, verr := v.Verify(msg)
		switch {
		case c != nil && err != nil:
			t.Fatalf("Verify accepts what Precheck refuses: %v", err)
		case err != nil && ReasonOf(verr) != ReasonOf(err):
			t.Fatalf("Precheck: %v; Verify: %v", err, verr)
		}
	})
}

// BenchmarkPrecheck: what the intake spends per message on paho's
// goroutine, beside Verify's cost for the same messages.
func BenchmarkPrecheck(b *testing.B) {
	v, op := setup(b, b.TempDir())
	knownID := dsse.KeyID(op.Public().(ed25519.PublicKey))
	set := map[string]bool{knownID: true}
	known := func(id string) bool { return set[id] }
	cases := precheckCases(b, op, key(b))
	pick := map[string]bool{"valid": true, "known key, bad signature": true, "stranger": true, "not JSON": true,
		"deep": true, "too large": true, "escaped keyid of a stranger": true}
	for _, tt := range cases {
		if !pick[tt.name] {
			continue
		}
		b.Run(strings.ReplaceAll(tt.name, " ", "_"), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tt.msg)))
			for b.Loop() {
				Precheck(tt.msg, known)
			}
		})
	}
	big := bigJunk(b, op)
	b.Run("64KiB_known_key", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(big)))
		for b.Loop() {
			Precheck(big, known)
		}
	})
	b.Run("verifier/valid", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v.Precheck(cases[0].msg)
		}
	})
	b.Run("verify/known_key,_bad_signature", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v.Verify(cases[2].msg)
		}
	})
}

// bigJunk is an envelope near MaxMessage naming a known key: the most a
// pre-checked message can cost.
func bigJunk(t testing.TB, op ed25519.PrivateKey) []byte {
	id := dsse.KeyID(op.Public().(ed25519.PublicKey))
	pad := strings.Repeat("A", MaxMessage-300)
	msg := []byte(`{"payloadType":"` + PayloadType + `","payload":"` + pad + `","signatures":[{"keyid":"` + id + `","sig":"AAAA"}]}`)
	if len(msg) > MaxMessage {
		t.Fatalf("%d bytes", len(msg))
	}
	return msg
}
