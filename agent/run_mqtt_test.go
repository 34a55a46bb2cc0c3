package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
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
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/policytest"
)

// TestRunReportsOverMQTT runs the composition root with an mqtt section
// against an embedded broker: the agent publishes its state, a policy
// applied from the policy file is reported as an event over MQTT, and a
// signed command is answered.
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
`, filepath.Join(dir, "state"), policyFile, committeePub, b.URL(), pki.CA, cert, key, opsPub)
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *agent.Agent, 1)
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx, cfg, agent.Options{Ready: func(a *agent.Agent) { ready <- a }}) }()
	a := <-ready
	if a.Link == nil || a.Events == report.Discard || a.Commands == nil || a.Telemetry == nil {
		t.Fatal("mqtt configured but the agent has no link")
	}
	a.Telemetry.AddSection("link", func() any { return map[string]int{"frames": 42} })
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
	waitFor("telemetry with the link section", func(s string) bool {
		return strings.HasPrefix(s, "linkguard/v1/vte-border-01/telemetry ") && strings.Contains(s, `"frames":42`)
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
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	waitFor("offline state on clean shutdown", func(s string) bool {
		return strings.HasPrefix(s, "linkguard/v1/vte-border-01/state ") && strings.Contains(s, `"online":false`)
	})
}
