package scripts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"linkguard.dev/linkguard/firmware/provision/layout"
	"linkguard.dev/linkguard/hal/envtest"
)

var (
	once     sync.Once
	lglaunch string
	buildErr error
)

// launcher builds the real lglaunch, so the flags the init files pass are
// checked against the program that parses them.
func launcher(t *testing.T) string {
	once.Do(func() {
		dir, err := os.MkdirTemp("", "scripts-test")
		if err != nil {
			buildErr = err
			return
		}
		lglaunch = filepath.Join(dir, "lglaunch")
		out, err := exec.Command("go", "build", "-o", lglaunch, "linkguard.dev/linkguard/firmware/cmd/lglaunch").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("%w: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build lglaunch: %v", buildErr)
	}
	return lglaunch
}

func TestMain(m *testing.M) {
	code := m.Run()
	if lglaunch != "" {
		os.RemoveAll(filepath.Dir(lglaunch))
	}
	os.Exit(code)
}

// checkLauncherArgs runs the real launcher with the flags an init file gives
// it (and -status), so an unknown or malformed flag fails here, not on a
// device.
func checkLauncherArgs(t *testing.T, argv []string) {
	t.Helper()
	if len(argv) < 2 || argv[0] != "/opt/linkguard/lglaunch" {
		t.Fatalf("init file starts %q, want /opt/linkguard/lglaunch", argv)
	}
	sep := slices.Index(argv, "--")
	if sep < 0 || !slices.Equal(argv[sep+1:], []string{"run", "--config", layout.Path(layout.Config)}) {
		t.Fatalf("agent arguments %q", argv)
	}
	flags := slices.Clone(argv[1:sep])
	if i := slices.Index(flags, "-root"); i < 0 || flags[i+1] != "/opt/linkguard" {
		t.Fatalf("launcher flags %q lack -root /opt/linkguard", flags)
	}
	root := t.TempDir()
	flags[slices.Index(flags, "-root")+1] = root
	os.WriteFile(filepath.Join(root, "state.json"), []byte(`{"active":"a","attempts":0,"a":{"valid":false},"b":{"valid":false}}`), 0o644)
	out, err := exec.Command(launcher(t), append(flags, "-status")...).CombinedOutput()
	if err != nil {
		t.Fatalf("lglaunch rejects the init file's flags %q: %v\n%s", flags, err, out)
	}
}

func TestProcdScript(t *testing.T) {
	sh := envtest.Command(t, "sh")
	if out, err := exec.Command(sh, "-n", "linkguard.procd").CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v\n%s", err, out)
	}
	// Run start_service with procd's helpers recording what they are given.
	script := `
procd_open_instance() { echo "open $*"; }
procd_set_param() { printf '%s' "$1"; shift; for a in "$@"; do printf '\t%s' "$a"; done; echo; }
procd_close_instance() { echo close; }
. ./linkguard.procd
[ "$USE_PROCD" = 1 ] || { echo "USE_PROCD not set" >&2; exit 1; }
start_service
`
	out, err := exec.Command(sh, "-c", script).Output()
	if err != nil {
		t.Fatalf("start_service: %v", err)
	}
	params := map[string][]string{}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if lines[0] != "open linkguard" || lines[len(lines)-1] != "close" {
		t.Fatalf("instance not opened and closed: %q", lines)
	}
	for _, l := range lines[1 : len(lines)-1] {
		f := strings.Split(l, "\t")
		params[f[0]] = f[1:]
	}
	checkLauncherArgs(t, params["command"])
	// The command tests start is the one sh starts.
	if cmd, err := ProcdCommand(); err != nil || !slices.Equal(cmd, params["command"]) {
		t.Errorf("ProcdCommand() = %q, %v; sh says %q", cmd, err, params["command"])
	}
	if !slices.Equal(params["respawn"], []string{"3600", "5", "0"}) {
		t.Errorf("respawn %q: want retry forever", params["respawn"])
	}
	if !slices.Equal(params["capabilities"], []string{"/etc/capabilities/linkguard.json"}) || !slices.Equal(params["no_new_privs"], []string{"1"}) {
		t.Errorf("capabilities %q no_new_privs %q", params["capabilities"], params["no_new_privs"])
	}
}

func TestCapabilitiesFile(t *testing.T) {
	b, err := os.ReadFile("linkguard.capabilities.json")
	if err != nil {
		t.Fatal(err)
	}
	var caps map[string][]string
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&caps); err != nil {
		t.Fatal(err)
	}
	for _, set := range []string{"bounding", "effective", "ambient", "permitted", "inheritable"} {
		if !slices.Equal(caps[set], []string{"CAP_NET_RAW", "CAP_NET_ADMIN"}) {
			t.Errorf("%s = %q", set, caps[set])
		}
	}
	if len(caps) != 5 {
		t.Errorf("unexpected sets: %v", caps)
	}
}

func TestSystemdUnit(t *testing.T) {
	analyze := envtest.Command(t, "systemd-analyze")
	unit, err := os.ReadFile("linkguard.service")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, l := range strings.Split(string(unit), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			keys[k] = v
		}
	}
	checkLauncherArgs(t, strings.Fields(keys["ExecStart"]))
	if cmd, err := SystemdCommand(); err != nil || !slices.Equal(cmd, strings.Fields(keys["ExecStart"])) {
		t.Errorf("SystemdCommand() = %q, %v; ExecStart=%s", cmd, err, keys["ExecStart"])
	}
	if p, _ := ProcdCommand(); !slices.Equal(p, strings.Fields(keys["ExecStart"])) {
		t.Errorf("procd starts %q, systemd %s: the two init systems must start the same", p, keys["ExecStart"])
	}
	for k, want := range map[string]string{
		"Restart":               "always",
		"CapabilityBoundingSet": "CAP_NET_RAW CAP_NET_ADMIN",
		"AmbientCapabilities":   "CAP_NET_RAW CAP_NET_ADMIN",
		"ProtectSystem":         "strict",
		"ReadOnlyPaths":         "/etc/linkguard",
		"ReadWritePaths":        "/opt/linkguard -/etc/linkguard/policy",
		"StateDirectory":        "linkguard",
		"NoNewPrivileges":       "yes",
		"StartLimitIntervalSec": "0",
	} {
		if keys[k] != want {
			t.Errorf("%s=%q, want %q", k, keys[k], want)
		}
	}
	// systemd-analyze verify checks that ExecStart is executable: point it
	// at the real launcher in a copy. Any message (an unknown key is only a
	// warning with exit status 0) fails the test.
	dir := t.TempDir()
	copyUnit := filepath.Join(dir, "linkguard.service")
	os.WriteFile(copyUnit, bytes.ReplaceAll(unit, []byte("/opt/linkguard/lglaunch"), []byte(launcher(t))), 0o644)
	out, err := exec.Command(analyze, "verify", copyUnit).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	sec, _ := exec.Command(analyze, "security", "--offline=yes", copyUnit).CombinedOutput()
	if i := bytes.Index(sec, []byte("Overall exposure level")); i >= 0 {
		t.Logf("%s", bytes.TrimSpace(sec[i:]))
	}
}

func TestCLIWrapper(t *testing.T) {
	sh := envtest.Command(t, "sh")
	if out, err := exec.Command(sh, "-n", "linkguard.cli").CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v\n%s", err, out)
	}
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "lglaunch"), []byte("#!/bin/sh\necho \"$@\"\n"), 0o755)
	cmd := exec.Command(sh, "linkguard.cli", "update", "install", "/tmp/a b.lgb")
	cmd.Env = append(os.Environ(), "LINKGUARD_ROOT="+root)
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != "-root "+root+" -cli -- update install /tmp/a b.lgb" {
		t.Fatalf("wrapper ran %q, %v", out, err)
	}
}

func TestShellWords(t *testing.T) {
	got, err := shellWords(`"$ROOT/x" -a "b c" $ROOT d"e"f`, map[string]string{"ROOT": "/r"})
	if err != nil || !slices.Equal(got, []string{"/r/x", "-a", "b c", "/r", "def"}) {
		t.Fatalf("%q %v", got, err)
	}
	for _, bad := range []string{`"open`, `$NOPE`, `it's`} {
		if _, err := shellWords(bad, nil); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
