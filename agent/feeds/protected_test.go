package feeds_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/feeds"
	"linkguard.dev/linkguard/policy/policytest"
	"linkguard.dev/linkguard/policy/roster"
	"linkguard.dev/linkguard/policy/roster/rostertest"
)

// desk is a device's command intake as the MQTT link runs it: a roster,
// the verifier with the dispatcher as its Authorizer, and the feed
// controller's handlers.
type desk struct {
	t       *testing.T
	p       *plant
	v       *command.Verifier
	d       command.Dispatcher
	members map[string]rostertest.Member
	n       int
}

func newDesk(t *testing.T, p *plant, protected int) *desk {
	k := &desk{t: t, p: p, members: map[string]rostertest.Member{}}
	spec := rostertest.Spec{Issued: p.now.Add(-24 * time.Hour), Thresholds: map[roster.Class]int{roster.ClassProtected: protected}}
	for _, m := range []rostertest.Member{
		rostertest.NewMember(t, "grid-1", roster.Grid), rostertest.NewMember(t, "grid-2", roster.Grid),
		rostertest.NewMember(t, "grid-3", roster.Grid), rostertest.NewMember(t, "tech", roster.Technician),
	} {
		k.members[m.ID] = m
		spec.Members = append(spec.Members, m)
	}
	if err := p.ctl.RegisterCommands(&k.d); err != nil {
		t.Fatal(err)
	}
	seen, err := command.OpenSeen("", p.now)
	if err != nil {
		t.Fatal(err)
	}
	k.v = &command.Verifier{Roster: rostertest.InForce(t, spec, roster.Thresholds{}), Authorizer: &k.d,
		Device: "dev-1", Site: "tachileik", Seen: seen, Now: p.clock}
	return k
}

// relay signs a relay.set of circuit with the keys of the named members (or
// with key, when given) and runs it through Verify and Dispatch.
func (k *desk) relay(id, circuit, state string, extra ed25519.PrivateKey, signers ...string) error {
	k.t.Helper()
	args, _ := json.Marshal(feeds.RelayOrder{Feed: k.p.spec.ID, Circuit: circuit, State: state, Override: true, Reason: "transformer fire"})
	var keys []ed25519.PrivateKey
	for _, s := range signers {
		keys = append(keys, k.members[s].Key)
	}
	if extra != nil {
		keys = append(keys, extra)
	}
	env, err := command.Sign(command.Payload{ID: id, Target: "dev-1", Issued: k.p.now, Expires: k.p.now.Add(time.Minute),
		Type: command.RelaySet, Args: args}, keys...)
	if err != nil {
		k.t.Fatal(err)
	}
	_, c, err := k.v.Verify(env)
	if err != nil {
		return err
	}
	_, err = k.d.Dispatch(context.Background(), c)
	return err
}

// TestProtectedCircuitNeedsKGridSignatures: the "hospital" circuit is never
// switched on one remote key; it is with the roster's k grid signatures, or
// with one while the local override file names it.
func TestProtectedCircuitNeedsKGridSignatures(t *testing.T) {
	file := filepath.Join(t.TempDir(), "override.json")
	p := newPlant(t, 21, "", defaultCircuits, func(s *feeds.Spec) { s.OverrideFile = file })
	k := newDesk(t, p, 3)
	hospital := p.relays["hospital"]

	if err := k.relay("h1", "hospital", feeds.StateOff, nil, "grid-1"); !errors.Is(err, command.ErrBelowThreshold) || !hospital.On() {
		t.Fatalf("one grid signature: %v (on=%v)", err, hospital.On())
	}
	if p.events.count(feeds.EventInterlock) != 1 {
		t.Fatal("the refusal left no interlock event")
	}
	if err := k.relay("h1", "hospital", feeds.StateOff, nil, "grid-1", "grid-2"); !errors.Is(err, command.ErrBelowThreshold) || !hospital.On() {
		t.Fatalf("two of three grid signatures: %v", err)
	}
	for _, tt := range []struct {
		name    string
		extra   ed25519.PrivateKey
		signers []string
		want    error
	}{
		{"technician", nil, []string{"tech"}, command.ErrRole},
		{"technician beside grid", nil, []string{"tech", "grid-1"}, command.ErrBelowThreshold},
		{"key outside the roster", policytest.Key(t), nil, command.ErrUntrusted},
	} {
		if err := k.relay("h-"+tt.name, "hospital", feeds.StateOff, tt.extra, tt.signers...); !errors.Is(err, tt.want) || !hospital.On() {
			t.Fatalf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	// The refused id was not remembered: cosigned to k, it is carried out.
	if err := k.relay("h1", "hospital", feeds.StateOff, nil, "grid-1", "grid-2", "grid-3"); err != nil || hospital.On() {
		t.Fatalf("k grid signatures: %v (on=%v)", err, hospital.On())
	}
	if p.events.count(feeds.EventProtectedOp) != 1 {
		t.Fatal("the protected operation was not reported")
	}

	// A technician at the device, through the override file, is the
	// second party: one grid signature then suffices.
	p.now = p.now.Add(3 * time.Minute) // min_off
	if err := os.WriteFile(file, []byte(`{"reason":"restore after the fire","allow_remote":["hospital"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	p.ctl.ReloadOverrides()
	if err := k.relay("h2", "hospital", feeds.StateOn, nil, "grid-1"); err != nil || !hospital.On() {
		t.Fatalf("one grid signature with the local override: %v (on=%v)", err, hospital.On())
	}
	// Even then a technician's key is not a grid key.
	p.now = p.now.Add(3 * time.Minute)
	if err := k.relay("h3", "hospital", feeds.StateOff, nil, "tech"); !errors.Is(err, command.ErrRole) || !hospital.On() {
		t.Fatalf("technician with the local override: %v", err)
	}
	// The file gone, one signature is refused again.
	os.Remove(file)
	p.ctl.ReloadOverrides()
	if err := k.relay("h4", "hospital", feeds.StateOff, nil, "grid-2"); !errors.Is(err, command.ErrBelowThreshold) || !hospital.On() {
		t.Fatalf("one grid signature after the override file went: %v", err)
	}
	// An ordinary circuit needs one grid signature.
	if err := k.relay("c1", "c1", feeds.StateOff, nil, "grid-3"); err != nil || p.relays["c1"].On() {
		t.Fatalf("relay.set of an ordinary circuit: %v", err)
	}
}

// The handler keeps the rule when no Authorizer was wired into the
// verifier: the command is verified, remembered, and refused at dispatch.
func TestProtectedRuleWithoutAuthorizer(t *testing.T) {
	p := newPlant(t, 22, "", defaultCircuits, nil)
	k := newDesk(t, p, 2)
	k.v.Authorizer = nil
	if err := k.relay("n1", "hospital", feeds.StateOff, nil, "grid-1"); !errors.Is(err, command.ErrBelowThreshold) || !p.relays["hospital"].On() {
		t.Fatalf("one grid signature at dispatch: %v", err)
	}
	if err := k.relay("n2", "hospital", feeds.StateOff, nil, "grid-1", "grid-2"); err != nil || p.relays["hospital"].On() {
		t.Fatalf("k grid signatures at dispatch: %v", err)
	}
}

func TestOverrideAllowRemote(t *testing.T) {
	known := func(id string) bool { return id == "hospital" || id == "c1" }
	if _, err := feeds.ParseOverride([]byte(`{"reason":"x","allow_remote":["morgue"]}`), known); !errors.Is(err, feeds.ErrUnknownCircuit) {
		t.Fatalf("unknown circuit: %v", err)
	}
	if _, err := feeds.ParseOverride([]byte(`{"reason":"x","circuits":{"hospital":"on"},"allow_remote":["hospital"]}`), known); !errors.Is(err, feeds.ErrBadOrder) {
		t.Fatalf("pinned and allowed: %v", err)
	}
	o, err := feeds.ParseOverride([]byte(`{"reason":"x","allow_remote":["hospital"]}`), known)
	if err != nil || len(o.AllowRemote) != 1 {
		t.Fatalf("allow_remote: %+v %v", o, err)
	}
}
