package agent_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

type pkg struct {
	ImportPath string
	Doc        string
	Name       string
	Deps       []string
}

// listPackages runs `go list -deps` over the module (non-test builds).
func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Doc,Name,Deps", "linkguard.dev/linkguard/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

const mod = "linkguard.dev/linkguard/"

// TestLayering keeps imports flowing one way: hal and policy know nothing of
// the agent, MQTT or the testbench; firmware needs only signing; nothing
// ships the testbench or a test fake.
func TestLayering(t *testing.T) {
	mqtt := []string{"github.com/eclipse/paho.mqtt.golang", "github.com/mochi-mqtt/server"}
	rules := []struct {
		from   string
		banned []string
	}{
		{mod + "hal/", append([]string{mod + "agent", mod + "policy", mod + "firmware", mod + "testbench"}, mqtt...)},
		{mod + "policy", append([]string{mod + "agent", mod + "firmware", mod + "testbench"}, mqtt...)},
		{mod + "firmware/", append([]string{mod + "agent", mod + "testbench"}, mqtt...)},
		{mod + "agent", []string{mod + "testbench"}},
	}
	for _, p := range listPackages(t) {
		for _, r := range rules {
			if !strings.HasPrefix(p.ImportPath, r.from) {
				continue
			}
			for _, d := range p.Deps {
				for _, b := range r.banned {
					if d == b || strings.HasPrefix(d, b+"/") || strings.HasPrefix(d, b) && strings.HasSuffix(b, "/") {
						t.Errorf("%s imports %s (banned for %s...)", p.ImportPath, d, r.from)
					}
				}
			}
		}
		// Shipped code never carries a test fake.
		if p.Name == "main" || !strings.HasSuffix(p.ImportPath, "test") {
			for _, d := range p.Deps {
				if strings.HasPrefix(d, mod) && strings.HasSuffix(d, "test") && !strings.HasPrefix(p.ImportPath, mod+"testbench") {
					t.Errorf("%s depends on the test package %s", p.ImportPath, d)
				}
			}
		}
	}
}

// TestPackageDocs demands a doc comment on every package.
func TestPackageDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("%s has no package doc comment (add a doc.go saying its one job)", p.ImportPath)
		}
	}
}
