package console

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/agent/mqttlink/contract/contracttest"
	"linkguard.dev/linkguard/policy/policytest"
)

// TestConsoleBelievesOnlyTheDevice is the issue's impersonation, tried
// against a console that holds the fleet CA: r2, with its own valid
// certificate, publishes r1's state and a 3-event chain claiming to be r1
// on its own topic and (as if the ACL failed) on r1's; none of it reaches
// r1's state or history, each attempt is listed as unverified, and r1's
// own sealed reports are believed, its unsigned burst once its checkpoint
// arrives.
func TestConsoleBelievesOnlyTheDevice(t *testing.T) {
	ca, err := contracttest.NewCA("fleet")
	if err != nil {
		t.Fatal(err)
	}
	issue := func(dev string) *contract.Signer {
		id, err := ca.Issue(dev, time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		return id.Signer()
	}
	r1, r2 := issue("r1"), issue("r2")
	c, err := New(Options{Broker: "tcp://127.0.0.1:1", MaxEvents: 100, FleetCA: ca.Pool(),
		Trust: []ed25519.PublicKey{policytest.Key(t).Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	sealed := func(s *contract.Signer, kind string, v any) []byte {
		b, err := s.Seal(kind, mustJSON(t, v))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	state := func(dev, version string) contract.State {
		return contract.State{Online: true, Device: dev, Site: "vte", Kind: "router", Version: version, BootID: "b1", TS: time.Now()}
	}
	chain := func(s *contract.Signer, dev string, from, n int, prev string, signed map[int]bool) ([][]byte, string) {
		var out [][]byte
		for i := from; i < from+n; i++ {
			b := mustJSON(t, contract.Event{ID: fmt.Sprintf("%s%030d", dev, i), TS: time.Now(), Seq: uint64(i), Device: dev,
				BootID: "b1", Severity: "info", Type: "link.denied", Prev: prev, Fields: map[string]any{"site": "vte"}})
			if signed[i] && s != nil {
				b, _ = s.Seal(contract.KindEvents, b)
			}
			sum := sha256.Sum256(b)
			prev = hex.EncodeToString(sum[:])
			out = append(out, b)
		}
		return out, prev
	}

	c.Ingest("linkguard/v1/r1/state", sealed(r1, contract.KindState, state("r1", "1.0")))
	if d, ok := c.Device("r1"); !ok || !d.Verified || d.Version != "1.0" {
		t.Fatalf("r1's own sealed state: %+v %v", d, ok)
	}
	// r1's chain: 1 signed, 2..4 unsigned, 5 the checkpoint.
	evs, _ := chain(r1, "r1", 1, 5, contract.Genesis, map[int]bool{1: true, 5: true})
	for _, b := range evs[:4] {
		c.Ingest("linkguard/v1/r1/events", b)
	}
	if n := len(c.Events(EventFilter{Device: "r1"})); n != 1 {
		t.Fatalf("%d of r1's events shown before its checkpoint, want the signed first one", n)
	}
	c.Ingest("linkguard/v1/r1/events", evs[4])
	if n := len(c.Events(EventFilter{Device: "r1"})); n != 5 {
		t.Fatalf("%d of r1's events shown after its checkpoint, want 5", n)
	}

	// The attacks.
	forged, _ := chain(r2, "r1", 6, 3, strings.Repeat("0", 64), map[int]bool{8: true})
	for _, b := range forged {
		c.Ingest("linkguard/v1/r2/events", b) // on its own topic
		c.Ingest("linkguard/v1/r1/events", b) // and as if the ACL let it onto r1's
	}
	unsigned, _ := chain(nil, "r1", 6, 3, strings.Repeat("0", 64), nil)
	for _, b := range unsigned {
		c.Ingest("linkguard/v1/r1/events", b)
	}
	c.Ingest("linkguard/v1/r1/state", sealed(r2, contract.KindState, state("r1", "6.6.6")))
	c.Ingest("linkguard/v1/r1/state", mustJSON(t, state("r1", "6.6.6")))
	c.Ingest("linkguard/v1/r1/telemetry", mustJSON(t, contract.Telemetry{Device: "r1", BootID: "b1", Seq: 9, TS: time.Now()}))

	if n := len(c.Events(EventFilter{Device: "r1"})); n != 5 {
		t.Errorf("r1 shows %d events after the attacks, want its own 5", n)
	}
	if d, _ := c.Device("r1"); d.Version != "1.0" || !d.Verified {
		t.Errorf("r1's state was overwritten: %+v", d)
	}
	if _, ok := c.Device("r2"); ok {
		t.Error("r2 appeared from forged reports alone")
	}
	list, total := c.Unverified()
	reasons := map[string]int{}
	for _, u := range list {
		reasons[u.Reason]++
	}
	// 3 on r2's topic (another device), 3 on r1's (signature or pending),
	// the forged states and telemetry.
	if total < 7 || reasons[contract.ErrWrongDevice.Error()] < 4 || reasons[contract.ErrUnsigned.Error()] < 2 {
		t.Errorf("unverified: %d in all, by reason %v", total, reasons)
	}
	// The unsigned forgeries on r1's topic still wait: r1's next signed
	// event contradicts them and they are refused.
	next, _ := chain(r1, "r1", 6, 1, hashOf(evs[4]), map[int]bool{6: true})
	c.Ingest("linkguard/v1/r1/events", next[0])
	if n := len(c.Events(EventFilter{Device: "r1"})); n != 6 {
		t.Errorf("r1 shows %d events, want 6", n)
	}
}

func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
