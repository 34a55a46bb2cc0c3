package main

import (
	"strings"
	"testing"

	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/firmware/provision"
)

// TestProvisionConsoleUnlockFlags: the console's unlock flags reach the
// console, the token threshold is the installed config's policy.threshold,
// and flags that cannot work are refused before the line is served.
func TestProvisionConsoleUnlockFlags(t *testing.T) {
	for _, tt := range []struct {
		threshold int
		want      int
	}{{0, 1}, {2, 2}, {3, 3}} {
		cfg, err := config.Generate(config.Answers{DeviceID: "rtr-1", Site: "s", Kind: config.KindRouter, Broker: "mqtts://b:8883", Mode: config.ModeMonitor, OperatorKeys: []string{"ops.pub"},
			Outside: "eth0", PolicyKeys: []string{"a.pub", "b.pub", "c.pub"}, Threshold: tt.threshold})
		if err != nil {
			t.Fatal(err)
		}
		if n, err := policyThreshold(cfg); err != nil || n != tt.want {
			t.Errorf("policy.threshold %d: unlock threshold %d %v, want %d", tt.threshold, n, err, tt.want)
		}
	}
	if _, err := policyThreshold([]byte("device: {}\n")); err == nil {
		t.Error("threshold from a config the agent refuses")
	}

	uf := unlockFlags{file: "/run/linkguard/unlock", threshold: 2, idle: provision.DefaultSessionIdle, pinActive: "low"}
	con := &provision.Console{}
	if err := uf.apply(con); err != nil {
		t.Fatal(err)
	}
	if con.UnlockThreshold != 2 || con.PolicyThreshold == nil || len(con.Physical) != 1 {
		t.Fatalf("console %+v", con)
	}
	if fp, ok := con.Physical[0].(*provision.FilePresence); !ok || fp.Path != "/run/linkguard/unlock" {
		t.Fatalf("physical unlock %#v", con.Physical[0])
	}

	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--unlock-threshold", "-1"}, "--unlock-threshold -1: at least 1"},
		{[]string{"--unlock-idle", "0s"}, "--unlock-idle 0s: must be above 0"},
		{[]string{"--unlock-pin", "GPIO17", "--unlock-pin-active", "sideways"}, `--unlock-pin-active "sideways": low or high`},
		{[]string{"--unlock-pin", "NO-SUCH-LINE"}, `no GPIO line "NO-SUCH-LINE"`},
	} {
		_, _, err := run(append([]string{"provision-console", "--dir", dir}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.args, err, tt.want)
		}
	}
}
