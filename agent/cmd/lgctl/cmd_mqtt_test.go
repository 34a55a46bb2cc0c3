package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink"
	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/policy/dsse"
)

func TestCmdWatchAudit(t *testing.T) {
	pki := brokertest.NewPKI(t)
	b := brokertest.Mochi(t, pki)
	dir := t.TempDir()
	opKey, opPub, err := dsse.GenerateKeyFiles(dir, "ops-1")
	if err != nil {
		t.Fatal(err)
	}
	stranger, _, _ := dsse.GenerateKeyFiles(dir, "stranger")
	ring, _ := dsse.LoadKeyring(opPub)
	devCert, devKey := pki.Client(t, "dev-1")
	l, err := mqttlink.New(mqttlink.Options{
		Device: "dev-1", Site: "s1", Kind: "router", Version: "test", URL: b.URL(), CA: pki.CA, Cert: devCert, Key: devKey,
		StateDir: t.TempDir(), Operators: ring, TelemetryEvery: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- l.Run(ctx) }()
	defer func() { cancel(); <-done }()

	cert, key := pki.Client(t, "operator")
	conn := []string{"--broker", b.URL(), "--ca", pki.CA, "--tls-cert", cert, "--tls-key", key}
	watchOut := make(chan string)
	go func() {
		out, _, err := run(append([]string{"watch", "--json", "--for", "3s"}, conn...)...)
		if err != nil {
			t.Error(err)
		}
		watchOut <- out
	}()
	time.Sleep(300 * time.Millisecond)

	out, _, err := run(append([]string{"cmd", "--key", opKey, "--target", "dev-1", "ping"}, conn...)...)
	if err != nil || !strings.Contains(out, "dev-1") || !strings.Contains(out, " ok ") {
		t.Fatalf("cmd ping: %v\n%s", err, out)
	}
	out, _, err = run(append([]string{"cmd", "--key", opKey, "--target", "site:s1", "--timeout", "1s", "log.level", "level=debug"}, conn...)...)
	if err == nil || !strings.Contains(out, "REFUSED failed") {
		// no LevelVar in this link: the handler refuses, and lgctl says so
		t.Fatalf("cmd log.level on a fixed-level agent: %v\n%s", err, out)
	}
	out, _, err = run(append([]string{"cmd", "--key", stranger, "--target", "dev-1", "ping"}, conn...)...)
	if !errors.Is(err, errSilent) || !strings.Contains(out, "REFUSED untrusted-key") {
		t.Fatalf("cmd by an untrusted key: %v\n%s", err, out)
	}
	_, stderr, err := run(append([]string{"cmd", "--key", opKey, "--target", "nobody", "--timeout", "500ms", "ping"}, conn...)...)
	if !errors.Is(err, errSilent) || !strings.Contains(stderr, "no device answered") {
		t.Fatalf("cmd to nobody: %v %s", err, stderr)
	}

	stream := <-watchOut
	if !strings.Contains(stream, `"topic":"linkguard/v1/dev-1/events"`) {
		t.Fatalf("watch --json saw no events:\n%s", stream)
	}
	saved := filepath.Join(t.TempDir(), "stream.jsonl")
	os.WriteFile(saved, []byte(stream), 0o600)
	out, _, err = run("audit", saved)
	if err != nil || !strings.Contains(out, "dev-1: chain intact") {
		t.Fatalf("audit: %v\n%s", err, out)
	}
	// Alter one event in the saved stream: audit must notice.
	forged := strings.Replace(stream, `"type":"command.accepted"`, `"type":"command.refused"`, 1)
	os.WriteFile(saved, []byte(forged), 0o600)
	out, _, err = run("audit", saved)
	if !errors.Is(err, errSilent) || !strings.Contains(out, "CHAIN BROKEN") {
		t.Fatalf("audit of an altered stream: %v\n%s", err, out)
	}
}

func TestParseArgs(t *testing.T) {
	got, err := parseArgs([]string{"feed=tachileik-1", "cap_kw=50", "until=2026-12-01T06:00:00Z", "on=true", "list=[1,2]"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"cap_kw":50,"feed":"tachileik-1","list":[1,2],"on":true,"until":"2026-12-01T06:00:00Z"}`
	if string(got) != want {
		t.Fatalf("got %s want %s", got, want)
	}
	if _, err := parseArgs([]string{"novalue"}); err == nil {
		t.Fatal("accepted an argument without =")
	}
}
