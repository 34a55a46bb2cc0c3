package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"linkguard.dev/linkguard/firmware/bundle"
	"linkguard.dev/linkguard/firmware/bundle/bundletest"
	"linkguard.dev/linkguard/firmware/provision"
	"linkguard.dev/linkguard/firmware/slot"
	"linkguard.dev/linkguard/firmware/update"
	"linkguard.dev/linkguard/hal/envtest"
	"linkguard.dev/linkguard/policy/dsse"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// deviceBinaries builds the real linkguard and lglaunch for this machine.
func deviceBinaries(t *testing.T) (linkguard, lglaunch string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "lgctl-test-bin")
		if buildErr != nil {
			return
		}
		build := exec.Command("go", "build", "-o", binDir+"/", "linkguard.dev/linkguard/agent/cmd/linkguard", "linkguard.dev/linkguard/firmware/cmd/lglaunch")
		build.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as on a device: they also run in a chroot
		out, err := build.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "linkguard"), filepath.Join(binDir, "lglaunch")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func TestBundleBuildVerify(t *testing.T) {
	dir := t.TempDir()
	key, pub, err := dsse.GenerateKeyFiles(dir, "release")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "default.yaml")
	os.WriteFile(cfg, []byte("device: {}\n"), 0o644)
	procd := filepath.Join(dir, "linkguard.procd")
	os.WriteFile(procd, []byte("#!/bin/sh /etc/rc.common\n"), 0o755)
	out := filepath.Join(dir, "lg.lgb")
	self, _ := os.Executable() // an amd64 ELF standing in for linkguard
	stdout, _, err := run("bundle", "build", "--arch", "amd64", "--version", "1.2.3", "--binary", self,
		"--key", key, "--default-config", cfg, "--init", procd, "-o", out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"linkguard 1.2.3 for amd64", "config/default.yaml", "init/linkguard.procd"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("build output lacks %q:\n%s", want, stdout)
		}
	}
	if o, _, err := run("bundle", "verify", out, "--trust", pub, "--arch", "amd64"); err != nil || !strings.Contains(o, "valid") {
		t.Fatalf("verify: %v %q", err, o)
	}
	if _, _, err := run("bundle", "verify", out, "--trust", pub, "--arch", "arm"); !errors.Is(err, bundle.ErrArch) {
		t.Fatalf("verify as arm: %v", err)
	}
	_, otherPub, _ := dsse.GenerateKeyFiles(dir, "other")
	if _, _, err := run("bundle", "verify", out, "--trust", otherPub, "--arch", "amd64"); !errors.Is(err, bundle.ErrSignature) {
		t.Fatalf("verify with another key: %v", err)
	}
	if _, _, err := run("bundle", "build", "--arch", "arm", "--version", "1.2.3", "--binary", self, "--key", key, "-o", filepath.Join(dir, "x.lgb")); err == nil || !strings.Contains(err.Error(), "built for amd64") {
		t.Fatalf("amd64 binary as arm bundle: %v", err)
	}
	if _, _, err := run("bundle", "build", "--arch", "amd64", "--version", "1.2.3", "--binary", cfg, "--key", key, "-o", filepath.Join(dir, "y.lgb")); err == nil {
		t.Fatal("non-ELF binary bundled")
	}
}

// selfCommitting is a slot binary that, on trial, commits itself through the
// launcher as the agent does once healthy.
func selfCommitting(lglaunch string) string {
	return "#!/bin/sh\nif [ \"$LINKGUARD_SLOT_TRIAL\" = 1 ]; then exec " + lglaunch + " -root \"$LINKGUARD_SLOT_ROOT\" -commit \"$LINKGUARD_SLOT\"; fi\nexit 0\n"
}

// sshDevice is an SSH server standing in for a device: it runs exec requests
// with sh, so scp -t and the real linkguard binary do the work.
func sshDevice(t *testing.T) (addr, knownHosts, identity string) {
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, _ := ssh.NewSignerFromKey(hostPriv)
	clientPub, clientPriv, _ := ed25519.GenerateKey(rand.Reader)
	wantPub, _ := ssh.NewPublicKey(clientPub)
	dir := t.TempDir()
	blk, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	identity = filepath.Join(dir, "id_ed25519")
	os.WriteFile(identity, pem.EncodeToMemory(blk), 0o600)
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) == string(wantPub.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("unknown key")
	}}
	cfg.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go serveSSH(nc, cfg)
		}
	}()
	addr = ln.Addr().String()
	knownHosts = filepath.Join(dir, "known_hosts")
	os.WriteFile(knownHosts, []byte(knownhosts.Line([]string{addr}, hostSigner.PublicKey())+"\n"), 0o644)
	return addr, knownHosts, identity
}

func serveSSH(nc net.Conn, cfg *ssh.ServerConfig) {
	_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		ch, reqs, err := nch.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer ch.Close()
			for req := range reqs {
				if req.Type != "exec" {
					req.Reply(false, nil)
					continue
				}
				var p struct{ Cmd string }
				ssh.Unmarshal(req.Payload, &p)
				req.Reply(true, nil)
				cmd := exec.Command("sh", "-c", p.Cmd)
				cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
				stdin, _ := cmd.StdinPipe()
				go func() { io.Copy(stdin, ch); stdin.Close() }()
				code := 0
				if err := cmd.Run(); err != nil {
					code = 1
					var ee *exec.ExitError
					if errors.As(err, &ee) {
						code = ee.ExitCode()
					}
				}
				ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
				return
			}
		}()
	}
}

// TestFlashOverSSH pushes bundles to an SSH "device" that runs the real
// linkguard and lglaunch: a first install, an update that commits itself, and
// a crash-looping update that the launcher rolls back, reported as an error.
func TestFlashOverSSH(t *testing.T) {
	envtest.Command(t, "scp")
	linkguard, lglaunch := deviceBinaries(t)
	rel := bundletest.NewRelease(t)
	dev := t.TempDir()
	root := filepath.Join(dev, "slots")
	_, committee, _ := dsse.GenerateKeyFiles(dev, "committee")
	cfgPath := filepath.Join(dev, "linkguard.yaml")
	os.WriteFile(cfgPath, []byte("device: {id: rtr-1, site: s1, kind: router}\npolicy: {file: "+dev+"/p.json, trust: ["+committee+"]}\n"+
		"update: {root: "+root+", trust: ["+rel.PubPath+"]}\n"), 0o644)
	addr, kh, id := sshDevice(t)
	flash := func(spec bundletest.Spec) (string, string, error) {
		b := rel.WriteFile(t, t.TempDir(), spec)
		return run("flash", "--host", "root@"+addr, "--identity", id, "--known-hosts", kh,
			"--remote-dir", t.TempDir(), "--remote-linkguard", linkguard, "--remote-config", cfgPath,
			"--restart-cmd", lglaunch+" -root "+root+" -poll 20ms", "--health-timeout", "20s", b)
	}
	out, errOut, err := flash(bundletest.Spec{Version: "1.0.0", Binary: selfCommitting(lglaunch)})
	if err != nil || !strings.Contains(out, "active now") || !strings.Contains(out, "active slot a running 1.0.0") || !strings.Contains(errOut, "100%") {
		t.Fatalf("first flash: %v\n%s\n%s", err, out, errOut)
	}
	out, _, err = flash(bundletest.Spec{Version: "1.1.0", Binary: selfCommitting(lglaunch)})
	if err != nil || !strings.Contains(out, "committed") || !strings.Contains(out, "active slot b running 1.1.0") {
		t.Fatalf("update: %v\n%s", err, out)
	}
	out, _, err = flash(bundletest.Spec{Version: "1.2.0", Binary: "#!/bin/sh\nexit 1\n"})
	if err == nil || !strings.Contains(err.Error(), "rolled back from 1.2.0") || !strings.Contains(out, "active slot b running 1.1.0") {
		t.Fatalf("crash-looping update: %v\n%s", err, out)
	}
	// A bundle for another architecture is refused by the device before anything is written.
	out, _, err = flash(bundletest.Spec{Version: "1.3.0", Arch: "mipsle"})
	if err == nil || !strings.Contains(err.Error(), "wrong architecture") {
		t.Fatalf("mipsle bundle: %v\n%s", err, out)
	}
	// A host key not in known_hosts is refused.
	os.WriteFile(kh, nil, 0o644)
	if _, _, err := flash(bundletest.Spec{Version: "1.3.0"}); err == nil || !strings.Contains(err.Error(), "key") {
		t.Fatalf("unknown host key: %v", err)
	}
}

func ptyPair(t *testing.T) (dev *os.File, tech string) {
	a, b := envtest.SocatPair(t)
	f, err := os.OpenFile(a, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return f, b
}

// TestProvisionAndFlashOverPty runs lgctl provision and lgctl flash --port
// against a device console on the other end of a real pty pair.
func TestProvisionAndFlashOverPty(t *testing.T) {
	_, lglaunch := deviceBinaries(t)
	devEnd, techPort := ptyPair(t)
	dir := t.TempDir()
	caCert, caKey := writeCA(t, dir)
	_, committee, _ := dsse.GenerateKeyFiles(dir, "committee")
	rel := bundletest.NewRelease(t)
	cfg := filepath.Join(dir, "device.yaml")
	os.WriteFile(cfg, []byte("device: {id: rtr-9, site: north, kind: router}\n"), 0o644)

	devDir := filepath.Join(t.TempDir(), "etc")
	slots, _ := slot.New(filepath.Join(t.TempDir(), "slots"))
	con := &provision.Console{Dir: devDir, Installer: &update.Installer{Slots: slots, Keys: rel.Ring},
		Restart: func() error { return exec.Command(lglaunch, "-root", slots.Root(), "-poll", "20ms").Run() },
		// The unlock jumper is fitted: DONE locks the console, and this
		// test provisions again and flashes after it.
		Physical: []provision.Presence{provision.PresenceFunc(func() (bool, error) { return true, nil })}}
	serveConsole(t, con, devEnd)

	args := []string{"provision", "--port", techPort, "--device-id", "rtr-9", "--site", "north", "--broker", "mqtts://broker:8883",
		"--ca-cert", caCert, "--ca-key", caKey, "--trust", committee, "--release", rel.PubPath, "--config", cfg}
	out, _, err := run(args...)
	if err != nil || !strings.Contains(out, "rtr-9 provisioned: identity, key, cert, ca, config, done, trust") {
		t.Fatalf("provision: %v\n%s", err, out)
	}
	for _, f := range []string{provision.KeyFile, provision.CertFile, provision.CAFile, provision.ConfigFile, "trust/policy/committee.pub", "trust/release/release.pub"} {
		if _, err := os.Stat(filepath.Join(devDir, f)); err != nil {
			t.Errorf("device lacks %s", f)
		}
	}
	// Resumable and idempotent: the same command again changes nothing.
	key1, _ := os.ReadFile(filepath.Join(devDir, provision.KeyFile))
	if out, _, err := run(args...); err != nil || strings.Contains(out, "keygen") {
		t.Fatalf("second provision: %v\n%s", err, out)
	}
	if key2, _ := os.ReadFile(filepath.Join(devDir, provision.KeyFile)); string(key1) != string(key2) {
		t.Fatal("device key replaced")
	}

	b1 := rel.WriteFile(t, t.TempDir(), bundletest.Spec{Version: "1.0.0", Binary: selfCommitting(lglaunch)})
	if out, _, err := run("flash", "--port", techPort, b1); err != nil || !strings.Contains(out, "active slot a running 1.0.0") {
		t.Fatalf("flash 1: %v\n%s", err, out)
	}
	b2 := rel.WriteFile(t, t.TempDir(), bundletest.Spec{Version: "1.1.0", Binary: selfCommitting(lglaunch)})
	if out, _, err := run("flash", "--port", techPort, b2); err != nil || !strings.Contains(out, "committed") {
		t.Fatalf("flash 2: %v\n%s", err, out)
	}
}
