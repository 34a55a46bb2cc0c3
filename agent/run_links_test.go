package agent_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent"
	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/hal/capture"
	"linkguard.dev/linkguard/hal/capture/capturetest"
	"linkguard.dev/linkguard/hal/envtest"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
)

// TestRunLinksInline runs the composition root with a links section as the
// bridge between two namespaces: with no policy the link is cut (fail
// closed); the signed policy file opens the approved address only; when the
// agent stops the link is cut again. The same with links.offloads, which
// must leave GRO on the ports. With links.fail open, the link passes
// before the first policy, is filtered once it arrives, and is carried
// unfiltered by the kernel once the agent has stopped. With links.enforce
// nftables the kernel bridges and filters the link (the agent watching as
// a monitor), and it stays filtered once the agent has stopped.
func TestRunLinksInline(t *testing.T) {
	envtest.Command(t, "ping")
	for _, c := range []struct {
		offloads bool
		fail     string
		enforce  string
	}{{false, "closed", "userspace"}, {true, "closed", "userspace"}, {false, "open", "userspace"}, {false, "closed", "nftables"}} {
		t.Run(fmt.Sprintf("offloads_%v_fail_%s_%s", c.offloads, c.fail, c.enforce), func(t *testing.T) { testRunLinksInline(t, c.offloads, c.fail, c.enforce) })
	}
}

func testRunLinksInline(t *testing.T, offloads bool, failMode, enforce string) {
	kernel := enforce == "nftables"
	if kernel {
		envtest.Command(t, "nft")
	}
	failOpen := failMode == "open"
	cust, lg, bord := capturetest.Namespace(t, "lga-c-"), capturetest.Namespace(t, "lga-l-"), capturetest.Namespace(t, "lga-b-")
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	sh("-n", cust, "link", "add", "c0", "type", "veth", "peer", "name", "lgin", "netns", lg)
	sh("-n", bord, "link", "add", "b0", "type", "veth", "peer", "name", "lgout", "netns", lg)
	sh("-n", cust, "addr", "add", "103.1.0.2/16", "dev", "c0")
	sh("-n", bord, "addr", "add", "103.1.0.3/16", "dev", "b0")
	sh("-n", bord, "addr", "add", "203.0.113.7/24", "dev", "b0")
	sh("-n", bord, "addr", "add", "198.51.100.7/24", "dev", "b0")
	for _, l := range [][2]string{{cust, "c0"}, {bord, "b0"}, {lg, "lgin"}, {lg, "lgout"}} {
		sh("-n", l[0], "link", "set", l[1], "up")
	}
	sh("-n", cust, "route", "add", "203.0.113.0/24", "dev", "c0")
	sh("-n", cust, "route", "add", "198.51.100.0/24", "dev", "c0")
	ping := func(addr string) bool {
		return exec.Command("ip", "netns", "exec", cust, "ping", "-c", "1", "-W", "1", addr).Run() == nil
	}

	dir := t.TempDir()
	keyPath, pubPath, err := dsse.GenerateKeyFiles(dir, "committee")
	if err != nil {
		t.Fatal(err)
	}
	policyFile := filepath.Join(dir, "policy.signed.json")
	cfgYAML := fmt.Sprintf(`device: {id: test-router, site: s1, kind: router}
state_dir: %s
policy: {file: %s, trust: [%s], threshold: 1}
links:
  mode: inline
  inside: lgin
  outside: lgout
  max_flows: 4096
  offloads: %v
  fail: %s
  enforce: %s
  ingress: loose # the domestic address answers from the outside
  evidence: {dir: %s, max_mb: 1}
`, filepath.Join(dir, "state"), policyFile, pubPath, offloads, failMode, enforce, filepath.Join(dir, "evidence"))
	cfg, err := config.Parse("test.yaml", []byte(cfgYAML))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *agent.Agent, 1)
	done := make(chan error, 1)
	go capturetest.InNetns(t, lg, func() {
		done <- agent.Run(ctx, cfg, agent.Options{Ready: func(a *agent.Agent) { ready <- a }})
	})
	var a *agent.Agent
	select {
	case a = <-ready:
	case err := <-done:
		t.Fatalf("agent: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not start")
	}
	t.Cleanup(func() { cancel(); <-done })
	f := a.Filter()
	if f == nil {
		t.Fatal("no link filter")
	}
	if got := ping("103.1.0.3"); got != failOpen {
		t.Errorf("before any policy, link open %v; want %v (fail %s)", got, failOpen, failMode)
	}
	capturetest.InNetns(t, lg, func() {
		if kernel {
			return // the kernel bridge keeps the ports' offloads as they are
		}
		for _, p := range []string{"lgin", "lgout"} {
			if on, err := capture.OffloadEnabled(p, capture.GRO); err != nil || on != offloads {
				t.Errorf("%s: gro on %v, want %v (%v)", p, on, offloads, err)
			}
		}
	})

	now := time.Now().UTC().Truncate(time.Second)
	doc := "serial: 5\nissued: " + now.Add(-time.Hour).Format(time.RFC3339) + "\nexpires: " + now.Add(time.Hour).Format(time.RFC3339) +
		"\ndefault: deny\ndomestic: [103.1.0.0/16]\napprovals:\n  - {id: LA-9, holder: Example, remote: [198.51.100.0/24]}\n"
	priv, err := dsse.LoadPrivateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	env, err := dsse.Sign(policy.PayloadType, []byte(doc), priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(policyFile, env, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.Matcher() == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if f.Matcher() == nil {
		t.Fatal("policy file not applied to the filter")
	}
	// A bridge the kernel has just attached may still be resolving
	// neighbours: the approved address gets three tries.
	if !(ping("198.51.100.7") || ping("198.51.100.7") || ping("198.51.100.7")) || !ping("103.1.0.3") {
		t.Error("approved or domestic blocked under the policy")
	}
	if ping("203.0.113.7") {
		t.Error("unapproved passed")
	}
	s := f.Snapshot()
	if s.PolicySerial != 5 || len(s.Approvals) != 1 || s.Denied == 0 {
		t.Errorf("snapshot %+v", s)
	}
	lt, ok := a.LinksTelemetry()
	if !ok || len(lt.Ports) != 2 || lt.Ports[0].Name != "lgin" || lt.Ports[0].Received == 0 || lt.Ports[1].Received == 0 || lt.PolicySerial != 5 {
		t.Errorf("links telemetry %+v", lt)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("agent stopped with %v", err)
	}
	done <- nil // for the cleanup
	if failOpen {
		open := false
		for deadline := time.Now().Add(5 * time.Second); !open && time.Now().Before(deadline); {
			open = ping("203.0.113.7")
		}
		if !open {
			t.Error("link cut with the agent stopped: not fail-open")
		}
	} else if kernel {
		// The kernel keeps enforcing the last ruleset without the agent.
		if ping("203.0.113.7") {
			t.Error("unapproved passed with the agent stopped under nftables")
		}
		if !ping("198.51.100.7") {
			t.Error("approved cut with the agent stopped under nftables: the ruleset did not stay")
		}
	} else if ping("198.51.100.7") {
		t.Error("link still open with the agent stopped: not fail-closed")
	}
}
