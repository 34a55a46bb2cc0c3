package mqttlink_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
)

// TestFanoutQoS0NATS: on NATS every QoS 1 subscription is a replicated
// JetStream consumer. A device with FanoutQoS0 holds one (its own command
// topic) where a default device holds three, and both still carry out a
// command to their site and to all while they are online.
func TestFanoutQoS0NATS(t *testing.T) {
	pki := brokertest.NewPKI(t)
	const q1, q0 = "r-fan-q1", "r-fan-q0"
	c := brokertest.NATS(t, pki, brokertest.NATSOptions{
		Devices:   []brokertest.NATSDevice{{ID: q1, Site: "tachileik"}, {ID: q0, Site: "tachileik"}},
		Operators: []string{"console"},
	})
	e := newEnv(t, brokertest.KindMochi)
	e.pki, e.broker = pki, natsBroker{c}
	obs := e.observe(t, "console", "linkguard/v1/#")
	runLink(t, e.options(t, q1, t.TempDir()), nil)
	o := e.options(t, q0, t.TempDir())
	o.FanoutQoS0 = true
	runLink(t, o, nil)
	for _, dev := range []string{q1, q0} {
		// The state comes after the subscriptions: a command sent before
		// would find no session to queue it in.
		obs.waitFor(t, dev+" online", 30*time.Second, func(ms []msg) bool {
			for _, m := range ms {
				if m.Topic == contract.Prefix+dev+"/state" && decode[contract.State](t, m.Payload).Online {
					return true
				}
			}
			return false
		})
		now := time.Now()
		e.send(t, obs, payload("own-"+dev, dev, command.Ping, now, now.Add(time.Minute), ""), false)
		obs.waitFor(t, dev+" answering its own command", 30*time.Second, answered("own-"+dev))
	}

	// subject is the NATS form of an MQTT topic, as a consumer filters it.
	subject := func(topic string) string { return strings.ReplaceAll(topic, "/", ".") }
	count := func(fs []string, topic string) int {
		n := 0
		for _, f := range fs {
			if strings.HasSuffix(f, "."+subject(topic)) {
				n++
			}
		}
		return n
	}
	site := contract.TopicsFor(q1, "tachileik").SiteCmd
	want := map[string]int{
		contract.CmdTopicFor(q1): 1, contract.CmdTopicFor(q0): 1,
		site: 1, contract.AllCmdTopic: 1, // q1's alone
	}
	var fs []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		fs = c.Nodes[0].MQTTConsumers(t)
		ok := true
		for topic, n := range want {
			ok = ok && count(fs, topic) == n
		}
		if ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for topic, n := range want {
		if got := count(fs, topic); got != n {
			t.Errorf("JetStream consumers on %s: %d, want %d (all consumers: %q)", topic, got, n, fs)
		}
	}
	if slices.ContainsFunc(fs, func(f string) bool {
		return strings.HasSuffix(f, subject(contract.PolicyTopic)) || strings.HasSuffix(f, subject(contract.RosterTopic))
	}) {
		t.Errorf("a consumer for the retained policy or roster (subscribed at QoS 0): %q", fs)
	}

	now := time.Now()
	e.send(t, obs, payload("site-1", "site:tachileik", command.Ping, now, now.Add(time.Minute), ""), false)
	e.send(t, obs, payload("all-1", "all", command.Ping, now, now.Add(time.Minute), ""), false)
	for _, id := range []string{"site-1", "all-1"} {
		obs.waitFor(t, id+" answered by both devices", 30*time.Second, func(ms []msg) bool {
			var by []string
			for _, r := range results(ms)[id] {
				if r.OK {
					by = append(by, r.Device)
				}
			}
			return slices.Contains(by, q1) && slices.Contains(by, q0)
		})
	}
}
