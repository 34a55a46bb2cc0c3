package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/config/configtest"
	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/firmware/bundle/bundletest"
	"linkguard.dev/linkguard/firmware/provision/layout"
	"linkguard.dev/linkguard/firmware/slot"
	"linkguard.dev/linkguard/firmware/update"
	"linkguard.dev/linkguard/hal/envtest"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/policytest"
	"linkguard.dev/linkguard/scripts"
)

// TestProvisionedDeviceBoots provisions a fresh device over a pty — the real
// linkguard provision-console on one end, lgctl provision with no --config
// on the other — into an empty directory standing for its root, installs
// firmware in its slots, and starts it exactly as the shipped systemd unit
// and procd script do (their command lines, read from the files, run
// chrooted there). The agent must pass its own check, load the provisioned
// policy, reach the broker with the provisioned certificate, and report
// its link filter on the interface it was given.
func TestProvisionedDeviceBoots(t *testing.T) {
	tap, _ := configtest.Tap(t) // root: chroot and a packet socket
	devEnd, techEnd := envtest.SocatPair(t)
	linkguard, lglaunch := deviceBinaries(t)
	root := t.TempDir()
	etc := filepath.Join(root, filepath.FromSlash(layout.Dir))

	// The device side: its console on the serial line.
	var conLog bytes.Buffer
	con := exec.Command(linkguard, "provision-console", "--dir", etc, "--port", devEnd)
	con.Stdout, con.Stderr = &conLog, &conLog
	if err := con.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { con.Process.Kill(); con.Wait() }()

	// The technician's side: keys, a signed policy, the CA, a broker.
	dir := t.TempDir()
	committeeKey, committeePub, _ := dsse.GenerateKeyFiles(dir, "committee")
	_, opsPub, _ := dsse.GenerateKeyFiles(dir, "ops")
	rel := bundletest.NewRelease(t)
	priv, err := dsse.LoadPrivateKey(committeeKey)
	if err != nil {
		t.Fatal(err)
	}
	policyPath := filepath.Join(dir, "policy.signed.json")
	pol := policytest.Synthetic(8, 7)
	pol.Serial = 7
	os.WriteFile(policyPath, policytest.Sign(t, policytest.YAML(pol), priv), 0o644)
	pki := brokertest.NewPKI(t)
	broker := brokertest.Mochi(t, pki)
	msgs := listen(t, broker.(brokertest.Inline), contract.TopicsFor("rtr-boot", "north"))

	out, _, err := run("provision", "--port", techEnd, "--device-id", "rtr-boot", "--site", "north", "--broker", broker.URL(),
		"--ca-cert", pki.CA, "--ca-key", pki.CAKey, "--trust", committeePub, "--operator", opsPub, "--release", rel.PubPath,
		"--policy", policyPath, "--links-mode", "monitor", "--outside", tap)
	if err != nil || !strings.Contains(out, "rtr-boot provisioned: identity, key, cert, ca, config, done, trust") {
		t.Fatalf("provision: %v\n%s\ndevice console:\n%s", err, out, conLog.String())
	}

	// Firmware in the slots, and the launcher where the init files look.
	slots, err := slot.New(filepath.Join(root, filepath.FromSlash(layout.SlotRoot)))
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(linkguard)
	if err != nil {
		t.Fatal(err)
	}
	b := rel.WriteFile(t, t.TempDir(), bundletest.Spec{Version: "1.0.0", Arch: runtime.GOARCH, Binary: string(bin)})
	if res, err := (&update.Installer{Slots: slots, Keys: rel.Ring}).InstallFile(b, false); err != nil || res.Candidate {
		t.Fatalf("install: %+v %v", res, err)
	}
	copyExecutable(t, lglaunch, filepath.Join(root, filepath.FromSlash(layout.Launcher)))

	systemd, err := scripts.SystemdCommand()
	if err != nil {
		t.Fatal(err)
	}
	procd, err := scripts.ProcdCommand()
	if err != nil {
		t.Fatal(err)
	}

	// What a technician runs on the device: the shipped CLI path, through
	// the launcher, checks the provisioned configuration.
	check := chrooted(root, layout.Launcher, "-root", layout.SlotRoot, "-cli", "--", "run", "--check", "--config", layout.Path(layout.Config))
	if out, err := check.CombinedOutput(); err != nil || !strings.Contains(string(out), "valid; effective configuration") {
		t.Fatalf("run --check on the device: %v\n%s", err, out)
	}

	for _, init := range []struct {
		name string
		argv []string
	}{{"systemd", systemd}, {"procd", procd}} {
		t.Run(init.name, func(t *testing.T) {
			boot(t, root, init.argv, tap, msgs)
		})
	}
}

// boot starts argv chrooted in root and waits for the device to come online
// with its policy and to report its link filter, then stops it as the init
// system would.
func boot(t *testing.T, root string, argv []string, tap string, msgs *inbox) {
	msgs.reset()
	cmd := chrooted(root, argv[0], argv[1:]...)
	log := newAgentLog(t)
	cmd.Stdout, cmd.Stderr = log.File, log.File
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("the agent did not stop on SIGTERM\n%s", log.String())
		}
	}()
	fail := func(format string, args ...any) {
		t.Helper()
		select {
		case err := <-exited:
			t.Fatalf(format+"\nthe agent exited: %v\n%s", append(args, err, log.String())...)
		default:
			t.Fatalf(format+"\n%s", append(args, log.String())...)
		}
	}
	var state struct {
		Online bool `json:"online"`
		Policy *struct {
			Serial uint64 `json:"serial"`
		} `json:"policy"`
	}
	if !msgs.wait(30*time.Second, func(topic string, payload []byte) bool {
		// A state published before the policy file is loaded says serial
		// 0 (on a loaded machine the link can connect first); loading it
		// publishes the state again.
		return strings.HasSuffix(topic, "/state") && json.Unmarshal(payload, &state) == nil && state.Online && state.Policy != nil && state.Policy.Serial != 0
	}) {
		fail("no online state with a policy from the device")
	}
	if state.Policy.Serial != 7 {
		fail("the device enforces policy %d, want the provisioned 7", state.Policy.Serial)
	}
	var tele struct {
		Sections struct {
			Links *struct {
				Ports []struct {
					Name string `json:"name"`
				} `json:"ports"`
			} `json:"links"`
		} `json:"sections"`
	}
	if !msgs.wait(30*time.Second, func(topic string, payload []byte) bool {
		return strings.HasSuffix(topic, "/telemetry") && json.Unmarshal(payload, &tele) == nil && tele.Sections.Links != nil
	}) {
		fail("no telemetry with the links section from the device")
	}
	if p := tele.Sections.Links.Ports; len(p) != 1 || p[0].Name != tap {
		fail("the link filter watches %+v, want %s", p, tap)
	}
}

// chrooted is a command run as the init system would, in the device's root:
// the init files' absolute paths land in the test's directory.
func chrooted(root, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Pdeathsig: syscall.SIGKILL}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	return cmd
}

func copyExecutable(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// inbox keeps what the broker's inline client hears on a device's topics.
type inbox struct {
	mu     sync.Mutex
	msgs   []heard
	notify chan struct{}
}

type heard struct {
	topic   string
	payload []byte
}

func listen(t *testing.T, b brokertest.Inline, topics contract.Topics) *inbox {
	in := &inbox{notify: make(chan struct{}, 1)}
	for _, topic := range []string{topics.State, topics.Telemetry} {
		unsub, err := b.Subscribe(topic, func(topic string, payload []byte, _ bool) {
			in.mu.Lock()
			in.msgs = append(in.msgs, heard{topic, bytes.Clone(payload)})
			in.mu.Unlock()
			select {
			case in.notify <- struct{}{}:
			default:
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(unsub)
	}
	return in
}

func (in *inbox) reset() {
	in.mu.Lock()
	in.msgs = nil
	in.mu.Unlock()
}

// wait reports whether a message that ok accepts arrives within d.
func (in *inbox) wait(d time.Duration, ok func(topic string, payload []byte) bool) bool {
	deadline := time.After(d)
	seen := 0
	for {
		in.mu.Lock()
		msgs := in.msgs[seen:]
		seen = len(in.msgs)
		in.mu.Unlock()
		for _, m := range msgs {
			if ok(m.topic, m.payload) {
				return true
			}
		}
		select {
		case <-in.notify:
		case <-deadline:
			return false
		}
	}
}

// agentLog is a file for a process's output that the test reads while the
// process still writes it.
type agentLog struct{ *os.File }

func newAgentLog(t *testing.T) agentLog {
	f, err := os.Create(filepath.Join(t.TempDir(), "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return agentLog{f}
}

func (l agentLog) String() string {
	b, _ := os.ReadFile(l.Name())
	return string(b)
}
