package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func run(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	root := newRoot()
	root.SetOut(&o)
	root.SetErr(&e)
	root.SetArgs(args)
	err = root.Execute()
	return o.String(), e.String(), err
}

func TestKeySignDiff(t *testing.T) {
	dir := t.TempDir()
	if out, _, err := run("key", "gen", "--dir", dir, "ops"); err != nil || !strings.Contains(out, "key id") {
		t.Fatalf("key gen: %v %q", err, out)
	}
	if _, _, err := run("key", "gen", "--dir", dir, "ops"); err == nil {
		t.Fatal("key gen overwrote a key")
	}
	now := time.Now().UTC()
	head := "serial: %d\nissued: " + now.Format(time.RFC3339) + "\nexpires: " + now.AddDate(0, 1, 0).Format(time.RFC3339) + "\ndomestic: [10.0.0.0/8]\napprovals:\n"
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	oldP := write("old.yaml", strings.Replace(head, "%d", "1", 1)+
		"  - {id: A, holder: Alpha, remote: [203.0.113.0/24]}\n  - {id: B, holder: Beta, remote: [198.51.100.0/24], services: [tcp/443]}\n")
	newP := write("new.yaml", strings.Replace(head, "%d", "2", 1)+
		"  - {id: B, holder: Beta, remote: [198.51.100.0/24, 192.0.2.0/24], services: [tcp/443, udp/53]}\n  - {id: C, holder: Gamma, remote: [2001:db8::/32]}\n")
	signed := filepath.Join(dir, "new.signed.json")
	if _, _, err := run("policy", "sign", "--key", filepath.Join(dir, "ops.key"), newP, "-o", signed); err != nil {
		t.Fatalf("sign: %v", err)
	}
	out, _, err := run("policy", "diff", oldP, signed)
	if !errors.Is(err, errSilent) {
		t.Fatalf("diff of differing policies: err = %v", err)
	}
	for _, want := range []string{
		"serial: 1 -> 2",
		"~ B (Beta): remote added 192.0.2.0/24; services [tcp/443] -> [tcp/443, udp/53]",
		"+ C (Gamma): 1 remote prefixes",
		"- A (Alpha): revoked",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diff output lacks %q:\n%s", want, out)
		}
	}
	if out, _, err := run("policy", "diff", newP, signed); err != nil || !strings.Contains(out, "no approval changes") {
		t.Fatalf("diff of equal policies: %v %q", err, out)
	}
	bad := write("bad.yaml", "serial: x\n")
	if _, _, err := run("policy", "sign", "--key", filepath.Join(dir, "ops.key"), bad, "-o", filepath.Join(dir, "bad.json")); err == nil {
		t.Fatal("sign accepted an invalid policy")
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.json")); err == nil {
		t.Fatal("sign wrote output for an invalid policy")
	}
}
