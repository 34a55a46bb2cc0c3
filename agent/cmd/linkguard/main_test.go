package main

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
)

// run executes the linkguard command line in-process.
func run(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	root := newRoot()
	root.SetOut(&o)
	root.SetErr(&e)
	root.SetArgs(args)
	err = root.Execute()
	return o.String(), e.String(), err
}

func TestPolicyVerifyAndExplain(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string) (string, string) {
		k, p, err := dsse.GenerateKeyFiles(dir, name)
		if err != nil {
			t.Fatal(err)
		}
		return k, p
	}
	keyA, pubA := mk("a")
	keyB, pubB := mk("b")
	_, pubC := mk("c")
	now := time.Now().UTC().Truncate(time.Second)
	doc := func(expires time.Time) []byte {
		return []byte("serial: 3\nissued: " + now.Add(-time.Hour).Format(time.RFC3339) + "\nexpires: " + expires.Format(time.RFC3339) +
			"\ndefault: deny\ndomestic: [103.1.0.0/16]\napprovals:\n  - {id: LA-1, holder: Example, remote: [203.0.113.0/24], services: [tcp/443]}\n")
	}
	sign := func(name string, payload []byte, keys ...string) string {
		privs := make([]ed25519.PrivateKey, len(keys))
		for i, k := range keys {
			var err error
			if privs[i], err = dsse.LoadPrivateKey(k); err != nil {
				t.Fatal(err)
			}
		}
		env, err := dsse.Sign(policy.PayloadType, payload, privs...)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, env, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := sign("good.json", doc(now.AddDate(0, 1, 0)), keyA, keyB)
	expired := sign("expired.json", doc(now.Add(-time.Minute)), keyA)
	broken := sign("broken.json", []byte("serial: 3\nissued: nope\n"), keyA)

	out, _, err := run("policy", "verify", "--trust", pubA, "--trust", pubB, "--threshold", "2", good)
	if err != nil || !strings.Contains(out, "serial:    3") || !strings.Contains(out, "signed by: 2") {
		t.Fatalf("verify good: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"below threshold", []string{"--trust", pubA, "--trust", pubC, "--threshold", "2", good}, "not enough valid signatures: 1 of 2"},
		{"untrusted", []string{"--trust", pubC, good}, "signature by an untrusted key"},
		{"expired", []string{"--trust", pubA, expired}, "policy expired"},
		{"malformed", []string{"--trust", pubA, broken}, "line 2: issued:"},
	} {
		_, stderr, err := run(append([]string{"policy", "verify"}, tc.args...)...)
		if err == nil || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: err=%v stderr=%q, want %q", tc.name, err, stderr, tc.want)
		}
	}

	out, _, err = run("policy", "explain", "--policy", good, "--trust", pubA, "--site", "s", "--src", "103.1.2.3", "--dst", "203.0.113.5", "--proto", "tcp", "--dport", "22")
	if err != nil || !strings.Contains(out, "verdict:  DENIED") || !strings.Contains(out, "LA-1 (Example) lists 203.0.113.0/24: site ok, service NO, window ok") {
		t.Fatalf("explain: %v\n%s", err, out)
	}
	out, _, err = run("policy", "explain", "--policy", good, "--trust", pubA, "--src", "103.1.2.3", "--dst", "203.0.113.5", "--dport", "443")
	if err != nil || !strings.Contains(out, "verdict:  APPROVED") || !strings.Contains(out, "approval: LA-1") {
		t.Fatalf("explain approved: %v\n%s", err, out)
	}
}

func TestVersion(t *testing.T) {
	out, _, err := run("version")
	if err != nil || !strings.HasPrefix(out, "linkguard ") || !strings.Contains(out, "linux/") {
		t.Fatalf("version: %v %q", err, out)
	}
}
