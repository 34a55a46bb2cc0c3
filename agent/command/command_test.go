package command

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/policy/dsse"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func key(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func setup(t testing.TB, dir string) (*Verifier, ed25519.PrivateKey) {
	op := key(t)
	seen, err := OpenSeen(filepath.Join(dir, "seen.json"), t0)
	if err != nil {
		t.Fatal(err)
	}
	return &Verifier{
		Keys:   dsse.NewKeyring(op.Public().(ed25519.PublicKey)),
		Device: "dev-1", Site: "tachileik",
		Seen: seen, Now: func() time.Time { return t0 },
	}, op
}

func cmd(id, target string, issued, expires time.Time) Payload {
	return Payload{ID: id, Target: target, Issued: issued, Expires: expires, Type: Ping, Args: json.RawMessage(`{"x":1}`)}
}

func sign(t testing.TB, p Payload, k ed25519.PrivateKey) []byte {
	env, err := Sign(p, k)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestVerify(t *testing.T) {
	v, op := setup(t, t.TempDir())
	stranger := key(t)
	ok := func(id, target string) []byte { return sign(t, cmd(id, target, t0, t0.Add(time.Minute)), op) }
	tampered := func() []byte {
		env := ok("t1", "dev-1")
		var e dsse.Envelope
		json.Unmarshal(env, &e)
		p := cmd("t1", "all", t0, t0.Add(time.Minute))
		b, _ := json.Marshal(p)
		e.Payload = b64(b)
		out, _ := json.Marshal(e)
		return out
	}
	// resigned rewrites the signatures of a valid command.
	resigned := func(id string, f func(e *dsse.Envelope)) []byte {
		var e dsse.Envelope
		json.Unmarshal(ok(id, "dev-1"), &e)
		f(&e)
		out, _ := json.Marshal(e)
		return out
	}
	deep := []byte(strings.Repeat("[", 100000) + strings.Repeat("]", 100000))
	tests := []struct {
		name string
		msg  []byte
		want error
	}{
		{"device", ok("c1", "dev-1"), nil},
		{"site", ok("c2", "site:tachileik"), nil},
		{"all", ok("c3", "all"), nil},
		{"replay", ok("c1", "dev-1"), ErrReplay},
		{"other device", ok("c4", "dev-2"), ErrWrongTarget},
		{"other site", ok("c5", "site:mae-sai"), ErrWrongTarget},
		{"untrusted key", sign(t, cmd("c6", "dev-1", t0, t0.Add(time.Minute)), stranger), ErrUntrusted},
		{"tampered payload", tampered(), ErrBadSignature},
		{"expired", sign(t, cmd("c7", "dev-1", t0.Add(-time.Hour), t0.Add(-time.Second)), op), ErrExpired},
		{"from the future", sign(t, cmd("c8", "dev-1", t0.Add(10*time.Minute), t0.Add(time.Hour)), op), ErrFuture},
		{"small skew ok", sign(t, cmd("c9", "dev-1", t0.Add(time.Minute), t0.Add(time.Hour)), op), nil},
		{"lifetime", sign(t, cmd("c10", "dev-1", t0, t0.Add(48*time.Hour)), op), ErrLifetime},
		{"unsigned json", []byte(`{"id":"x","type":"relay.set"}`), ErrMalformed},
		{"binary", []byte{0xff, 0xfe, 0, 1, 2}, ErrMalformed},
		{"huge", bytes.Repeat([]byte("a"), MaxMessage+1), ErrTooLarge},
		{"empty keyid", resigned("k1", func(e *dsse.Envelope) { e.Signatures[0].KeyID = "" }), ErrUntrusted},
		{"too many signatures", resigned("k2", func(e *dsse.Envelope) {
			for len(e.Signatures) <= dsse.MaxSignatures {
				e.Signatures = append(e.Signatures, e.Signatures[0])
			}
		}), ErrMalformed},
		{"repeated signature counted once", resigned("k3", func(e *dsse.Envelope) { e.Signatures = append(e.Signatures, e.Signatures[0]) }), nil},
		{"deep", deep[:MaxMessage], ErrMalformed},
		{"empty", nil, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c, err := v.Verify(tt.msg)
			if tt.want == nil {
				if err != nil || c == nil {
					t.Fatalf("Verify: %v", err)
				}
				if len(c.Signers) != 1 {
					t.Fatalf("signers %v", c.Signers)
				}
				return
			}
			if !errors.Is(err, tt.want) || c != nil {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func b64(b []byte) string {
	env, _ := json.Marshal(b)
	var s string
	json.Unmarshal(env, &s)
	return s
}

func TestReplayMemorySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	v, op := setup(t, dir)
	msg := sign(t, cmd("once", "dev-1", t0, t0.Add(time.Hour)), op)
	if _, _, err := v.Verify(msg); err != nil {
		t.Fatal(err)
	}
	seen, err := OpenSeen(filepath.Join(dir, "seen.json"), t0)
	if err != nil {
		t.Fatal(err)
	}
	v.Seen = seen
	if _, _, err := v.Verify(msg); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay after restart: %v", err)
	}
	// After expiry the id is forgotten (and the command refused as expired).
	later, _ := OpenSeen(filepath.Join(dir, "seen.json"), t0.Add(2*time.Hour))
	if later.Len() != 0 {
		t.Fatalf("expired ids kept: %d", later.Len())
	}
}

// The intake refuses on arrival with CheckSize; the refusal must be the one
// Verify gives, so results and events read the same either way.
func TestCheckSizeIsVerifysRefusal(t *testing.T) {
	v, _ := setup(t, t.TempDir())
	huge := bytes.Repeat([]byte("a"), MaxMessage+1)
	_, _, err := v.Verify(huge)
	if got := CheckSize(len(huge)); got == nil || got.Error() != err.Error() || ReasonOf(got) != ReasonTooLarge {
		t.Fatalf("CheckSize = %v, Verify = %v", got, err)
	}
	if err := CheckSize(MaxMessage); err != nil {
		t.Fatalf("CheckSize(MaxMessage) = %v", err)
	}
}

func TestRefusedResultNamesID(t *testing.T) {
	v, _ := setup(t, t.TempDir())
	id, _, err := v.Verify(sign(t, cmd("who", "dev-1", t0, t0.Add(time.Minute)), key(t)))
	if id != "who" || ReasonOf(err) != ReasonUntrusted {
		t.Fatalf("id %q reason %q", id, ReasonOf(err))
	}
}

func TestDispatcher(t *testing.T) {
	var d Dispatcher
	calls := 0
	if err := d.Register(Ping, HandlerFunc(func(ctx context.Context, c *Command) (any, error) {
		calls++
		var a struct{ X int }
		return a.X, c.DecodeArgs(&a)
	})); err != nil {
		t.Fatal(err)
	}
	if err := d.Register(Ping, HandlerFunc(nil)); err == nil {
		t.Fatal("second handler for one type accepted")
	}
	if _, err := d.Dispatch(context.Background(), &Command{Payload: Payload{Type: "nope"}}); ReasonOf(err) != ReasonUnknownType {
		t.Fatalf("unknown type: %v", err)
	}
	_, err := d.Dispatch(context.Background(), &Command{Payload: Payload{Type: Ping, Args: json.RawMessage(`{"bogus":1}`)}})
	if err == nil || calls != 1 {
		t.Fatalf("strict args: %v, calls %d", err, calls)
	}
	if got := d.Types(); len(got) != 1 || got[0] != Ping {
		t.Fatalf("Types = %v", got)
	}
}

func FuzzVerify(f *testing.F) {
	v, op := setup(f, f.TempDir())
	f.Add(sign(f, cmd("f1", "dev-1", t0, t0.Add(time.Minute)), op))
	f.Add([]byte(`{"payloadType":"application/vnd.linkguard.command+json","payload":"e30=","signatures":[{"keyid":"","sig":""}]}`))
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`))
	f.Add([]byte("\xff\xfe"))
	f.Add([]byte(`{"payloadType":"application/vnd.linkguard.command+json","payload":"e30=","signatures":[` +
		strings.Repeat(`{"keyid":"","sig":""},`, dsse.MaxSignatures) + `{"keyid":"","sig":""}]}`))
	v.Seen, _ = OpenSeen("", t0)
	f.Fuzz(func(t *testing.T, msg []byte) {
		_, c, err := v.Verify(msg)
		if err == nil && (c == nil || len(c.Signers) == 0) {
			t.Fatal("accepted without a signer")
		}
		if err != nil && c != nil {
			t.Fatal("refused but returned a command")
		}
	})
}
