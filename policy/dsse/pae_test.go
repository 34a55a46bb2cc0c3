package dsse

import (
	"bytes"
	"encoding/json"
	"testing"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// FuzzMatchesSecuresystemslib holds the envelope, its payload decoding and
// PAE to go-securesystemslib's dsse package, which they replace on the
// device (envelope.go says why).
func FuzzMatchesSecuresystemslib(f *testing.F) {
	f.Add("application/vnd.linkguard.policy+json", []byte(`{"serial":1}`), "eyJzZXJpYWwiOjF9", "k", "c2ln")
	f.Add("", []byte{}, "", "", "")
	f.Add("application/vnd.x+json", []byte("a b\x00c"), "-_-_", "id", "!!")
	f.Add("t", []byte("x"), "YWJj=", "", "YQ")
	f.Fuzz(func(t *testing.T, typ string, payload []byte, b64, keyID, sig string) {
		if got, want := PAE(typ, payload), ssldsse.PAE(typ, payload); !bytes.Equal(got, want) {
			t.Fatalf("PAE %q, securesystemslib %q", got, want)
		}
		mine := Envelope{PayloadType: typ, Payload: b64, Signatures: []Signature{{KeyID: keyID, Sig: sig}}}
		theirs := ssldsse.Envelope{PayloadType: typ, Payload: b64, Signatures: []ssldsse.Signature{{KeyID: keyID, Sig: sig}}}
		got, gerr := mine.DecodeB64Payload()
		want, werr := theirs.DecodeB64Payload()
		if (gerr == nil) != (werr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("payload %q: %q, %v; securesystemslib %q, %v", b64, got, gerr, want, werr)
		}
		mj, _ := json.Marshal(mine)
		tj, _ := json.Marshal(theirs)
		if !bytes.Equal(mj, tj) {
			t.Fatalf("JSON %s, securesystemslib %s", mj, tj)
		}
		var back Envelope
		var theirsBack ssldsse.Envelope
		if err := json.Unmarshal(tj, &back); err != nil || json.Unmarshal(tj, &theirsBack) != nil ||
			back.PayloadType != theirsBack.PayloadType || back.Payload != theirsBack.Payload ||
			len(back.Signatures) != 1 || back.Signatures[0] != Signature(theirsBack.Signatures[0]) {
			t.Fatalf("securesystemslib's JSON read back as %+v, %v", back, err)
		}
	})
}
