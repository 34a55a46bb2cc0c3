package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/roster"
)

// hand copies a file to m's directory, as a mail or a USB stick would, and
// returns the copy's path.
func hand(t *testing.T, m member, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return m.copyOf(t, filepath.Base(path), string(data))
}

// publicOf is m's public key as a roster lists it.
func publicOf(t *testing.T, m member) string {
	t.Helper()
	pub, err := dsse.LoadPublicKey(m.pub)
	if err != nil {
		t.Fatal(err)
	}
	return roster.FormatKey(pub)
}

// rosterText is a roster valid from now for 30 days, listing each person
// with the roles given by rolesOf.
func rosterText(t *testing.T, serial int, thresholds string, rolesOf map[string]string, people ...member) string {
	return rosterFrom(t, time.Now(), serial, thresholds, rolesOf, people...)
}

// rosterFrom is rosterText issued at issued.
func rosterFrom(t *testing.T, issued time.Time, serial int, thresholds string, rolesOf map[string]string, people ...member) string {
	issued = issued.UTC().Truncate(time.Second)
	s := fmt.Sprintf("serial: %d\nissued: %s\nexpires: %s\n", serial, issued.Format(time.RFC3339), issued.AddDate(0, 0, 30).Format(time.RFC3339))
	if thresholds != "" {
		s += "thresholds: " + thresholds + "\n"
	}
	s += "operators:\n"
	for _, p := range people {
		s += fmt.Sprintf("  - {id: %s, name: %q, roles: [%s], keys: [%s]}\n", p.name, "Operator "+p.name, rolesOf[p.name], publicOf(t, p))
	}
	return s
}

// TestRosterSignedApart: three committee members in separate key
// directories sign one roster, with sign then cosign, handing the envelope
// on; status says who is missing and exits 0 only once the threshold is met;
// a device holding the three keys as anchors takes the result.
func TestRosterSignedApart(t *testing.T) {
	a, b, c := newMember(t, "aye"), newMember(t, "bounmy"), newMember(t, "chai")
	grid := newMember(t, "grid-1")
	roles := map[string]string{"aye": "committee", "bounmy": "committee", "chai": "committee, release", "grid-1": "grid"}
	yaml := filepath.Join(a.dir, "roster.yaml")
	if err := os.WriteFile(yaml, []byte(rosterText(t, 3, "{committee: 2}", roles, a, b, c, grid)), 0o644); err != nil {
		t.Fatal(err)
	}
	env := filepath.Join(a.dir, "roster.signed.json")
	all := trustArgs(a, b, c)
	if _, _, err := run("roster", "sign", "--key", a.key, yaml, "-o", env); err != nil {
		t.Fatalf("sign: %v", err)
	}
	if _, _, err := run("roster", "sign", "--key", a.key, yaml, "-o", env); err == nil || !strings.Contains(err.Error(), "without --force") {
		t.Fatalf("sign over an existing envelope: %v", err)
	}
	out, _, err := run(append([]string{"roster", "status"}, append(all, env)...)...)
	if !errors.Is(err, errSilent) || !strings.Contains(out, "1 of 3 committee keys signed, 2 needed: NOT met") ||
		!strings.Contains(out, "missing:\n") || !strings.Contains(out, "  bounmy.pub (") {
		t.Fatalf("status after one signature: %v\n%s", err, out)
	}

	benv := hand(t, b, env)
	if _, stderr, err := run("roster", "cosign", "--key", b.key, benv); err != nil || !strings.Contains(stderr, "2 signature(s)") {
		t.Fatalf("cosign by b: %v %s", err, stderr)
	}
	if _, _, err := run("roster", "cosign", "--key", b.key, benv); err == nil || !strings.Contains(err.Error(), "already signed by") {
		t.Fatalf("b cosigns again: %v", err)
	}
	if _, _, err := run("roster", "cosign", "--key", b.key, yaml); !errors.Is(err, errNotEnvelope) {
		t.Fatalf("cosign of the YAML: %v", err)
	}
	out, _, err = run(append([]string{"roster", "status"}, append(all, benv)...)...)
	if err != nil || !strings.Contains(out, "2 of 3 committee keys signed, 2 needed: met") {
		t.Fatalf("status after two: %v\n%s", err, out)
	}
	if _, _, err := run(append([]string{"roster", "status", "--threshold", "3"}, append(all, benv)...)...); !errors.Is(err, errSilent) {
		t.Fatalf("status --threshold 3 with two: %v", err)
	}

	cenv := filepath.Join(c.dir, "signed-by-three.json")
	if _, _, err := run("roster", "cosign", "--key", c.key, hand(t, c, benv), "-o", cenv); err != nil {
		t.Fatalf("cosign by c: %v", err)
	}
	if out, _, err := run(append([]string{"roster", "status", "--threshold", "3"}, append(all, cenv)...)...); err != nil ||
		!strings.Contains(out, "missing:\nthreshold: 3 of 3") {
		t.Fatalf("status with all three: %v\n%s", err, out)
	}
	if out, _, err := run(append([]string{"roster", "verify"}, append(all, cenv)...)...); err != nil || !strings.Contains(out, "signed by 3 committee key(s)") {
		t.Fatalf("verify: %v %s", err, out)
	}
	out, _, err = run("roster", "show", cenv)
	if err != nil || !strings.Contains(out, "chai             committee, release") || !strings.Contains(out, "3 signature(s), not checked") {
		t.Fatalf("show: %v\n%s", err, out)
	}

	// A device with the three committee keys as its anchors takes it.
	anchors, err := loadKeyFiles([]string{a.pub, b.pub, c.pub})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := roster.New(roster.Options{Anchors: anchors, Floor: roster.Thresholds{Committee: 2}})
	data, _ := os.ReadFile(cenv)
	cur, err := st.Apply(data, "file")
	if err != nil || cur.Serial() != 3 || len(cur.Signers) != 3 || cur.Roster.Operator("grid-1") == nil {
		t.Fatalf("device: %v", err)
	}
}

func TestRosterRefusals(t *testing.T) {
	a, b := newMember(t, "aye"), newMember(t, "bounmy")
	roles := map[string]string{"aye": "committee", "bounmy": "committee"}
	write := func(name, body string) string {
		p := filepath.Join(a.dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	expired := rosterFrom(t, time.Now().AddDate(0, -2, 0), 1, "", roles, a, b)
	for _, tt := range []struct {
		name, body, want string
	}{
		{"invalid", "serial: x\n", "roster: invalid"},
		{"expired", expired, "expired at"},
		{"not yet issued", rosterFrom(t, time.Now().Add(time.Hour), 1, "", roles, a, b), "in the future"},
	} {
		out := filepath.Join(a.dir, tt.name+".json")
		_, _, err := run("roster", "sign", "--key", a.key, write(tt.name+".yaml", tt.body), "-o", out)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("sign %s: %v, want %q", tt.name, err, tt.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("sign %s wrote its output", tt.name)
		}
	}

	// An envelope of an expired roster is neither cosigned nor met.
	payload := []byte(expired)
	key, _ := dsse.LoadPrivateKey(a.key)
	env, _ := dsse.Sign(roster.PayloadType, payload, key)
	old := write("old.signed.json", string(env))
	if _, _, err := run("roster", "cosign", "--key", b.key, old); err == nil || !strings.Contains(err.Error(), "not signing it") {
		t.Fatalf("cosign of an expired roster: %v", err)
	}
	_, stderr, err := run(append([]string{"roster", "status", "--threshold", "1"}, append(trustArgs(a, b), old)...)...)
	if !errors.Is(err, errSilent) || !strings.Contains(stderr, "expired at") {
		t.Fatalf("status of an expired roster: %v %s", err, stderr)
	}
	if _, _, err := run(append([]string{"roster", "verify"}, append(trustArgs(a, b), old)...)...); !errors.Is(err, roster.ErrExpired) {
		t.Fatalf("verify of an expired roster: %v", err)
	}
	// A policy envelope is not a roster.
	pol, _ := dsse.Sign("application/vnd.linkguard.policy+yaml", payload, key)
	if _, _, err := run("roster", "cosign", "--key", b.key, write("policy.signed.json", string(pol))); err == nil || !strings.Contains(err.Error(), "is not a roster") {
		t.Fatalf("cosign of a policy as a roster: %v", err)
	}
}

// signedRoster signs body with the members' keys into dir/name and returns
// its path; unlike roster sign it signs what devices would refuse too.
func signedRoster(t *testing.T, dir, name, body string, ms ...member) string {
	t.Helper()
	return signedAs(t, roster.PayloadType, dir, name, body, ms...)
}

// TestRosterPublish: roster publish puts a fully signed roster retained on
// the roster topic, and refuses, leaving the topic alone, one under the
// threshold (the flag's or the roster's own), expired, not parsing, a YAML,
// or older than the verified one retained; an unverifiable retained one is
// replaced with a note.
func TestRosterPublish(t *testing.T) {
	pki := brokertest.NewPKI(t)
	br := brokertest.Mochi(t, pki)
	inline := br.(brokertest.Inline)
	a, b, c := newMember(t, "aye"), newMember(t, "bounmy"), newMember(t, "chai")
	roles := map[string]string{"aye": "committee", "bounmy": "committee", "chai": "committee"}
	dir := t.TempDir()
	cert, key := pki.Client(t, "committee")
	conn := []string{"--broker", br.URL(), "--ca", pki.CA, "--tls-cert", cert, "--tls-key", key}
	publish := func(file string, extra ...string) (string, string, error) {
		args := append(append([]string{"roster", "publish"}, conn...), trustArgs(a, b, c)...)
		return run(append(append(args, extra...), file)...)
	}
	retainedRoster := func() []byte { return retainedOn(t, inline, contract.RosterTopic) }

	for _, tt := range []struct {
		name, file string
		extra      []string
		want       error
		says       string
	}{
		{"one signature, --threshold 2", signedRoster(t, dir, "one.json", rosterText(t, 5, "", roles, a, b, c), a), []string{"--threshold", "2"}, dsse.ErrThreshold, "1 of 2"},
		{"two signatures, its own threshold 3", signedRoster(t, dir, "own.json", rosterText(t, 5, "{committee: 3}", roles, a, b, c), a, b), nil, roster.ErrThreshold, "2 of 3"},
		{"expired", signedRoster(t, dir, "expired.json", rosterFrom(t, time.Now().AddDate(0, -2, 0), 5, "", roles, a, b, c), a, b), nil, roster.ErrExpired, "expired at"},
		{"not a roster", signedRoster(t, dir, "junk.json", "serial: x\n", a, b), nil, roster.ErrInvalid, "not published"},
		{"a YAML", a.copyOf(t, "roster.yaml", rosterText(t, 5, "", roles, a, b, c)), nil, errNotEnvelope, "not a signed envelope"},
	} {
		if _, _, err := publish(tt.file, tt.extra...); !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("%s: %v, want %v saying %q", tt.name, err, tt.want, tt.says)
		}
	}
	if got := retainedRoster(); got != nil {
		t.Fatalf("a refused publish left a retained roster: %s", got)
	}

	good := signedRoster(t, dir, "good.json", rosterText(t, 5, "{committee: 2}", roles, a, b, c), a, b)
	out, _, err := publish(good)
	if err != nil || !strings.Contains(out, "published roster serial 5 (3 operators; signed by aye.pub (") {
		t.Fatalf("publish: %v %s", err, out)
	}
	want, _ := os.ReadFile(good)
	if got := retainedRoster(); !bytes.Equal(got, want) {
		t.Fatalf("retained roster %q, want the envelope", got)
	}
	if out, _, err := publish(good); err != nil || !strings.Contains(out, "already the fleet roster") {
		t.Fatalf("publish again: %v %s", err, out)
	}
	older := signedRoster(t, dir, "older.json", rosterText(t, 4, "", roles, a, b, c), a, b, c)
	if _, _, err := publish(older); err == nil || !strings.Contains(err.Error(), "fleet roster is serial 5") {
		t.Fatalf("publish an older serial: %v", err)
	}
	if got := retainedRoster(); !bytes.Equal(got, want) {
		t.Fatal("a refused publish replaced the fleet roster")
	}
	// An unsigned retained roster (a device certificate can publish one)
	// is replaced, with a note.
	if err := inline.Publish(contract.RosterTopic, []byte(`{"payloadType":"x","payload":"eA==","signatures":[]}`), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inline.Publish(contract.RosterTopic, nil, true) })
	newer := signedRoster(t, dir, "newer.json", rosterText(t, 6, "", roles, a, b, c), a, b)
	_, stderr, err := publish(newer, "--threshold", "2")
	if err != nil || !strings.Contains(stderr, "does not verify") {
		t.Fatalf("publish over an unsigned retained roster: %v %s", err, stderr)
	}
	want, _ = os.ReadFile(newer)
	if got := retainedRoster(); !bytes.Equal(got, want) {
		t.Fatal("the fully signed roster did not replace the unsigned one")
	}
}

// TestWatchLineNamesRoster: lgctl watch prints the roster serial beside the
// policy's, and says when the roster has expired.
func TestWatchLineNamesRoster(t *testing.T) {
	past, future := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	for _, tt := range []struct {
		state contract.State
		want  string
	}{
		{contract.State{Online: true, Policy: &contract.PolicyState{Serial: 7}, Roster: &contract.RosterState{Serial: 3, Expires: &future}}, "policy=7 roster=3 "},
		{contract.State{Online: true, Policy: &contract.PolicyState{Serial: 7}, Roster: &contract.RosterState{Serial: 3, Expires: &past}}, "roster=3(EXPIRED) "},
		{contract.State{Online: true, Policy: &contract.PolicyState{Serial: 7}}, "policy=7 roster=- "},
	} {
		b, _ := json.Marshal(tt.state)
		if got := humanLine(contract.Prefix+"r1/state", b); !strings.Contains(got, tt.want) {
			t.Errorf("%s: %q, want %q in it", b, got, tt.want)
		}
	}
}

// retainedOn returns what the broker retains on topic, nil when nothing
// arrives within 300ms.
func retainedOn(t *testing.T, inline brokertest.Inline, topic string) []byte {
	t.Helper()
	got := make(chan []byte, 1)
	unsub, err := inline.Subscribe(topic, func(_ string, p []byte, r bool) {
		if r {
			select {
			case got <- bytes.Clone(p):
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	select {
	case p := <-got:
		return p
	case <-time.After(300 * time.Millisecond):
		return nil
	}
}
