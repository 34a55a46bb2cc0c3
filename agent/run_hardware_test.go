package agent_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"linkguard.dev/linkguard/agent"
	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/policy/dsse"
)

// TestRunRefusesMissingHardware: a configuration that needs hardware the
// seam does not have fails to start, naming it, with ErrUnsupported; it
// never runs without it.
func TestRunRefusesMissingHardware(t *testing.T) {
	dir := t.TempDir()
	_, pub, err := dsse.GenerateKeyFiles(dir, "committee")
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("device: {id: d1, site: s1, kind: router}\nstate_dir: %s\npolicy: {file: %s, trust: [%s]}\n",
		filepath.Join(dir, "state"), filepath.Join(dir, "policy.signed.json"), pub)
	for name, section := range map[string]string{
		"links":    "links: {mode: inline, inside: in0, outside: out0}\n",
		"watchdog": "watchdog: {device: /dev/null}\n",
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Parse("test.yaml", []byte(base+section))
			if err != nil {
				t.Fatal(err)
			}
			err = agent.Run(context.Background(), cfg, agent.Options{Hardware: &agent.Hardware{}})
			if !errors.Is(err, errors.ErrUnsupported) {
				t.Fatalf("Run = %v, want ErrUnsupported", err)
			}
		})
	}
}

// TestNewInstallerNamesTheDevice: the installer update.fetch uses knows the
// device and site a downgrade ticket must name, as linkguard update
// install's does.
func TestNewInstallerNamesTheDevice(t *testing.T) {
	dir := t.TempDir()
	_, pub, err := dsse.GenerateKeyFiles(dir, "release")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Device: config.Device{ID: "d1", Site: "s1"},
		Update: &config.Update{Root: filepath.Join(dir, "slots"), Trust: []string{pub}, MaxFetchMB: 3, Hardware: 2}}
	in, err := agent.NewInstaller(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if in.Device != "d1" || in.Site != "s1" || in.Hardware != 2 || in.MaxFetch != 3<<20 || in.Keys == nil {
		t.Fatalf("installer %+v", in)
	}
	if _, err := agent.NewInstaller(&config.Config{}, nil); err == nil {
		t.Fatal("an installer without an update section")
	}
}
