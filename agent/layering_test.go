package agent_test

import (
	"encoding/json"
	"go/parser"
	"go/token"
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
		// The contract is what both sides share: the device side's parts
		// convert into it, it never reaches into them.
		{mod + "agent/mqttlink/contract", []string{mod + "agent/mqttlink", mod + "agent/queue", mod + "agent/linkfilter",
			mod + "agent/feeds", mod + "agent/config", mod + "policy/store"}},
	}
	for _, p := range listPackages(t) {
		for _, r := range rules {
			if !strings.HasPrefix(p.ImportPath, r.from) {
				continue
			}
			for _, d := range p.Deps {
				if strings.HasPrefix(d, r.from) {
					continue // a package's own subtree (contracttest uses contract)
				}
				for _, b := range r.banned {
					if d == b || strings.HasPrefix(d, b+"/") || strings.HasPrefix(d, b) && strings.HasSuffix(b, "/") {
						t.Errorf("%s imports %s (banned for %s...)", p.ImportPath, d, r.from)
					}
				}
			}
		}
		// Shipped code never carries a test fake, nor what a fake package
		// holds (brokertest/embedded, the embedded broker).
		fake := func(d string) bool { return strings.HasSuffix(d, "test") || strings.Contains(d, "test/") }
		if p.Name == "main" || !fake(p.ImportPath) {
			for _, d := range p.Deps {
				if strings.HasPrefix(d, mod) && fake(d) && !strings.HasPrefix(p.ImportPath, mod+"testbench") {
					t.Errorf("%s depends on the test package %s", p.ImportPath, d)
				}
			}
		}
	}
}

// TestOperatorSideSeesOnlyTheContract: the console, lgctl's watch, audit,
// cmd and console commands, and the testbench's fleet measurement know
// devices only through the topic contract (agent/mqttlink/contract), with
// command signing and policy: never the device side, whose types would let
// a renamed field compile on one side and break the other. (The rest of
// lgctl provisions and flashes devices, and may know them.)
func TestOperatorSideSeesOnlyTheContract(t *testing.T) {
	deviceSide := func(d string) bool {
		for _, b := range []string{"agent", "agent/mqttlink", "agent/queue", "agent/linkfilter", "agent/feeds", "policy/store"} {
			if d == mod+b || b != "agent" && strings.HasPrefix(d, mod+b+"/") && d != mod+"agent/mqttlink/contract" {
				return true
			}
		}
		return false
	}
	deps := map[string][]string{}
	for _, p := range listPackages(t) {
		deps[p.ImportPath] = p.Deps
	}
	// What each operator-side piece imports: whole packages, and lgctl's
	// operator commands by their files.
	imports := map[string][]string{}
	for _, p := range []string{"agent/console", "testbench/fleet"} {
		imports[p] = []string{mod + p}
	}
	for _, f := range []string{"cmd/lgctl/cmd_mqtt.go", "cmd/lgctl/cmd_console.go"} {
		pf, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, is := range pf.Imports {
			imports["agent/"+f] = append(imports["agent/"+f], strings.Trim(is.Path.Value, `"`))
		}
	}
	for who, ims := range imports {
		contract := false
		for _, im := range ims {
			for _, d := range append([]string{im}, deps[im]...) {
				if deviceSide(d) {
					t.Errorf("%s imports %s (through %s): the operator side takes devices' messages from agent/mqttlink/contract only", who, d, im)
				}
				contract = contract || d == mod+"agent/mqttlink/contract"
			}
		}
		if !contract {
			t.Errorf("%s does not reach agent/mqttlink/contract: is the test looking at the right package?", who)
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
