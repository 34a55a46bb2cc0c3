package brokertest_test

import (
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
)

// TestNATSPermissions starts a 3-node NATS cluster and checks the
// permissions mapped from client certificates: a device publishes under
// its own prefix only, never its own or another's command topic; it
// cannot read another device's commands; a certificate the cluster does
// not name is refused; a retained message published on one node is
// delivered by another.
func TestNATSPermissions(t *testing.T) {
	pki := brokertest.NewPKI(t)
	start := time.Now()
	c := brokertest.NATS(t, pki, brokertest.NATSOptions{
		Devices:   []brokertest.NATSDevice{{ID: "r1", Site: "s1"}, {ID: "r2", Site: "s2"}},
		Operators: []string{"console"},
	})
	t.Logf("3-node cluster ready in %v", time.Since(start).Round(time.Millisecond))
	urls := c.URLs()

	type msg struct{ topic, payload string }
	var mu sync.Mutex
	var got []msg
	watch := connect(t, pki, "console", urls[2])
	if tok := watch.Subscribe("linkguard/v1/#", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		got = append(got, msg{m.Topic(), string(m.Payload())})
		mu.Unlock()
	}); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("console subscribe: %v", tok.Error())
	}

	r1 := connect(t, pki, "r1", urls[0])
	publish := func(cl paho.Client, topic, payload string, retained bool) {
		t.Helper()
		// A publish the client may not make is dropped by the server (MQTT
		// 3.1.1 has no negative PUBACK); the PUBACK still comes.
		if tok := cl.Publish(topic, 1, retained, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Logf("publish %s: %v", topic, tok.Error())
		}
	}
	publish(r1, contract.TopicsFor("r2", "s2").Events, "r1-as-r2", false)
	publish(r1, contract.CmdTopicFor("r2"), "r1-cmd-r2", false)
	publish(r1, contract.CmdTopicFor("r1"), "r1-cmd-self", false)
	publish(r1, contract.AllCmdTopic, "r1-cmd-all", false)
	publish(r1, contract.PolicyTopic, "r1-policy", true)
	publish(r1, contract.RosterTopic, "r1-roster", true)
	publish(r1, contract.TopicsFor("r1", "s1").State, "r1-state", true)
	publish(r1, contract.TopicsFor("r1", "s1").Events, "r1-own", false)

	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // anything refused would have come by now
	mu.Lock()
	want := map[string]bool{"r1-state": true, "r1-own": true}
	for _, m := range got {
		if !want[m.payload] {
			t.Errorf("r1 published %q on %s: it should have been refused", m.payload, m.topic)
		}
		delete(want, m.payload)
	}
	mu.Unlock()
	for p := range want {
		t.Errorf("r1's own %q never arrived", p)
	}

	// r1 subscribes to r2's commands: refused (SUBACK 0x80), and nothing
	// published there reaches it.
	var stolen sync.WaitGroup
	stolen.Add(1)
	var leaked []string
	tok := r1.Subscribe(contract.CmdTopicFor("r2"), 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		leaked = append(leaked, string(m.Payload()))
		mu.Unlock()
	})
	tok.WaitTimeout(10 * time.Second)
	if st, ok := tok.(*paho.SubscribeToken); ok {
		if rc := st.Result()[contract.CmdTopicFor("r2")]; rc != 0x80 {
			t.Errorf("r1's subscription to r2's commands granted (SUBACK %#x)", rc)
		}
	}
	publish(watch, contract.CmdTopicFor("r2"), "for-r2", false)
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	if len(leaked) > 0 {
		t.Errorf("r1 read r2's commands: %q", leaked)
	}
	mu.Unlock()

	// The retained state r1 published on node 1 is on node 2 too.
	late := connect(t, pki, "console", urls[1])
	ret := make(chan string, 1)
	late.Subscribe(contract.TopicsFor("r1", "s1").State, 1, func(_ paho.Client, m paho.Message) {
		select {
		case ret <- string(m.Payload()):
		default:
		}
	})
	select {
	case p := <-ret:
		if p != "r1-state" {
			t.Errorf("retained state %q", p)
		}
	case <-time.After(10 * time.Second):
		t.Error("retained state not delivered by another node")
	}

	// An unknown certificate is refused.
	o := clientOptions(t, pki, "stranger", urls[0])
	if tok := paho.NewClient(o).Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
		t.Error("a certificate the cluster does not name connected")
	}
}

func clientOptions(t *testing.T, pki *brokertest.PKI, name, url string) *paho.ClientOptions {
	t.Helper()
	cert, key := pki.Client(t, name)
	o, err := contract.BrokerOptions(url, pki.CA, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return o.SetClientID(name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
}

func connect(t *testing.T, pki *brokertest.PKI, name, url string) paho.Client {
	t.Helper()
	cl := paho.NewClient(clientOptions(t, pki, name, url))
	if tok := cl.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("%s connect to %s: %v", name, url, tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(0) })
	return cl
}
