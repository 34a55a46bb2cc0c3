package contract_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/agent/mqttlink/contract/contracttest"
	"linkguard.dev/linkguard/agent/mqttlink/contract/schema"
)

type fleet struct {
	ca       *contracttest.CA
	verifier *contract.ReportVerifier
}

func newFleet(t testing.TB) *fleet {
	t.Helper()
	ca, err := contracttest.NewCA("fleet")
	if err != nil {
		t.Fatal(err)
	}
	return &fleet{ca: ca, verifier: &contract.ReportVerifier{Roots: ca.Pool()}}
}

func (f *fleet) signer(t testing.TB, device string) *contract.Signer {
	t.Helper()
	id, err := f.ca.Issue(device, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return id.Signer()
}

func seal(t testing.TB, s *contract.Signer, kind string, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Seal(kind, b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sampleEvent(dev string, seq uint64, prev string) contract.Event {
	return contract.Event{ID: fmt.Sprintf("%032x", seq), TS: time.Unix(1700000000+int64(seq), 0).UTC(), Seq: seq,
		Device: dev, BootID: strings.Repeat("b", 32), Severity: "info", Type: "agent.started", Prev: prev}
}

func TestSealedReportsVerify(t *testing.T) {
	f := newFleet(t)
	r1 := f.signer(t, "r1")
	st := contract.State{Online: true, Device: "r1", Site: "s1", Kind: "router", Version: "1.0.0",
		BootID: strings.Repeat("a", 32), Capabilities: []string{"ping"}, TS: time.Now().UTC()}
	msg := seal(t, r1, contract.KindState, st)
	if err := schema.Validate(contract.SchemaState, msg); err != nil {
		t.Fatalf("a sealed state fails its schema: %v", err)
	}
	rep, err := f.verifier.Verify(contract.KindState, "r1", msg)
	if err != nil || rep.Device != "r1" {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	// A consumer decodes the sealed message like any other.
	var back contract.State
	if err := json.Unmarshal(msg, &back); err != nil || back.Device != "r1" || !back.Online {
		t.Fatalf("decode: %+v %v", back, err)
	}
	ev := seal(t, r1, contract.KindEvents, sampleEvent("r1", 1, contract.Genesis))
	if err := schema.Validate(contract.SchemaEvent, ev); err != nil {
		t.Fatalf("a sealed event fails its schema: %v", err)
	}
	tel := seal(t, r1, contract.KindTelemetry, contract.Telemetry{Device: "r1", BootID: strings.Repeat("a", 32), Seq: 1, TS: time.Now().UTC(), Agent: contract.AgentHealth{Goroutines: 3, RSSBytes: 1 << 20}})
	if err := schema.Validate(contract.SchemaTelemetry, tel); err != nil {
		t.Fatalf("sealed telemetry fails its schema: %v", err)
	}
	res := seal(t, r1, contract.KindResult, contract.Result{CmdID: "c1", OK: true, Device: "r1", TS: time.Now().UTC()})
	if err := schema.Validate(contract.SchemaResult, res); err != nil {
		t.Fatalf("a sealed result fails its schema: %v", err)
	}
	for kind, m := range map[string][]byte{contract.KindEvents: ev, contract.KindTelemetry: tel, contract.KindResult: res} {
		if _, err := f.verifier.Verify(kind, "r1", m); err != nil {
			t.Errorf("%s: %v", kind, err)
		}
	}

	// Ed25519 identities sign as well.
	_, ek, _ := ed25519.GenerateKey(rand.Reader)
	der := selfIssued(t, f, "r9", ek)
	es, err := contract.NewSigner(ek, der)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.verifier.Verify(contract.KindState, "r9", seal(t, es, contract.KindState, contract.State{Device: "r9"})); err != nil {
		t.Errorf("ed25519: %v", err)
	}
}

// selfIssued has the fleet CA certify an Ed25519 key (contracttest issues
// ECDSA keys only, like provisioning).
func selfIssued(t *testing.T, f *fleet, device string, k ed25519.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(99), Subject: pkix.Name{CommonName: device},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := f.ca.Sign(tmpl, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestForgedReports is what a device with its own valid certificate, or
// someone with none, tries: every one is refused with its reason.
func TestForgedReports(t *testing.T) {
	f := newFleet(t)
	r1, r2 := f.signer(t, "r1"), f.signer(t, "r2")
	other, err := contracttest.NewCA("not-the-fleet")
	if err != nil {
		t.Fatal(err)
	}
	strangerID, _ := other.Issue("r1", time.Time{}, time.Time{})
	expiredID, _ := f.ca.Issue("r1", time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	revokedID, _ := f.ca.Issue("r3", time.Time{}, time.Time{})
	f.verifier.Revoked = func(s *big.Int) bool { return s.Cmp(revokedID.Cert.SerialNumber) == 0 }

	good := seal(t, r1, contract.KindEvents, sampleEvent("r1", 1, contract.Genesis))
	tampered := bytes.Replace(good, []byte(`"agent.started"`), []byte(`"agent.stopped"`), 1)
	unsigned, _ := json.Marshal(sampleEvent("r1", 1, contract.Genesis))
	appended := append(bytes.Clone(bytes.TrimSuffix(good, []byte("}"))), []byte(`,"type":"x"}`)...)
	cases := []struct {
		name        string
		kind, topic string
		msg         []byte
		want        error
	}{
		{"r2 signs an event naming r1, on r1's topic", contract.KindEvents, "r1", seal(t, r2, contract.KindEvents, sampleEvent("r1", 1, contract.Genesis)), contract.ErrWrongDevice},
		{"r2 signs an event naming r1, on its own topic", contract.KindEvents, "r2", seal(t, r2, contract.KindEvents, sampleEvent("r1", 1, contract.Genesis)), contract.ErrWrongDevice},
		{"r1's genuine event replayed on r2's topic", contract.KindEvents, "r2", good, contract.ErrWrongDevice},
		{"an event replayed as state", contract.KindState, "r1", good, contract.ErrBadSignature},
		{"altered after signing", contract.KindEvents, "r1", tampered, contract.ErrBadSignature},
		{"unsigned", contract.KindEvents, "r1", unsigned, contract.ErrUnsigned},
		{"a member after the signature", contract.KindEvents, "r1", appended, contract.ErrUnsigned},
		{"a certificate from another CA", contract.KindEvents, "r1", seal(t, strangerID.Signer(), contract.KindEvents, sampleEvent("r1", 1, contract.Genesis)), contract.ErrUntrustedCert},
		{"an expired certificate", contract.KindEvents, "r1", seal(t, expiredID.Signer(), contract.KindEvents, sampleEvent("r1", 1, contract.Genesis)), contract.ErrUntrustedCert},
		{"a revoked certificate", contract.KindEvents, "r3", seal(t, revokedID.Signer(), contract.KindEvents, sampleEvent("r3", 1, contract.Genesis)), contract.ErrRevokedCert},
		{"over the size cap", contract.KindEvents, "r1", append(bytes.Repeat([]byte(" "), contract.MaxReportBytes), good...), contract.ErrTooLarge},
		{"garbage", contract.KindEvents, "r1", []byte(`{"device":"r1","cert":"!!","sig":"AAAA"}`), contract.ErrMalformed},
	}
	for _, c := range cases {
		_, err := f.verifier.Verify(c.kind, c.topic, c.msg)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	// A signer refuses a key that is not its certificate's.
	id, _ := f.ca.Issue("r1", time.Time{}, time.Time{})
	if _, err := contract.NewSigner(revokedID.Key, id.CertDER); err == nil {
		t.Error("a signer took a key its certificate does not name")
	}
}

func chainOf(t *testing.T, s *contract.Signer, dev string, n int, signedAt map[int]bool) [][]byte {
	t.Helper()
	prev := contract.Genesis
	var out [][]byte
	for i := 1; i <= n; i++ {
		b, _ := json.Marshal(sampleEvent(dev, uint64(i), prev))
		if signedAt[i] {
			var err error
			if b, err = s.Seal(contract.KindEvents, b); err != nil {
				t.Fatal(err)
			}
		}
		sum := sha256.Sum256(b)
		prev = hex.EncodeToString(sum[:])
		out = append(out, b)
	}
	return out
}

func TestChainTrackerVouches(t *testing.T) {
	f := newFleet(t)
	r1 := f.signer(t, "r1")
	evs := chainOf(t, r1, "r1", 6, map[int]bool{1: true, 6: true})
	tr := &contract.ChainTracker{}
	add := func(raw []byte) contract.Outcome {
		var ev contract.Event
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		_, err := f.verifier.Verify(contract.KindEvents, "r1", raw)
		return tr.Add("r1", raw, ev, err == nil)
	}
	if o := add(evs[0]); len(o.Verified) != 1 {
		t.Fatalf("a signed first event: %+v", o)
	}
	// 2..5 wait, arriving out of order and twice.
	for _, i := range []int{2, 4, 3, 3, 5} {
		if o := add(evs[i-1]); len(o.Verified) != 0 || len(o.Rejected) != 0 {
			t.Fatalf("unsigned event %d decided before its checkpoint: %+v", i, o)
		}
	}
	if tr.Pending("r1") != 4 {
		t.Fatalf("pending %d, want 4", tr.Pending("r1"))
	}
	o := add(evs[5])
	if len(o.Verified) != 5 || o.Verified[0].Event.Seq != 2 || o.Verified[4].Event.Seq != 6 {
		t.Fatalf("the checkpoint vouched for %+v, want seq 2..6", o.Verified)
	}
	if o := add(evs[3]); !o.Duplicate {
		t.Fatalf("a redelivery after vouching: %+v", o)
	}

	// A forged unsigned event slipped in the middle of a later burst is
	// contradicted by the next signed event and rejected.
	evs = chainOf(t, r1, "r1", 9, map[int]bool{1: true, 6: true, 9: true})
	tr = &contract.ChainTracker{}
	for i := 0; i < 6; i++ {
		add(evs[i])
	}
	forged, _ := json.Marshal(sampleEvent("r1", 8, strings.Repeat("f", 64)))
	if o := add(forged); len(o.Verified) != 0 {
		t.Fatalf("a forged event was vouched for: %+v", o)
	}
	add(evs[6])
	o = add(evs[8])
	if len(o.Rejected) != 1 || o.Rejected[0].Event.Prev != strings.Repeat("f", 64) {
		t.Fatalf("forged event not rejected: %+v", o)
	}
	if len(o.Verified) != 1 || o.Verified[0].Event.Seq != 9 {
		t.Fatalf("verified %+v, want 9 alone (8 is missing)", o.Verified)
	}
	if o := add(evs[7]); len(o.Verified) != 2 {
		t.Fatalf("the genuine 8 arriving late vouches 7 and 8: %+v", o)
	}

	// Waiting events are bounded.
	tr = &contract.ChainTracker{MaxPending: 3}
	evs = chainOf(t, r1, "r1", 6, nil)
	rejected := 0
	for _, e := range evs {
		rejected += len(add(e).Rejected)
	}
	if tr.Pending("r1") != 3 || rejected != 3 {
		t.Fatalf("pending %d rejected %d, want 3 and 3", tr.Pending("r1"), rejected)
	}
}

// TestAuditSignedChains is the issue's case: a device publishes, on its own
// topic, a chain that claims to be another device. Without signatures the
// audit could only judge the chain; with the fleet CA it keeps it out.
func TestAuditSignedChains(t *testing.T) {
	f := newFleet(t)
	r1, r2 := f.signer(t, "r1"), f.signer(t, "r2")
	var buf bytes.Buffer
	line := func(topic string, b []byte) {
		rec, _ := json.Marshal(contract.WatchRecord{Topic: topic, Payload: b})
		buf.Write(append(rec, '\n'))
	}
	for _, b := range chainOf(t, r1, "r1", 5, map[int]bool{1: true, 5: true}) {
		line("linkguard/v1/r1/events", b)
	}
	// r2's forgery: a 3-event chain naming r1, unsigned and signed by r2.
	for _, b := range chainOf(t, r2, "r1", 3, map[int]bool{3: true}) {
		line("linkguard/v1/r2/events", b)
	}
	// The same forgery as bare events (mosquitto_sub without topics).
	for _, b := range chainOf(t, r2, "r1", 3, map[int]bool{3: true}) {
		buf.Write(append(b, '\n'))
	}
	// r3's chain whose tail went unsigned (no checkpoint).
	r3 := f.signer(t, "r3")
	for _, b := range chainOf(t, r3, "r3", 4, map[int]bool{2: true}) {
		line("linkguard/v1/r3/events", b)
	}
	reps, err := contract.AuditWith(bytes.NewReader(buf.Bytes()), contract.AuditOptions{Verifier: f.verifier})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*contract.ChainReport{}
	for _, r := range reps {
		got[r.Device] = r
	}
	if r := got["r1"]; r == nil || r.Events != 5 || r.Signed != 2 || r.Vouched != 5 {
		t.Fatalf("r1: %+v", r)
	}
	if r := got["r1"]; len(r.Problems) < 4 {
		t.Errorf("the forged chain under r1 raised %d problems, want one per forged event seen by topic or signature: %q", len(r.Problems), r.Problems)
	}
	if r := got["r3"]; r == nil || r.OK() || r.Vouched != 2 {
		t.Errorf("r3's unvouched tail: %+v", r)
	}
	// Without the CA the audit still judges chains only, as before.
	reps, _ = contract.Audit(bytes.NewReader(buf.Bytes()))
	for _, r := range reps {
		if r.Device == "r3" && !r.OK() {
			t.Errorf("plain audit of r3: %q", r.Problems)
		}
	}
}

func FuzzVerifyReport(f *testing.F) {
	fl := newFleet(f)
	s := fl.signer(f, "r1")
	f.Add([]byte(`{"device":"r1"}`))
	b, _ := json.Marshal(sampleEvent("r1", 1, contract.Genesis))
	sealed, _ := s.Seal(contract.KindEvents, b)
	f.Add(sealed)
	f.Add([]byte(`,"sig":"`))
	f.Add([]byte(`{"sig":"AA=="}`))
	f.Fuzz(func(t *testing.T, msg []byte) {
		if body, _, ok := contract.Unsealed(msg); ok && !bytes.HasSuffix(body, []byte("}")) {
			t.Fatalf("body %q does not close the object", body)
		}
		_, err := fl.verifier.Verify(contract.KindEvents, "r1", msg)
		if err == nil && !bytes.Equal(msg, sealed) {
			// Only bytes the device signed verify.
			var ev contract.Event
			if json.Unmarshal(msg, &ev) != nil || ev.Device != "r1" {
				t.Fatalf("verified %q", msg)
			}
		}
	})
}

// BenchmarkSealEvent is what one signed event costs the device (ECDSA
// P-256, the provisioned key); run it under qemu for the ARM figures.
func BenchmarkSealEvent(b *testing.B) {
	f := newFleet(b)
	s := f.signer(b, "r1")
	msg, _ := json.Marshal(sampleEvent("r1", 1, contract.Genesis))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Seal(contract.KindEvents, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyReport is the consumer's cost per report, its device
// certificate cached.
func BenchmarkVerifyReport(b *testing.B) {
	f := newFleet(b)
	s := f.signer(b, "r1")
	msg := seal(b, s, contract.KindEvents, sampleEvent("r1", 1, contract.Genesis))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.verifier.Verify(contract.KindEvents, "r1", msg); err != nil {
			b.Fatal(err)
		}
	}
}
