package mqttlink_test

import (
	"encoding/json"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/mqttlink"
	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
)

// refusedEvent is the first mqtt.subscription_refused event of dev in ms
// that names filter.
func refusedEvent(ms []msg, dev, filter string) bool {
	for _, ev := range events(ms, dev) {
		if ev.Type != mqttlink.SubscriptionRefused {
			continue
		}
		b, _ := json.Marshal(ev.Fields["filters"])
		var fs []string
		if json.Unmarshal(b, &fs) == nil && slices.Contains(fs, filter) {
			return true
		}
	}
	return false
}

func answered(id string) func([]msg) bool {
	return func(ms []msg) bool {
		rs := results(ms)[id]
		return len(rs) > 0 && rs[0].OK
	}
}

// TestSubscriptionRefusedThenGranted: a broker that refuses a
// subscription says so only in the SUBACK (0x80), and an agent that took
// it for granted never heard a command on that topic. The agent reports
// the refusal as an event, carries on with what was granted, and asks
// again until the broker grants it: a site command then arrives.
func TestSubscriptionRefusedThenGranted(t *testing.T) {
	pki := brokertest.NewPKI(t)
	const dev = "r-refused"
	site := contract.TopicsFor(dev, "tachileik").SiteCmd
	var asked atomic.Int32
	acl := func(client, topic string, write bool) bool {
		if client == dev && !write && topic == site {
			return asked.Add(1) > 3 // refused three times, as NATS does while its JetStream API is overrun
		}
		return true
	}
	e := newEnv(t, brokertest.KindMochi)
	e.pki, e.broker = pki, brokertest.MochiACL(t, pki, acl)
	obs := e.observe(t, "console", "linkguard/v1/#")
	runLink(t, e.options(t, dev, t.TempDir()), nil)

	obs.waitFor(t, "the refusal reported", 20*time.Second, func(ms []msg) bool { return refusedEvent(ms, dev, site) })
	now := time.Now()
	e.send(t, obs, payload("own-1", dev, command.Ping, now, now.Add(time.Minute), ""), false)
	obs.waitFor(t, "a command on the granted topic answered", 20*time.Second, answered("own-1"))
	// The site command is sent once the broker grants the subscription;
	// one sent before would be lost by any broker, since nobody was
	// subscribed.
	deadline := time.Now().Add(20 * time.Second)
	for asked.Load() <= 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the agent asked for %s %d times in 20 s, and no more", site, asked.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the SUBACK on its way back
	now = time.Now()
	e.send(t, obs, payload("site-1", "site:tachileik", command.Ping, now, now.Add(time.Minute), ""), false)
	obs.waitFor(t, "the site command answered once granted", 20*time.Second, answered("site-1"))
}

// TestSubscriptionRefusedNATS: a NATS cluster refuses the site command
// topic of a device whose site it does not know; the agent is online,
// says which filter was refused, and obeys its own command topic.
func TestSubscriptionRefusedNATS(t *testing.T) {
	pki := brokertest.NewPKI(t)
	const dev = "r-nats"
	c := brokertest.NATS(t, pki, brokertest.NATSOptions{
		Devices:   []brokertest.NATSDevice{{ID: dev, Site: "elsewhere"}},
		Operators: []string{"console"},
	})
	e := newEnv(t, brokertest.KindMochi)
	e.pki, e.broker = pki, natsBroker{c}
	obs := e.observe(t, "console", "linkguard/v1/#")
	runLink(t, e.options(t, dev, t.TempDir()), nil)
	obs.waitFor(t, "the refusal reported", 30*time.Second, func(ms []msg) bool {
		return refusedEvent(ms, dev, contract.TopicsFor(dev, "tachileik").SiteCmd)
	})
	now := time.Now()
	e.send(t, obs, payload("own-1", dev, command.Ping, now, now.Add(time.Minute), ""), false)
	obs.waitFor(t, "a command on the granted topic answered", 20*time.Second, answered("own-1"))
	for _, ev := range events(obs.snapshot(), dev) {
		if ev.Type != mqttlink.SubscriptionRefused {
			continue
		}
		if fs, _ := json.Marshal(ev.Fields["filters"]); string(fs) != `["`+contract.TopicsFor(dev, "tachileik").SiteCmd+`"]` {
			t.Errorf("refused filters %s: only the site's should be", fs)
		}
	}
}

// natsBroker is a NATS cluster as the suite's Broker (its first node).
type natsBroker struct{ c *brokertest.NATSCluster }

func (n natsBroker) Name() string        { return "nats" }
func (n natsBroker) URL() string         { return n.c.URLs()[0] }
func (n natsBroker) Stop(tb testing.TB)  { tb.Fatal("natsBroker: not stopped in these tests") }
func (n natsBroker) Start(tb testing.TB) { tb.Fatal("natsBroker: not stopped in these tests") }
