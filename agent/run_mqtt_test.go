package agent_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent"
	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/agent/mqttlink/contract/schema"
	"linkguard.dev/linkguard/hal/capture"
	"linkguard.dev/linkguard/hal/capture/capturetest"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/policytest"
	"linkguard.dev/linkguard/policy/roster"
	"linkguard.dev/linkguard/policy/roster/rostertest"
)

// TestRunReportsOverMQTT runs the composition root with mqtt and links
// sections against an embedded broker, its ports in-memory wires handed in
// through the hardware seam: the agent publishes its state, a policy
// applied from the policy file is reported as an event, telemetry carries
// the links section with that policy's serial, a signed command is
// answered, and every message it publishes keeps the contract.
func TestRunReportsOverMQTT(t *testing.T) {
	pki := brokertest.NewPKI(t)
	b := brokertest.Mochi(t, pki)
	in := b.(brokertest.Inline)
	var mu sync.Mutex
	var seen []string
	unsub, err := in.Subscribe("linkguard/v1/#", func(topic string, p []byte, _ bool) {
		mu.Lock()
		seen = append(seen, topic+" "+string(p))
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	waitFor := func(what string, pred func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			for _, s := range seen {
				if pred(s) {
					mu.Unlock()
					return
				}
			}
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("no %s over MQTT", what)
	}

	dir := t.TempDir()
	_, committeePub, _ := dsse.GenerateKeyFiles(dir, "committee-a")
	committeeKey, _ := dsse.LoadPrivateKey(filepath.Join(dir, "committee-a.key"))
	opsKeyPath, opsPub, _ := dsse.GenerateKeyFiles(dir, "ops-1")
	opsKey, _ := dsse.LoadPrivateKey(opsKeyPath)
	cert, key := pki.Client(t, "vte-border-01")
	policyFile := filepath.Join(dir, "policy.signed.json")
	yaml := fmt.Sprintf(`device: {id: vte-border-01, site: vientiane-north, kind: router}
state_dir: %s
policy: {file: %s, trust: [%s]}
log: {level: info, format: json}
mqtt:
  url: %s
  ca: %s
  cert: %s
  key: %s
  telemetry_every: 1s
  queue: {max_mb: 4}
  operators: [%s]
links: {mode: inline, inside: in0, outside: out0}
`, filepath.Join(dir, "state"), policyFile, committeePub, b.URL(), pki.CA, cert, key, opsPub)
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *agent.Agent, 1)
	done := make(chan error, 1)
	ports := map[string]*capturetest.Port{"in0": capturetest.NewPort(64, 10*time.Millisecond), "out0": capturetest.NewPort(64, 10*time.Millisecond)}
	hw := &agent.Hardware{OpenPort: func(_ *slog.Logger, name string, bridge, _ bool) (capture.Port, error) {
		if p, ok := ports[name]; ok && bridge {
			return p, nil
		}
		return nil, fmt.Errorf("no bridge port %q", name)
	}}
	go func() {
		done <- agent.Run(ctx, cfg, agent.Options{Hardware: hw, Ready: func(a *agent.Agent) { ready <- a }})
	}()
	var a *agent.Agent
	select {
	case a = <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	if a.Link() == nil || a.Filter() == nil {
		t.Fatal("mqtt and links configured but the agent has no link or no filter")
	}
	waitFor("online state", func(s string) bool {
		return strings.HasPrefix(s, "linkguard/v1/vte-border-01/state ") && strings.Contains(s, `"online":true`)
	})

	pol := policytest.Synthetic(10, 2)
	pol.Serial, pol.Issued, pol.Expires = 3, time.Now().Add(-time.Hour).UTC().Truncate(time.Second), time.Now().AddDate(0, 1, 0).UTC().Truncate(time.Second)
	if err := os.WriteFile(policyFile, policytest.Sign(t, policytest.YAML(pol), committeeKey), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor("policy.applied event", func(s string) bool {
		return strings.HasPrefix(s, "linkguard/v1/vte-border-01/events ") && strings.Contains(s, `"type":"policy.applied"`)
	})
	waitFor("telemetry with the links section on serial 3", func(s string) bool {
		topic, payload, _ := strings.Cut(s, " ")
		var tel contract.Telemetry
		if topic != "linkguard/v1/vte-border-01/telemetry" || json.Unmarshal([]byte(payload), &tel) != nil {
			return false
		}
		l, err := tel.Links()
		return err == nil && l != nil && l.PolicySerial == 3 && l.Mode == "inline"
	})
	now := time.Now()
	env, _ := command.Sign(command.Payload{ID: "run-ping", Target: "vte-border-01", Issued: now, Expires: now.Add(time.Minute), Type: command.Ping}, opsKey)
	if err := in.Publish(contract.CmdTopicFor("vte-border-01"), env, false); err != nil {
		t.Fatal(err)
	}
	waitFor("ping result", func(s string) bool {
		if !strings.HasPrefix(s, "linkguard/v1/vte-border-01/cmd/result ") {
			return false
		}
		var r contract.Result
		json.Unmarshal([]byte(strings.SplitN(s, " ", 2)[1]), &r)
		return r.CmdID == "run-ping" && r.OK
	})

	// A committee-signed roster arrives retained: from now on only the
	// keys it gives a role sign commands of that role.
	tech := rostertest.NewMember(t, "tech-1", roster.Technician)
	chair := rostertest.NewMember(t, "chair", roster.Committee)
	renv := rostertest.Sign(t, rostertest.YAML(rostertest.Spec{Serial: 4, Issued: now.Add(-time.Hour).UTC().Truncate(time.Second),
		Members: []rostertest.Member{chair, tech}}), committeeKey)
	if err := in.Publish(contract.RosterTopic, renv, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.Publish(contract.RosterTopic, nil, true) })
	waitFor("roster.applied event", func(s string) bool {
		return strings.HasPrefix(s, "linkguard/v1/vte-border-01/events ") && strings.Contains(s, `"type":"roster.applied"`)
	})
	if b, err := os.ReadFile(cfg.Policy.Roster); err != nil || string(b) != string(renv) {
		t.Errorf("applied roster not kept in %s: %v", cfg.Policy.Roster, err)
	}
	result := func(id string) *contract.Result {
		var got *contract.Result
		waitFor("result of "+id, func(s string) bool {
			if !strings.HasPrefix(s, "linkguard/v1/vte-border-01/cmd/result ") {
				return false
			}
			var r contract.Result
			json.Unmarshal([]byte(strings.SplitN(s, " ", 2)[1]), &r)
			if r.CmdID == id {
				got = &r
			}
			return got != nil
		})
		return got
	}
	for _, c := range []struct {
		id     string
		key    ed25519.PrivateKey
		ok     bool
		reason string
	}{
		{"ops-after-roster", opsKey, false, string(command.ReasonUntrusted)},
		{"chair-ping", chair.Key, false, string(command.ReasonRole)},
		{"tech-ping", tech.Key, true, ""},
	} {
		now := time.Now()
		env, _ := command.Sign(command.Payload{ID: c.id, Target: "vte-border-01", Issued: now, Expires: now.Add(time.Minute), Type: command.Ping}, c.key)
		if err := in.Publish(contract.CmdTopicFor("vte-border-01"), env, false); err != nil {
			t.Fatal(err)
		}
		if r := result(c.id); r.OK != c.ok || r.Reason != c.reason {
			t.Errorf("%s: ok %v reason %q (%s), want %v %q", c.id, r.OK, r.Reason, r.Error, c.ok, c.reason)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	waitFor("offline state on clean shutdown", func(s string) bool {
		return strings.HasPrefix(s, "linkguard/v1/vte-border-01/state ") && strings.Contains(s, `"online":false`)
	})
	mu.Lock()
	defer mu.Unlock()
	for _, m := range seen {
		topic, payload, _ := strings.Cut(m, " ")
		if err := schema.ValidateTopic(topic, []byte(payload)); err != nil {
			t.Errorf("message breaks the contract: %v\n%s", err, contract.Pretty([]byte(payload)))
		}
	}
}
