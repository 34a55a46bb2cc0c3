package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/firmware/bundle"
	"linkguard.dev/linkguard/firmware/bundle/bundletest"
	"linkguard.dev/linkguard/policy/dsse"
)

// TestBundleCosignTicket: two release managers sign a bundle apart; a
// device requiring both refuses it with one; a downgrade ticket signed by
// one and cosigned by the other lets only the named device in.
func TestBundleCosignTicket(t *testing.T) {
	a, b := bundletest.NewRelease(t), bundletest.NewRelease(t)
	dir := t.TempDir()
	file := a.WriteFile(t, dir, bundletest.Spec{Version: "1.0.5"})
	verify := func(extra ...string) (string, string, error) {
		args := []string{"bundle", "verify", file, "--trust", a.PubPath, "--trust", b.PubPath, "--arch", "amd64", "--threshold", "2"}
		return run(append(args, extra...)...)
	}
	if _, _, err := verify(); !errors.Is(err, bundle.ErrSignature) {
		t.Fatalf("one signature of two: %v", err)
	}
	before, _ := os.ReadFile(file)
	_, stderr, err := run("bundle", "cosign", "--key", b.KeyPath, file)
	if err != nil || !strings.Contains(stderr, "2 signature(s) in "+file) || !strings.Contains(stderr, "sha256:") {
		t.Fatalf("cosign: %v %s", err, stderr)
	}
	if out, _, err := verify(); err != nil || !strings.Contains(out, "valid: linkguard 1.0.5") {
		t.Fatalf("two signatures of two: %v %s", err, out)
	}
	if _, _, err := run("bundle", "cosign", "--key", b.KeyPath, file); err == nil || !strings.Contains(err.Error(), "already signed") {
		t.Fatalf("cosign twice: %v", err)
	}
	tampered := filepath.Join(dir, "tampered.lgb")
	before[len(before)-2] ^= 1
	os.WriteFile(tampered, before, 0o644)
	if _, _, err := run("bundle", "cosign", "--key", b.KeyPath, tampered); !errors.Is(err, bundle.ErrDigest) {
		t.Fatalf("cosign a tampered bundle: %v", err)
	}
	if after, _ := os.ReadFile(tampered); !bytes.Equal(after, before) {
		t.Fatal("a refused cosign changed the file")
	}

	// A downgrade: refused without a ticket, with one signature of two,
	// for another device; accepted with a cosigned ticket for this one.
	dev := []string{"--installed", "1.1.0", "--device", "rtr-1", "--site", "s1"}
	if _, _, err := verify(dev...); !errors.Is(err, bundle.ErrDowngrade) {
		t.Fatalf("downgrade without a ticket: %v", err)
	}
	ticket := filepath.Join(dir, "t.json")
	_, stderr, err = run("bundle", "ticket", "--key", a.KeyPath, "--version", "1.0.5", "--device", "rtr-1", "--device", "rtr-2",
		"--reason", "1.1.0 breaks RS-485 on rev 2", "--valid", "24h", "-o", ticket)
	if err != nil || !strings.Contains(stderr, "devices rtr-1, rtr-2") || !strings.Contains(stderr, "(in 1d0h)") {
		t.Fatalf("ticket: %v %s", err, stderr)
	}
	if _, _, err := run("bundle", "ticket", "--key", a.KeyPath, "--version", "1.0.5", "--site", "s1", "--reason", "r", "-o", ticket); err == nil || !strings.Contains(err.Error(), "without --force") {
		t.Fatalf("ticket over an existing one: %v", err)
	}
	if _, _, err := verify(append(dev, "--ticket", ticket)...); !errors.Is(err, bundle.ErrTicket) || !strings.Contains(err.Error(), "1 of 2") {
		t.Fatalf("ticket with one signature of two: %v", err)
	}
	_, stderr, err = run("bundle", "cosign", "--key", b.KeyPath, ticket)
	if err != nil || !strings.Contains(stderr, "downgrade ticket for 1.0.5") {
		t.Fatalf("cosign the ticket: %v %s", err, stderr)
	}
	if out, _, err := verify(append(dev, "--ticket", ticket)...); err != nil || !strings.Contains(out, "valid") {
		t.Fatalf("downgrade with a cosigned ticket: %v %s", err, out)
	}
	other := []string{"--installed", "1.1.0", "--device", "rtr-3", "--site", "s1", "--ticket", ticket}
	if _, _, err := verify(other...); !errors.Is(err, bundle.ErrTicket) {
		t.Fatalf("ticket on another device: %v", err)
	}
	for name, args := range map[string][]string{
		"too long":           {"--device", "rtr-1", "--valid", "800h"},
		"devices and a site": {"--device", "rtr-1", "--site", "s1"},
		"nobody":             {},
	} {
		base := []string{"bundle", "ticket", "--key", a.KeyPath, "--version", "1.0.5", "--reason", "r", "-o", filepath.Join(dir, "x.json")}
		if _, _, err := run(append(base, args...)...); !errors.Is(err, bundle.ErrTicket) {
			t.Errorf("ticket %s: %v", name, err)
		}
	}
}

// TestBundleBuildCompression: the binary is zstd-compressed by default (a
// format 2 bundle, a fraction of the size, the transfer time said), none
// builds the format 1 bundle older devices read, and an unknown name is
// refused.
func TestBundleBuildCompression(t *testing.T) {
	dir := t.TempDir()
	key, pub, err := dsse.GenerateKeyFiles(dir, "release")
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable() // an amd64 ELF standing in for linkguard
	build := func(name string, extra ...string) (string, bundle.Manifest, int64) {
		t.Helper()
		out := filepath.Join(dir, name)
		stdout, _, err := run(append([]string{"bundle", "build", "--arch", "amd64", "--version", "1.2.3", "--binary", self, "--key", key, "-o", out}, extra...)...)
		if err != nil {
			t.Fatal(err)
		}
		if o, _, err := run("bundle", "verify", out, "--trust", pub, "--arch", "amd64"); err != nil || !strings.Contains(o, "valid") {
			t.Fatalf("verify %s: %v %q", name, err, o)
		}
		f, _ := os.Open(out)
		defer f.Close()
		ring, _ := dsse.LoadKeyring(pub)
		m, err := bundle.Verify(f, bundle.Policy{Keys: ring, Arch: "amd64"})
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		return stdout, m, fi.Size()
	}
	zout, zm, zsize := build("z.lgb")
	pout, pm, psize := build("p.lgb", "--compression", "none")
	if zm.Format != 2 || zm.Payloads[0].Compression != bundle.Zstd || pm.Format != 1 || pm.Payloads[0].Compression != bundle.None {
		t.Fatalf("formats %d/%q and %d/%q", zm.Format, zm.Payloads[0].Compression, pm.Format, pm.Payloads[0].Compression)
	}
	if zsize*2 > psize {
		t.Errorf("compressed bundle %d bytes, uncompressed %d", zsize, psize)
	}
	if !strings.Contains(zout, "stored zstd") || !strings.Contains(zout, "uncompressed") || !strings.Contains(zout, "at 115200 baud") {
		t.Errorf("build output:\n%s", zout)
	}
	if strings.Contains(pout, "stored zstd") || strings.Contains(pout, "uncompressed") {
		t.Errorf("uncompressed build output:\n%s", pout)
	}
	if _, _, err := run("bundle", "build", "--arch", "amd64", "--version", "1.2.3", "--binary", self, "--key", key,
		"-o", filepath.Join(dir, "x.lgb"), "--compression", "xz"); !errors.Is(err, bundle.ErrCompression) {
		t.Fatalf("--compression xz: %v", err)
	}
}

func TestSerialTime(t *testing.T) {
	// 13 MB over 115200 baud, base64 at 8N1: about 26 minutes.
	if got := serialTime(13 << 20); got < 26*time.Minute || got > 27*time.Minute {
		t.Errorf("serialTime(13 MiB) = %v", got)
	}
}
