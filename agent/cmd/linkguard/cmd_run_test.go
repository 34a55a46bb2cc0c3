package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/config/configtest"
)

// runCtx executes the linkguard command line in-process under a deadline, so
// a `run` that wrongly starts the agent ends instead of hanging the test.
func runCtx(t *testing.T, args ...string) (stdout string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var o, e bytes.Buffer
	root := newRoot()
	root.SetOut(&o)
	root.SetErr(&e)
	root.SetArgs(args)
	err = root.ExecuteContext(ctx)
	if ctx.Err() != nil {
		t.Errorf("%q ran until its deadline: it started with a configuration it should refuse", args)
	}
	return o.String(), err
}

func TestRunCheck(t *testing.T) {
	d := configtest.Router(t)
	out, err := runCtx(t, "run", "--check", "--config", d.Config)
	if err != nil || !strings.Contains(out, "valid; effective configuration") || !strings.Contains(out, "max_flows:") {
		t.Fatalf("run --check: %v\n%s", err, out)
	}
	// The repository's examples name files of a device, not of this machine.
	if _, err := runCtx(t, "run", "--check", "--config", "../../config/testdata/router.yaml"); err == nil ||
		!strings.Contains(err.Error(), "line 5: policy.trust[0]: /etc/linkguard/trust/policy/committee-a.pub does not exist") {
		t.Fatalf("run --check of an example: %v", err)
	}
}

// TestCheckIsWhatRunChecks: for each broken configuration, --check and a
// real start fail, with the same message, naming the key and its line.
func TestCheckIsWhatRunChecks(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, d *configtest.Device)
		want   string
	}{
		{"missing trust key", func(t *testing.T, d *configtest.Device) { os.Remove(d.CommitteePub) },
			"line 3: policy.trust[0]: " + "%CommitteePub% does not exist"},
		{"directory as key", func(t *testing.T, d *configtest.Device) { d.Replace(t, d.CommitteePub, d.Dir+"/trust") },
			"line 3: policy.trust[0]: %Dir%/trust is a directory, not a file"},
		{"garbage as key", func(t *testing.T, d *configtest.Device) { os.WriteFile(d.CommitteePub, []byte("hello\n"), 0o644) },
			`line 3: policy.trust[0]: %CommitteePub% is not a public key file: not a PEM "PUBLIC KEY" block`},
		{"private key as operator", func(t *testing.T, d *configtest.Device) { d.Replace(t, d.OperatorPub, d.OperatorKey) },
			"line 10: mqtt.operators[0]: %OperatorKey% is a private key: list its public half"},
		{"policy key as operator", func(t *testing.T, d *configtest.Device) {
			copyFile(t, d.CommitteePub, d.OperatorPub)
		}, "line 10: mqtt.operators[0]: %OperatorPub% is the same key as policy.trust[0]: a key has one role"},
		{"operator key as release key", func(t *testing.T, d *configtest.Device) {
			copyFile(t, d.OperatorPub, d.ReleasePub)
		}, "line 12: update.trust[0]: %ReleasePub% is the same key as mqtt.operators[0]: a key has one role"},
		{"one key twice", func(t *testing.T, d *configtest.Device) {
			copyFile(t, d.CommitteePub, d.Dir+"/trust/again.pub")
			d.Replace(t, "trust: ["+d.CommitteePub, "threshold: 1, trust: ["+d.CommitteePub+", "+d.Dir+"/trust/again.pub")
		}, "line 3: policy.trust[1]: %Dir%/trust/again.pub is the same key as policy.trust[0]: list each key once"},
		{"world-writable key", func(t *testing.T, d *configtest.Device) { os.Chmod(d.CommitteePub, 0o666) },
			"policy.trust[0]: %CommitteePub% is writable by anyone (mode -rw-rw-rw-): chmod o-w it"},
		{"missing policy file", func(t *testing.T, d *configtest.Device) { os.Remove(d.Policy) },
			"line 3: policy.file: %Policy% does not exist and there is no last-known-good policy"},
		{"missing policy directory", func(t *testing.T, d *configtest.Device) { os.RemoveAll(filepath.Dir(d.Policy)) },
			"line 3: policy.file: %Policy% does not exist, nor its directory %Dir%/policy"},
		{"missing interface", func(t *testing.T, d *configtest.Device) { d.Replace(t, "outside: lo", "outside: lg-nosuch0") },
			`line 4: links.outside: interface "lg-nosuch0" does not exist on this machine`},
		{"client key readable by others", func(t *testing.T, d *configtest.Device) { os.Chmod(d.Key, 0o644) },
			"line 9: mqtt.key: %Key% is open to group or others (mode -rw-r--r--): chmod 600 it"},
		{"client key of another certificate", func(t *testing.T, d *configtest.Device) { d.Replace(t, "key: "+d.Key, "key: "+d.OtherKey) },
			"line 8: mqtt.cert: %Cert% with key %OtherKey%: private key does not match public key"},
		{"CA that is no certificate", func(t *testing.T, d *configtest.Device) { os.WriteFile(d.CA, []byte("nope\n"), 0o644) },
			"line 7: mqtt.ca: %CA% holds no PEM certificate"},
		{"state dir that is a file", func(t *testing.T, d *configtest.Device) { os.WriteFile(d.StateDir, nil, 0o644) },
			"line 2: state_dir: %StateDir% is not a directory"},
		{"config writable by anyone", func(t *testing.T, d *configtest.Device) { os.Chmod(d.Config, 0o666) },
			"%Config%: %Config% is writable by anyone"},
		{"near-miss key", func(t *testing.T, d *configtest.Device) { d.Replace(t, "queue:", "queu:") },
			"line 11: mqtt.queu: unknown key; did you mean queue?"},
		{"not a number", func(t *testing.T, d *configtest.Device) { d.Replace(t, "max_mb: 8", "max_mb: two") },
			`line 11: mqtt.queue.max_mb: "two" is not a whole number`},
		{"unknown mode", func(t *testing.T, d *configtest.Device) { d.Replace(t, "mode: monitor", "mode: tap") },
			`line 4: links.mode: "tap" is not one of inline, monitor`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := configtest.Router(t)
			tt.break_(t, d)
			want := strings.NewReplacer("%Dir%", d.Dir, "%CommitteePub%", d.CommitteePub, "%OperatorPub%", d.OperatorPub,
				"%OperatorKey%", d.OperatorKey, "%ReleasePub%", d.ReleasePub, "%Policy%", d.Policy, "%Key%", d.Key,
				"%OtherKey%", d.OtherKey, "%Cert%", d.Cert, "%CA%", d.CA, "%StateDir%", d.StateDir, "%Config%", d.Config).Replace(tt.want)
			_, checkErr := runCtx(t, "run", "--check", "--config", d.Config)
			_, runErr := runCtx(t, "run", "--config", d.Config)
			if checkErr == nil || runErr == nil {
				t.Fatalf("accepted: --check %v, run %v", checkErr, runErr)
			}
			if checkErr.Error() != runErr.Error() {
				t.Errorf("--check and run say different things:\n--check: %v\nrun:     %v", checkErr, runErr)
			}
			if !strings.Contains(checkErr.Error(), "config: "+d.Config+": ") || !strings.Contains(checkErr.Error(), want) {
				t.Errorf("message %q\ndoes not contain %q", checkErr, want)
			}
		})
	}
}

// TestRunStartsWhatCheckPasses: the fixture that --check passes starts the
// agent, which stops cleanly when its context ends.
func TestRunStartsWhatCheckPasses(t *testing.T) {
	tap, _ := configtest.Tap(t) // monitor mode opens a packet socket: root
	d := configtest.Router(t)
	d.Replace(t, "outside: lo", "outside: "+tap)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	root := newRoot()
	root.SetArgs([]string{"run", "--config", d.Config})
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("run: %v", err)
	}
	if ctx.Err() == nil {
		t.Fatal("run returned before its context ended")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
