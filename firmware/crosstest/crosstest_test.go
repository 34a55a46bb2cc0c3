package crosstest

import (
	"crypto/ed25519"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/hal/envtest"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
)

// crossBuild builds pkg for linux/arm GOARM=7 the way releases are built.
func crossBuild(t *testing.T, pkg, out string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm", "GOARM=7")
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cross-build %s: %v\n%s", pkg, err, b)
	}
	fi, _ := os.Stat(out)
	t.Logf("%s: linux/arm GOARM=7, %.1f MB, built in %v", filepath.Base(out), float64(fi.Size())/(1<<20), time.Since(start).Round(time.Millisecond))
}

func TestARMUnderQEMU(t *testing.T) {
	qemu := envtest.Command(t, "qemu-arm")
	dir := t.TempDir()
	lg, launch := filepath.Join(dir, "linkguard"), filepath.Join(dir, "lglaunch")
	crossBuild(t, "linkguard.dev/linkguard/agent/cmd/linkguard", lg)
	crossBuild(t, "linkguard.dev/linkguard/firmware/cmd/lglaunch", launch)

	qrun := func(args ...string) (string, error) {
		start := time.Now()
		out, err := exec.Command(qemu, args...).CombinedOutput()
		t.Logf("qemu-arm %s: %v", filepath.Base(args[0])+" "+strings.Join(args[1:2], ""), time.Since(start).Round(time.Millisecond))
		return string(out), err
	}
	if out, err := qrun(lg, "version"); err != nil || !strings.Contains(out, "linux/armv7") {
		t.Fatalf("version under qemu: %v\n%s", err, out)
	}

	// A policy signed by two committee keys, verified by the ARM binary.
	keyA, pubA, err := dsse.GenerateKeyFiles(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	_, pubC, _ := dsse.GenerateKeyFiles(dir, "c")
	priv, _ := dsse.LoadPrivateKey(keyA)
	now := time.Now().UTC().Truncate(time.Second)
	doc := "serial: 7\nissued: " + now.Add(-time.Hour).Format(time.RFC3339) + "\nexpires: " + now.AddDate(0, 1, 0).Format(time.RFC3339) +
		"\ndefault: deny\ndomestic: [103.1.0.0/16]\napprovals:\n  - {id: LA-1, holder: Example, remote: [203.0.113.0/24], services: [tcp/443]}\n"
	env, err := dsse.Sign(policy.PayloadType, []byte(doc), []ed25519.PrivateKey{priv}...)
	if err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "policy.json")
	os.WriteFile(good, env, 0o644)
	if out, err := qrun(lg, "policy", "verify", "--trust", pubA, good); err != nil || !strings.Contains(out, "serial:    7") {
		t.Fatalf("policy verify under qemu-arm: %v\n%s", err, out)
	}
	if out, err := qrun(lg, "policy", "verify", "--trust", pubC, good); err == nil {
		t.Fatalf("ARM binary accepted a policy signed by an untrusted key:\n%s", out)
	}

	// The ARM launcher reads slot state.
	root := filepath.Join(dir, "slots")
	os.MkdirAll(root, 0o755)
	os.WriteFile(filepath.Join(root, "state.json"), []byte(`{"active":"b","attempts":0,"a":{"valid":false},"b":{"valid":true,"version":"1.0.0"}}`), 0o644)
	if out, err := qrun(launch, "-root", root, "-status"); err != nil || !strings.Contains(out, `"version": "1.0.0"`) {
		t.Fatalf("lglaunch -status under qemu-arm: %v\n%s", err, out)
	}
}
