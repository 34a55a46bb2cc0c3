package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/agent/config/configtest"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/store"
)

func TestCheckAcceptsItsFixture(t *testing.T) {
	d := configtest.Router(t)
	if _, err := config.LoadChecked(d.Config); err != nil {
		t.Fatal(err)
	}
}

// TestLastGoodPolicy: a missing policy file is fine while the store has a
// last-known-good policy where Check looks for it.
func TestLastGoodPolicy(t *testing.T) {
	d := configtest.Router(t)
	trust, err := dsse.LoadKeyring(d.CommitteePub)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.New(store.Options{Trust: trust, Threshold: 1, StateDir: d.StateDir})
	if err != nil {
		t.Fatal(err)
	}
	env, _ := os.ReadFile(d.Policy)
	if _, err := s.Apply(env, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d.StateDir, config.LastGoodPolicy)); err != nil {
		t.Fatalf("the store keeps its last-known-good policy elsewhere: %v", err)
	}
	os.Remove(d.Policy)
	if _, err := config.LoadChecked(d.Config); err != nil {
		t.Fatalf("missing policy file with a last-known-good one: %v", err)
	}
}

// TestCheckWithoutFile: a configuration built in code is checked too, its
// problems named by key path alone.
func TestCheckWithoutFile(t *testing.T) {
	d := configtest.Router(t)
	c := &config.Config{
		Device: config.Device{ID: "r", Site: "s", Kind: config.KindRelay}, StateDir: d.StateDir,
		Policy:   config.Policy{File: d.Policy, Trust: []string{d.CommitteePub}, Threshold: 1},
		Buses:    []config.Bus{{Port: filepath.Join(d.Dir, "ttyNONE")}},
		Watchdog: &config.Watchdog{Device: filepath.Join(d.Dir, "watchdog")},
	}
	err := config.Check(c)
	for _, want := range []string{
		"config: buses[0].port: serial port " + d.Dir + "/ttyNONE does not exist",
		"config: watchdog.device: " + d.Dir + "/watchdog does not exist",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check: %v\nwant %q", err, want)
		}
	}
}
