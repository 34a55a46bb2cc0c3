package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/console"
	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/roster"
)

// TestConsoleKeyFileMembers: two committee members with key files use the
// console through lgctl: alice reviews and signs a proposal with `console
// sign`, bob downloads its envelope, co-signs it offline with `policy
// cosign` and hands it in with `console upload`, which publishes it; the
// console's help names no key it would hold.
func TestConsoleKeyFileMembers(t *testing.T) {
	help, _, err := run("console", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"--key ", "--committee"} {
		if strings.Contains(help, gone) {
			t.Fatalf("lgctl console --help still offers %s:\n%s", gone, help)
		}
	}
	for _, want := range []string{"--tls-cert", "--host", "--trust", "--state", "--client-cert", "--expiry-warning"} {
		if !strings.Contains(help, want) {
			t.Fatalf("lgctl console --help lacks %s", want)
		}
	}

	pki := brokertest.NewPKI(t)
	br := brokertest.Mochi(t, pki)
	inline := br.(brokertest.Inline)
	a, b := newMember(t, "alice"), newMember(t, "bob")
	var pubs []ed25519.PublicKey
	var keys []ed25519.PrivateKey
	var ros strings.Builder
	now := time.Now().UTC().Truncate(time.Second)
	fmt.Fprintf(&ros, "serial: 1\nissued: %s\nexpires: %s\nthresholds: {committee: 2}\noperators:\n", now.Add(-time.Hour).Format(time.RFC3339), now.AddDate(0, 1, 0).Format(time.RFC3339))
	for _, m := range []member{a, b} {
		k, err := dsse.LoadPrivateKey(m.key)
		if err != nil {
			t.Fatal(err)
		}
		keys, pubs = append(keys, k), append(pubs, k.Public().(ed25519.PublicKey))
		fmt.Fprintf(&ros, "  - {id: %s, roles: [committee], keys: [%s]}\n", m.name, roster.FormatKey(k.Public().(ed25519.PublicKey)))
	}
	rosEnv, err := dsse.Sign(roster.PayloadType, []byte(ros.String()), keys...)
	if err != nil {
		t.Fatal(err)
	}
	if err := inline.Publish(contract.RosterTopic, rosEnv, true); err != nil {
		t.Fatal(err)
	}
	if err := inline.Publish(contract.PolicyTopic, []byte(must(t, signEnvelope(t, t.TempDir(), "p.json", policyYAML(7), a, b))), true); err != nil {
		t.Fatal(err)
	}

	cert, key := pki.Client(t, "console")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runConsole(ctx, console.Options{Broker: br.URL(), TLS: console.TLSFiles{CA: pki.CA, Cert: cert, Key: key},
			Trust: pubs, Threshold: 2, StateDir: t.TempDir()}, ln, func(string) {})
	}()
	defer func() { cancel(); <-done }()

	alice := &console.Client{URL: url, Key: keys[0]}
	var p *console.Pending
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err = alice.Login(ctx); err == nil {
			if p, err = alice.Propose(ctx, console.Proposal{Action: "revoke", Approval: "A", Reason: "key-file members"}); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("propose: %v", err)
		}
	}
	out, _, err := run("console", "sign", "--url", url, "--key", a.key, "--yes", p.ID)
	if err != nil || !strings.Contains(out, "1 of 2 signatures, collecting") || !strings.Contains(out, "serial: 8") {
		t.Fatalf("console sign: %v\n%s", err, out)
	}
	out, _, err = run("console", "pending", "--url", url, "--key", b.key)
	if err != nil || !strings.Contains(out, p.ID) || !strings.Contains(out, "1/2 alice") {
		t.Fatalf("console pending: %v\n%s", err, out)
	}
	bob := &console.Client{URL: url, Key: keys[1]}
	if _, err := bob.Login(ctx); err != nil {
		t.Fatal(err)
	}
	env, err := bob.Envelope(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	dl := filepath.Join(b.dir, "proposal.json")
	os.WriteFile(dl, env, 0o644)
	cosigned := filepath.Join(b.dir, "proposal.cosigned.json")
	if out, _, err := run("policy", "cosign", "--key", b.key, dl, "-o", cosigned); err != nil {
		t.Fatalf("policy cosign: %v %s", err, out)
	}
	out, _, err = run("console", "upload", "--url", url, "--key", b.key, p.ID, cosigned)
	if err != nil || !strings.Contains(out, "2 of 2 signatures, published") {
		t.Fatalf("console upload: %v\n%s", err, out)
	}
	v, err := dsse.NewKeyring(pubs...).Verify(retainedOn(t, inline, contract.PolicyTopic), policy.PayloadType, 2)
	if err != nil {
		t.Fatalf("retained fleet policy: %v", err)
	}
	if np, err := policy.Parse(v.Payload); err != nil || np.Serial != 8 || len(np.Approvals) != 0 {
		t.Fatalf("published policy %+v %v", np, err)
	}
}

func must(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
