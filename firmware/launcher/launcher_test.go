package launcher_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"linkguard.dev/linkguard/firmware/bundle"
	"linkguard.dev/linkguard/firmware/bundle/bundletest"
	"linkguard.dev/linkguard/firmware/slot"
	"linkguard.dev/linkguard/policy/dsse"
)

// lglaunch is the real launcher binary, built once.
var lglaunch string

func TestMain(m *testing.M) {
	if os.Getenv("LG_HELPER_INSTALL") != "" {
		helperInstall()
		return
	}
	dir, err := os.MkdirTemp("", "lglaunch")
	if err != nil {
		panic(err)
	}
	lglaunch = filepath.Join(dir, "lglaunch")
	out, err := exec.Command("go", "build", "-o", lglaunch, "linkguard.dev/linkguard/firmware/cmd/lglaunch").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build lglaunch: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Slot binaries: shell scripts standing in for the agent. A good one refuses
// to run without its policy (so "booted" means "enforcing"), logs, and on
// trial commits itself the way the agent does once healthy.
func good(version string) string {
	return `#!/bin/sh
d=$(dirname "$0")
[ -s "$d/config/policy.yaml" ] || { echo "no policy" >&2; exit 3; }
echo "enforcing ` + version + ` slot=$LINKGUARD_SLOT trial=$LINKGUARD_SLOT_TRIAL" >> "$BOOTLOG"
if [ "$LINKGUARD_SLOT_TRIAL" = 1 ]; then "$LGLAUNCH" -root "$LINKGUARD_SLOT_ROOT" -commit "$LINKGUARD_SLOT" || exit 4; fi
exit 0
`
}

func crash(version string) string {
	return "#!/bin/sh\necho \"crash " + version + "\" >> \"$BOOTLOG\"\nexit 1\n"
}

type rig struct {
	t    *testing.T
	rel  bundletest.Release
	s    *slot.Store
	log  string
	arch string
}

func newRig(t *testing.T) *rig {
	s, err := slot.New(filepath.Join(t.TempDir(), "slots"))
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, rel: bundletest.NewRelease(t), s: s, log: filepath.Join(t.TempDir(), "boot.log")}
}

func (r *rig) bundle(version, bin string) []byte {
	return r.rel.Build(r.t, bundletest.Spec{Version: version, Binary: bin, Extra: map[string]string{
		"config/policy.yaml": "policy " + version + "\n",
		"init/linkguard":     "#!/bin/sh /etc/rc.common\n",
	}})
}

func (r *rig) install(b []byte) slot.Installed {
	r.t.Helper()
	st, _ := r.s.Load()
	br, err := bundle.NewReader(bytes.NewReader(b), bundle.Policy{Keys: r.rel.Ring, Arch: "amd64", Installed: st.Installed()})
	if err != nil {
		r.t.Fatal(err)
	}
	in, err := r.s.Install(br, slot.InstallOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	return in
}

// launch runs the real launcher once, as the init system would.
func (r *rig) launch(extra ...string) (int, string) {
	r.t.Helper()
	args := append([]string{"-root", r.s.Root(), "-poll", "20ms", "-kill-grace", "2s"}, extra...)
	cmd := exec.Command(lglaunch, args...)
	cmd.Env = append(os.Environ(), "BOOTLOG="+r.log, "LGLAUNCH="+lglaunch)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		r.t.Fatalf("launcher: %v", err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

func (r *rig) bootLog() []string {
	b, _ := os.ReadFile(r.log)
	os.Remove(r.log)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func (r *rig) state() slot.State {
	st, err := r.s.Load()
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

func TestCommittedBoot(t *testing.T) {
	r := newRig(t)
	r.install(r.bundle("1.0.0", good("1.0.0")))
	code, out := r.launch()
	if got := r.bootLog(); code != 0 || len(got) != 1 || got[0] != "enforcing 1.0.0 slot=a trial=0" {
		t.Fatalf("code %d log %q\n%s", code, got, out)
	}
}

func TestCandidateCommits(t *testing.T) {
	r := newRig(t)
	r.install(r.bundle("1.0.0", good("1.0.0")))
	r.install(r.bundle("1.1.0", good("1.1.0")))
	code, out := r.launch()
	if got := r.bootLog(); code != 0 || len(got) != 1 || got[0] != "enforcing 1.1.0 slot=b trial=1" {
		t.Fatalf("code %d log %q\n%s", code, got, out)
	}
	if st := r.state(); st.Active != slot.B || st.Candidate != "" || st.Rollback != nil {
		t.Fatalf("state %+v", st)
	}
	r.launch()
	if got := r.bootLog(); got[0] != "enforcing 1.1.0 slot=b trial=0" {
		t.Fatalf("after commit: %q", got)
	}
}

// TestCrashLoopRollsBack: a candidate that exits 1 at once is tried
// max-attempts times, then the launcher rolls back and runs the old slot.
func TestCrashLoopRollsBack(t *testing.T) {
	r := newRig(t)
	r.install(r.bundle("1.0.0", good("1.0.0")))
	r.install(r.bundle("1.1.0", crash("1.1.0")))
	code, out := r.launch("-max-attempts", "3")
	want := []string{"crash 1.1.0", "crash 1.1.0", "crash 1.1.0", "enforcing 1.0.0 slot=a trial=0"}
	if got := r.bootLog(); code != 0 || strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("code %d log %q, want %q\n%s", code, got, want, out)
	}
	st := r.state()
	if st.Active != slot.A || st.Candidate != "" || st.Rollback == nil || st.Rollback.FromVersion != "1.1.0" || st.Rollback.Attempts != 3 {
		t.Fatalf("state %+v rollback %+v", st, st.Rollback)
	}
	if !strings.Contains(out, "rolled back") {
		t.Fatalf("launcher did not log the rollback:\n%s", out)
	}
}

// TestTrialSurvivesLauncherDeath: the candidate takes the whole unit down with
// it each time (as a kernel panic or power loss would); attempts are counted
// before each start, so the fourth start of the launcher rolls back.
func TestTrialSurvivesLauncherDeath(t *testing.T) {
	r := newRig(t)
	r.install(r.bundle("1.0.0", good("1.0.0")))
	r.install(r.bundle("1.1.0", "#!/bin/sh\necho \"panic 1.1.0\" >> \"$BOOTLOG\"\nkill -KILL $PPID\nexit 1\n"))
	for i := 1; i <= 3; i++ {
		code, _ := r.launch("-max-attempts", "3")
		if code != -1 { // killed by the signal
			t.Fatalf("start %d: launcher exit %d, want killed", i, code)
		}
		if st := r.state(); st.Candidate != slot.B || st.Attempts != i {
			t.Fatalf("start %d: state %+v", i, st)
		}
	}
	code, out := r.launch("-max-attempts", "3")
	got := r.bootLog()
	if code != 0 || got[len(got)-1] != "enforcing 1.0.0 slot=a trial=0" || len(got) != 4 {
		t.Fatalf("code %d log %q\n%s", code, got, out)
	}
}

// TestHealthDeadline: a candidate that runs but never reports healthy is
// stopped and rolled back when the deadline passes.
func TestHealthDeadline(t *testing.T) {
	r := newRig(t)
	r.install(r.bundle("1.0.0", good("1.0.0")))
	r.install(r.bundle("1.1.0", "#!/bin/sh\necho \"hang 1.1.0\" >> \"$BOOTLOG\"\nexec sleep 60\n"))
	code, out := r.launch("-health-deadline", "300ms")
	got := r.bootLog()
	if code != 0 || strings.Join(got, "|") != "hang 1.1.0|enforcing 1.0.0 slot=a trial=0" {
		t.Fatalf("code %d log %q\n%s", code, got, out)
	}
	if st := r.state(); st.Rollback == nil || !strings.Contains(st.Rollback.Reason, "within 300ms") {
		t.Fatalf("state %+v", st)
	}
}

// helperInstall runs in a child process: install a bundle and SIGKILL itself
// right after step number LG_HELPER_KILL_AT (power loss).
func helperInstall() {
	root, path := os.Getenv("LG_HELPER_ROOT"), os.Getenv("LG_HELPER_BUNDLE")
	killAt, _ := strconv.Atoi(os.Getenv("LG_HELPER_KILL_AT"))
	ring, err := dsse.LoadKeyring(os.Getenv("LG_HELPER_PUB"))
	if err != nil {
		panic(err)
	}
	s, err := slot.New(root)
	if err != nil {
		panic(err)
	}
	st, _ := s.Load()
	f, err := os.Open(path)
	if err != nil {
		panic(err)
	}
	br, err := bundle.NewReader(f, bundle.Policy{Keys: ring, Arch: "amd64", Installed: st.Installed()})
	if err != nil {
		panic(err)
	}
	n := 0
	_, err = s.Install(br, slot.InstallOptions{AfterStep: func(step slot.Step) {
		fmt.Println(step)
		if n == killAt {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		n++
	}})
	if err != nil {
		panic(err)
	}
	os.Exit(0)
}

// TestInstallKilledAtEveryStep simulates power loss after each step of an
// install (and before the first), then boots with the real launcher: the
// device must come up enforcing either the old or the new version, and a
// following install must succeed.
func TestInstallKilledAtEveryStep(t *testing.T) {
	// Learn the steps from a full install in a child.
	steps := func() []string {
		r := newRig(t)
		r.install(r.bundle("1.0.0", good("1.0.0")))
		out := runHelper(t, r, r.bundle("1.1.0", good("1.1.0")), -1)
		return strings.Fields(out)
	}()
	if len(steps) < 8 {
		t.Fatalf("steps %q", steps)
	}
	t.Logf("install steps: %s", strings.Join(steps, " "))
	for k := range steps {
		// Both slots hold a version so every rename has an old directory.
		r := newRig(t)
		r.install(r.bundle("0.9.0", good("0.9.0")))
		in := r.install(r.bundle("1.0.0", good("1.0.0")))
		r.s.Commit(in.Slot)
		runHelper(t, r, r.bundle("1.1.0", good("1.1.0")), k)

		code, out := r.launch()
		got := r.bootLog()
		wantNew := steps[k] == string(slot.StepCandidate)
		want := "enforcing 1.0.0 slot=b trial=0"
		if wantNew {
			want = "enforcing 1.1.0 slot=a trial=1"
		}
		if code != 0 || len(got) != 1 || got[0] != want {
			t.Fatalf("killed after %s (step %d): code %d log %q, want %q\n%s", steps[k], k, code, got, want, out)
		}
		// The device can still be updated.
		if !wantNew {
			r.install(r.bundle("1.2.0", good("1.2.0")))
			r.launch()
			if got := r.bootLog(); got[0] != "enforcing 1.2.0 slot=a trial=1" {
				t.Fatalf("killed after %s: next install boots %q", steps[k], got)
			}
		}
		if leftovers, _ := filepath.Glob(filepath.Join(r.s.Root(), ".[ab].*")); len(leftovers) != 0 && !wantNew {
			t.Fatalf("killed after %s: leftovers %q after the next install", steps[k], leftovers)
		}
	}
}

func runHelper(t *testing.T, r *rig, b []byte, killAt int) string {
	t.Helper()
	dir := t.TempDir()
	bpath := filepath.Join(dir, "b.lgb")
	os.WriteFile(bpath, b, 0o644)
	pub := r.rel.PubPath
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "LG_HELPER_INSTALL=1", "LG_HELPER_ROOT="+r.s.Root(), "LG_HELPER_BUNDLE="+bpath,
		"LG_HELPER_PUB="+pub, "LG_HELPER_KILL_AT="+strconv.Itoa(killAt))
	out, err := cmd.Output()
	if killAt < 0 && err != nil {
		t.Fatalf("helper: %v", err)
	}
	if killAt >= 0 {
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("helper not killed at step %d: %v\n%s", killAt, err, out)
		}
	}
	return string(out)
}
