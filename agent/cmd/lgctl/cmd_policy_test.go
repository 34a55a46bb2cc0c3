package main

import (
	"bytes"
	"crypto/ed25519"
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
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
)

// member is one committee member: a key directory of their own, and their
// own copy of the policy YAML.
type member struct {
	name, dir, key, pub string
}

func newMember(t *testing.T, name string) member {
	t.Helper()
	dir := t.TempDir()
	if out, _, err := run("key", "gen", "--dir", dir, name); err != nil {
		t.Fatalf("key gen %s: %v %s", name, err, out)
	}
	return member{name: name, dir: dir, key: filepath.Join(dir, name+".key"), pub: filepath.Join(dir, name+".pub")}
}

// copyOf writes the member's copy of a document and returns its path.
func (m member) copyOf(t *testing.T, file, body string) string {
	t.Helper()
	p := filepath.Join(m.dir, file)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// policyYAML is a valid policy of the given serial, issued now and
// expiring in 30 days.
func policyYAML(serial int, approvals ...string) string {
	now := time.Now().UTC().Truncate(time.Second)
	s := fmt.Sprintf("serial: %d\nissued: %s\nexpires: %s\ndomestic: [10.0.0.0/8]\napprovals:\n", serial,
		now.Format(time.RFC3339), now.AddDate(0, 0, 30).Format(time.RFC3339))
	if len(approvals) == 0 {
		approvals = []string{"{id: A, holder: Alpha, remote: [203.0.113.0/24]}"}
	}
	for _, a := range approvals {
		s += "  - " + a + "\n"
	}
	return s
}

func trustArgs(ms ...member) []string {
	var args []string
	for _, m := range ms {
		args = append(args, "--trust", m.pub)
	}
	return args
}

// TestCommitteeSignsApart: three members in separate key directories sign
// one policy with sign, then cosign; the third holds a copy with CRLF line
// endings and is told so wherever the difference shows.
func TestCommitteeSignsApart(t *testing.T) {
	a, b, c := newMember(t, "alice"), newMember(t, "bob"), newMember(t, "carol")
	text := policyYAML(7)
	aYAML := a.copyOf(t, "policy.yaml", text)
	bYAML := b.copyOf(t, "policy.yaml", text)
	cYAML := c.copyOf(t, "policy.yaml", strings.ReplaceAll(text, "\n", "\r\n")) // from a mail client
	env := filepath.Join(a.dir, "policy.signed.json")
	all := trustArgs(a, b, c)
	status := func(extra ...string) (string, string, error) {
		return run(append(append([]string{"policy", "status"}, all...), append(extra, env)...)...)
	}

	if _, _, err := run("policy", "sign", "--key", a.key, aYAML, "-o", env); err != nil {
		t.Fatalf("alice signs: %v", err)
	}
	out, _, err := status("--threshold", "2")
	if !errors.Is(err, errSilent) || !strings.Contains(out, "1 of 3 trusted keys signed, 2 needed: NOT met") {
		t.Fatalf("status after one signature: %v\n%s", err, out)
	}
	signed, missing, _ := strings.Cut(out, "missing:")
	if !strings.Contains(signed, "alice.pub (") || !strings.Contains(missing, "bob.pub (") || !strings.Contains(missing, "carol.pub (") {
		t.Fatalf("status does not name who signed and who is missing:\n%s", out)
	}

	// Bob cosigns the envelope alice sent, checking it against his copy.
	if _, stderr, err := run("policy", "cosign", "--key", b.key, "--yaml", bYAML, env); err != nil || !strings.Contains(stderr, "2 signature(s)") {
		t.Fatalf("bob cosigns: %v %s", err, stderr)
	}
	if out, _, err := status("--threshold", "2"); err != nil || !strings.Contains(out, "2 of 3 trusted keys signed, 2 needed: met") {
		t.Fatalf("status with two of three, threshold 2: %v\n%s", err, out)
	}
	if out, _, err := status(); !errors.Is(err, errSilent) || !strings.Contains(out, "NOT met") {
		t.Fatalf("status with two of three, threshold all: %v\n%s", err, out)
	}
	if _, _, err := run("policy", "cosign", "--key", b.key, env); err == nil || !strings.Contains(err.Error(), "already signed by") {
		t.Fatalf("bob cosigns twice: %v", err)
	}

	// Carol's copy differs only in line endings. Signing her own copy over
	// the envelope is refused, and says why.
	_, _, err = run("policy", "sign", "--key", c.key, cYAML, "-o", env)
	if err == nil || !strings.Contains(err.Error(), "only in line endings (CRLF in "+cYAML) || !strings.Contains(err.Error(), "lgctl policy cosign") {
		t.Fatalf("carol signs her own copy over the envelope: %v", err)
	}
	// Signing her own copy apart and merging by hand (the jq way) gives a
	// signature the status explains instead of "bad signature".
	own := filepath.Join(c.dir, "own.signed.json")
	if _, _, err := run("policy", "sign", "--key", c.key, cYAML, "-o", own); err != nil {
		t.Fatal(err)
	}
	merged := filepath.Join(c.dir, "merged.json")
	writeMerged(t, merged, env, own)
	_, stderr, err := run(append(append([]string{"policy", "status"}, all...), merged)...)
	if !errors.Is(err, errSilent) || !strings.Contains(stderr, "signatures[2] by carol.pub") ||
		!strings.Contains(stderr, "only in line endings (CRLF in the signed copy, LF in this payload)") ||
		!strings.Contains(stderr, "signed their own copy") {
		t.Fatalf("status of a hand-merged CRLF signature: %v\n%s", err, stderr)
	}
	// verify with her copy says the copies say the same.
	_, stderr, _ = run(append(append([]string{"policy", "verify", "--threshold", "2", "--yaml", cYAML}, all...), env)...)
	if !strings.Contains(stderr, "differs from the signed payload only in line endings") {
		t.Fatalf("verify --yaml with a CRLF copy: %s", stderr)
	}

	// Carol cosigns, with her copy: a note, and her signature over the
	// envelope's payload.
	_, stderr, err = run("policy", "cosign", "--key", c.key, "--yaml", cYAML, env)
	if err != nil || !strings.Contains(stderr, "only in line endings (CRLF in "+cYAML) {
		t.Fatalf("carol cosigns with a CRLF copy: %v %s", err, stderr)
	}
	if out, _, err := status(); err != nil || !strings.Contains(out, "3 of 3 trusted keys signed, 3 needed: met") {
		t.Fatalf("status with all three: %v\n%s", err, out)
	}
	out, _, err = run(append(append([]string{"policy", "verify"}, all...), env)...)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	for _, want := range []string{"serial:    7", "(in 30d0h)", "alice.pub (", "bob.pub (", "carol.pub (", "3 of 3 trusted keys, 3 needed"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
	// What devices get is alice's bytes, exactly.
	if got := payloadOf(t, env, a, b, c); got != text {
		t.Fatalf("payload %q, want alice's copy", got)
	}
}

// payloadOf verifies the envelope at path with every member's signature
// and returns its payload.
func payloadOf(t *testing.T, path string, ms ...member) string {
	t.Helper()
	var pubs []string
	for _, m := range ms {
		pubs = append(pubs, m.pub)
	}
	ring, err := dsse.LoadKeyring(pubs...)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ring.Verify(data, policy.PayloadType, len(ms))
	if err != nil {
		t.Fatal(err)
	}
	return string(v.Payload)
}

// writeMerged writes env with the signatures of other appended, as a
// committee merging envelopes with jq did.
func writeMerged(t *testing.T, path, env, other string) {
	t.Helper()
	var e, o dsse.Envelope
	for p, into := range map[string]*dsse.Envelope{env: &e, other: &o} {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, into); err != nil {
			t.Fatal(err)
		}
	}
	e.Signatures = append(e.Signatures, o.Signatures...)
	data, _ := json.Marshal(&e)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// signEnvelope signs body as a policy with the members' keys, bypassing
// lgctl's own checks (for expired and invalid policies).
func signEnvelope(t *testing.T, dir, name, body string, ms ...member) string {
	t.Helper()
	return signedAs(t, policy.PayloadType, dir, name, body, ms...)
}

// signedAs signs body as payloadType with the members' keys into dir/name
// and returns its path.
func signedAs(t *testing.T, payloadType, dir, name, body string, ms ...member) string {
	t.Helper()
	var keys []ed25519.PrivateKey
	for _, m := range ms {
		k, err := dsse.LoadPrivateKey(m.key)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	env, err := dsse.Sign(payloadType, []byte(body), keys...)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, env, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func expiredYAML(serial int) string {
	now := time.Now().UTC().Truncate(time.Second)
	return fmt.Sprintf("serial: %d\nissued: %s\nexpires: %s\ndomestic: [10.0.0.0/8]\napprovals:\n  - {id: A, holder: Alpha, remote: [203.0.113.0/24]}\n",
		serial, now.AddDate(0, -2, 0).Format(time.RFC3339), now.Add(-3*time.Hour).Format(time.RFC3339))
}

func TestPolicyStatusExit(t *testing.T) {
	a, b, c, x := newMember(t, "alice"), newMember(t, "bob"), newMember(t, "carol"), newMember(t, "mallory")
	dir := t.TempDir()
	good := policyYAML(3)
	ab := signEnvelope(t, dir, "ab.json", good, a, b)
	tampered := filepath.Join(dir, "tampered.json")
	data, _ := os.ReadFile(ab)
	var e dsse.Envelope
	json.Unmarshal(data, &e)
	e.Payload = base64Std(strings.Replace(good, "203.0.113.0/24", "0.0.0.0/0", 1))
	data, _ = json.Marshal(&e)
	os.WriteFile(tampered, data, 0o644)
	yamlFile := filepath.Join(dir, "policy.yaml")
	os.WriteFile(yamlFile, []byte(good), 0o644)

	tests := []struct {
		name      string
		file      string
		threshold string
		ok        bool
		want      string // in stdout+stderr
	}{
		{"two of three, threshold 2", ab, "2", true, "2 of 3 trusted keys signed, 2 needed: met"},
		{"two of three, threshold 3", ab, "3", false, "NOT met"},
		{"two of three, default all", ab, "", false, "carol.pub ("},
		{"one of three", signEnvelope(t, dir, "a.json", good, a), "2", false, "1 of 2 needed signatures"},
		{"untrusted signer only", signEnvelope(t, dir, "x.json", good, x), "1", false, "signature by an untrusted key"},
		{"untrusted signer beside enough", signEnvelope(t, dir, "abx.json", good, a, b, x), "2", true, "not counted: dsse: signatures[2]: signature by an untrusted key"},
		{"tampered payload", tampered, "1", false, "bad signature from alice.pub"},
		{"expired", signEnvelope(t, dir, "old.json", expiredYAML(2), a, b, c), "", false, "expired 3h0m ago"},
		{"invalid payload", signEnvelope(t, dir, "bad.json", "serial: x\n", a, b, c), "", false, "not a valid policy"},
		{"a YAML, not an envelope", yamlFile, "", false, "is a policy YAML, not a signed envelope"},
		{"threshold over the keys", ab, "4", false, "--threshold 4 with 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"policy", "status"}, trustArgs(a, b, c)...)
			if tt.threshold != "" {
				args = append(args, "--threshold", tt.threshold)
			}
			out, stderr, err := run(append(args, tt.file)...)
			if tt.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v\n%s%s", err, tt.ok, out, stderr)
			}
			all := out + stderr
			if err != nil {
				all += err.Error()
			}
			if !strings.Contains(all, tt.want) {
				t.Fatalf("output lacks %q:\n%s", tt.want, all)
			}
		})
	}
}

func base64Std(s string) string {
	b, _ := json.Marshal([]byte(s))
	return strings.Trim(string(b), `"`)
}

func TestPolicySignCosignRefusals(t *testing.T) {
	a, b := newMember(t, "alice"), newMember(t, "bob")
	dir := t.TempDir()
	y := a.copyOf(t, "policy.yaml", policyYAML(4))
	env := filepath.Join(dir, "policy.signed.json")
	if _, _, err := run("policy", "sign", "--key", a.key, y, "-o", env); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(env)
	_, _, err := run("policy", "sign", "--key", b.key, y, "-o", env)
	if err == nil || !strings.Contains(err.Error(), "without --force") || !strings.Contains(err.Error(), "already an envelope of this policy") {
		t.Fatalf("sign over an envelope of the same policy: %v", err)
	}
	other := a.copyOf(t, "other.yaml", policyYAML(5))
	if _, _, err := run("policy", "sign", "--key", b.key, other, "-o", env); err == nil || !strings.Contains(err.Error(), "different policy") {
		t.Fatalf("sign over an envelope of another policy: %v", err)
	}
	if after, _ := os.ReadFile(env); !bytes.Equal(before, after) {
		t.Fatal("a refused sign changed the envelope")
	}
	if _, _, err := run("policy", "sign", "--key", b.key, other, "-o", env, "--force"); err != nil {
		t.Fatalf("sign --force: %v", err)
	}

	// cosign refuses what devices would refuse, and a copy that says
	// something else.
	expired := signEnvelope(t, dir, "expired.json", expiredYAML(2), a)
	invalid := signEnvelope(t, dir, "invalid.json", "serial: x\n", a)
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"expired", []string{expired}, "expired at"},
		{"invalid", []string{invalid}, "not a valid policy"},
		{"a YAML", []string{y}, "is a policy YAML, not a signed envelope"},
		{"copy differs in content", []string{"--yaml", y, env}, "differ in content"},
		{"output exists", []string{"-o", expired, env}, "without --force"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := os.ReadFile(tt.args[len(tt.args)-1])
			_, _, err := run(append([]string{"policy", "cosign", "--key", a.key}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("cosign: %v, want %q", err, tt.want)
			}
			if after, _ := os.ReadFile(tt.args[len(tt.args)-1]); !bytes.Equal(before, after) {
				t.Fatal("a refused cosign changed the file")
			}
		})
	}
	// -o writes elsewhere and leaves the input alone.
	out := filepath.Join(dir, "cosigned.json")
	if _, _, err := run("policy", "cosign", "--key", a.key, env, "-o", out); err != nil {
		t.Fatal(err)
	}
	if payloadOf(t, out, a, b) == "" {
		t.Fatal("empty payload")
	}
}

func TestPolicyDiffVerifies(t *testing.T) {
	a, b := newMember(t, "alice"), newMember(t, "bob")
	dir := t.TempDir()
	old := signEnvelope(t, dir, "old.json", expiredYAML(1), a, b)
	cur := signEnvelope(t, dir, "new.json", policyYAML(2, "{id: A, holder: Alpha, remote: [203.0.113.0/24]}", "{id: B, holder: Beta, remote: [198.51.100.0/24]}"), a, b)
	data, _ := os.ReadFile(cur)
	var e dsse.Envelope
	json.Unmarshal(data, &e)
	e.Payload = base64Std(policyYAML(2, "{id: A, holder: Alpha, remote: [0.0.0.0/0]}"))
	data, _ = json.Marshal(&e)
	tampered := filepath.Join(dir, "tampered.json")
	os.WriteFile(tampered, data, 0o644)
	trust := trustArgs(a, b)

	out, stderr, err := run(append(append([]string{"policy", "diff"}, trust...), old, cur)...)
	if !errors.Is(err, errSilent) || !strings.Contains(out, "+ B (Beta)") || !strings.Contains(stderr, "expired") {
		t.Fatalf("diff of verified policies: %v\n%s%s", err, out, stderr)
	}
	_, stderr, err = run(append(append([]string{"policy", "diff"}, trust...), old, tampered)...)
	if !errors.Is(err, errSilent) || !strings.Contains(stderr, "bad signature") {
		t.Fatalf("diff --trust of a tampered file: %v\n%s", err, stderr)
	}
	_, stderr, err = run(append(append([]string{"policy", "diff", "--threshold", "2"}, trustArgs(a)...), old, cur)...)
	if err == nil {
		t.Fatalf("diff with an impossible threshold: %v %s", err, stderr)
	}
	// Without --trust it still diffs, and says the signatures went unchecked.
	out, stderr, err = run("policy", "diff", old, tampered)
	if !errors.Is(err, errSilent) || !strings.Contains(out, "remote added 0.0.0.0/0") || !strings.Contains(stderr, "signatures not checked") {
		t.Fatalf("diff without --trust: %v\n%s%s", err, out, stderr)
	}
}

// TestPolicyPublish publishes to a real broker: below the threshold,
// expired and rolled-back policies are refused and leave the fleet policy
// as it was; a fully signed one is published retained.
func TestPolicyPublish(t *testing.T) {
	// The embedded broker needs nothing of the machine: this runs everywhere.
	pki := brokertest.NewPKI(t)
	br := brokertest.Mochi(t, pki)
	inline := br.(brokertest.Inline)
	a, b, c := newMember(t, "alice"), newMember(t, "bob"), newMember(t, "carol")
	dir := t.TempDir()
	cert, key := pki.Client(t, "committee")
	conn := []string{"--broker", br.URL(), "--ca", pki.CA, "--tls-cert", cert, "--tls-key", key}
	publish := func(file string, extra ...string) (string, string, error) {
		args := append(append([]string{"policy", "publish"}, conn...), trustArgs(a, b, c)...)
		return run(append(append(args, extra...), file)...)
	}
	retained := func() []byte { return retainedOn(t, inline, contract.PolicyTopic) }

	one := signEnvelope(t, dir, "one.json", policyYAML(5), a)
	if _, stderr, err := publish(one, "--threshold", "2"); !errors.Is(err, errSilent) || !strings.Contains(stderr, "not published") || !strings.Contains(stderr, "1 of 2 needed") {
		t.Fatalf("publish below the threshold: %v %s", err, stderr)
	}
	expired := signEnvelope(t, dir, "expired.json", expiredYAML(5), a, b, c)
	if _, stderr, err := publish(expired, "--threshold", "2"); !errors.Is(err, errSilent) || !strings.Contains(stderr, "expired") {
		t.Fatalf("publish an expired policy: %v %s", err, stderr)
	}
	yamlFile := a.copyOf(t, "p.yaml", policyYAML(5))
	if _, _, err := publish(yamlFile); err == nil || !strings.Contains(err.Error(), "not a signed envelope") {
		t.Fatalf("publish a YAML: %v", err)
	}
	if got := retained(); got != nil {
		t.Fatalf("a refused publish left a retained policy: %s", got)
	}

	good := signEnvelope(t, dir, "good.json", policyYAML(5), a, b)
	out, _, err := publish(good, "--threshold", "2")
	if err != nil || !strings.Contains(out, "published serial 5") || !strings.Contains(out, "alice.pub (") {
		t.Fatalf("publish: %v %s", err, out)
	}
	want, _ := os.ReadFile(good)
	if got := retained(); !bytes.Equal(got, want) {
		t.Fatalf("retained fleet policy %q, want the envelope", got)
	}
	if out, _, err := publish(good, "--threshold", "2"); err != nil || !strings.Contains(out, "already the fleet policy") {
		t.Fatalf("publish again: %v %s", err, out)
	}
	older := signEnvelope(t, dir, "older.json", policyYAML(4), a, b, c)
	if _, _, err := publish(older, "--threshold", "2"); err == nil || !strings.Contains(err.Error(), "fleet policy is serial 5") {
		t.Fatalf("publish an older serial: %v", err)
	}
	if got := retained(); !bytes.Equal(got, want) {
		t.Fatal("a refused publish replaced the fleet policy")
	}
	// An unsigned retained policy (a device certificate can publish one) is
	// replaced, with a note.
	if err := inline.Publish(contract.PolicyTopic, []byte(`{"payloadType":"x","payload":"eA==","signatures":[]}`), true); err != nil {
		t.Fatal(err)
	}
	newer := signEnvelope(t, dir, "newer.json", policyYAML(6), a, b, c)
	_, stderr, err := publish(newer)
	if err != nil || !strings.Contains(stderr, "does not verify") {
		t.Fatalf("publish over an unsigned retained policy: %v %s", err, stderr)
	}
	want, _ = os.ReadFile(newer)
	if got := retained(); !bytes.Equal(got, want) {
		t.Fatal("the fully signed policy did not replace the unsigned one")
	}
}
