package agent_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"linkguard.dev/linkguard/agent"
	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/agent/console"
	"linkguard.dev/linkguard/agent/mqttlink"
	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/policy/dsse"
)

// TestRunClusterFailover runs six agents against a 3-node NATS Server
// cluster (JetStream, MQTT with per-device permissions from the client
// certificate), each with all three URLs in its own order so two are on
// each node, while each agent streams events. In the middle of the stream
// node 1 is killed with SIGKILL: its agents reconnect to another node, no
// event of any agent is lost (the chains audit with no gaps; QoS 1
// duplicates are counted), a signed command to all published after the
// kill is answered by every agent, and the console, which never gets the
// wills of a dead node's clients, shows that node's agents offline after
// its Silence and online again when they are back.
func TestRunClusterFailover(t *testing.T) {
	pki := brokertest.NewPKI(t)
	const agents = 6
	var devices []brokertest.NATSDevice
	for i := range agents {
		devices = append(devices, brokertest.NATSDevice{ID: fmt.Sprintf("r%d", i+1), Site: fmt.Sprintf("s%d", i%2+1)})
	}
	cluster := brokertest.NATS(t, pki, brokertest.NATSOptions{Devices: devices, Operators: []string{"console", "auditor"}})
	urls := cluster.URLs()
	survivor := urls[2] // the console and the auditor stay on node 3; node 1 dies

	dir := t.TempDir()
	_, committeePub, _ := dsse.GenerateKeyFiles(dir, "committee-a")
	committee, _ := dsse.LoadPublicKey(committeePub)
	opsKeyPath, opsPub, _ := dsse.GenerateKeyFiles(dir, "ops-1")
	opsKey, _ := dsse.LoadPrivateKey(opsKeyPath)

	// The auditor keeps every event and result as lgctl watch --json would.
	var mu sync.Mutex
	var stream bytes.Buffer
	answered := map[string]map[string]bool{} // command id -> devices
	auditor := natsClient(t, pki, "auditor", survivor)
	if tok := auditor.SubscribeMultiple(map[string]byte{contract.Prefix + "+/events": 1, contract.Prefix + "+/cmd/result": 1},
		func(_ paho.Client, m paho.Message) {
			mu.Lock()
			defer mu.Unlock()
			if strings.HasSuffix(m.Topic(), "/cmd/result") {
				var r contract.Result
				if json.Unmarshal(m.Payload(), &r) == nil && r.OK {
					if answered[r.CmdID] == nil {
						answered[r.CmdID] = map[string]bool{}
					}
					answered[r.CmdID][strings.Split(strings.TrimPrefix(m.Topic(), contract.Prefix), "/")[0]] = true
				}
				return
			}
			json.NewEncoder(&stream).Encode(contract.WatchRecord{Topic: m.Topic(), Payload: m.Payload()})
		}); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("auditor subscribe: %v", tok.Error())
	}

	const silence = 2 * time.Second
	ccert, ckey := pki.Client(t, "console")
	con, err := console.New(console.Options{Broker: survivor, ClientID: "console", TLS: console.TLSFiles{CA: pki.CA, Cert: ccert, Key: ckey},
		Trust: []ed25519.PublicKey{committee}, Threshold: 1, Silence: silence})
	if err != nil {
		t.Fatal(err)
	}
	defer con.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() { defer wg.Done(); con.Run(ctx) }()

	waitUntil(t, 30*time.Second, "console connected", func() bool { up, _ := con.Connected(); return up })
	// The agents' and the nodes' logs are shown when the test fails.
	var logBuf lockedBuffer
	logs := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agents:\n%s", logBuf.String())
			for _, n := range cluster.Nodes {
				t.Logf("%s:\n%s", n.Name, n.Output())
			}
		}
	})
	links := make([]*agent.Agent, agents)
	for i, d := range devices {
		// r1, r4 on node 1; r2, r5 on 2; r3, r6 on 3: the list is turned so
		// that the node the device's id picks first (BrokerOrder) is that one.
		var order []string
		for k := range urls {
			order = append(slices.Clone(urls[k:]), urls[:k]...)
			if mqttlink.BrokerOrder(d.ID, order)[0] == urls[i%3] {
				break
			}
		}
		cert, key := pki.Client(t, d.ID)
		yaml := fmt.Sprintf(`device: {id: %s, site: %s, kind: router}
state_dir: %s
policy: {file: %s, trust: [%s]}
log: {level: error, format: json}
mqtt:
  urls: [%s]
  ca: %s
  cert: %s
  key: %s
  telemetry_every: 1s
  queue: {max_mb: 4}
  operators: [%s]
`, d.ID, d.Site, filepath.Join(dir, d.ID, "state"), filepath.Join(dir, d.ID, "policy.signed.json"), committeePub,
			strings.Join(order, ", "), pki.CA, cert, key, opsPub)
		cfg, err := config.Parse(d.ID+".yaml", []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		ready := make(chan *agent.Agent, 1)
		done := make(chan error, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := agent.Run(ctx, cfg, agent.Options{Logger: logs.With("dev", d.ID), Hardware: &agent.Hardware{}, Ready: func(a *agent.Agent) { ready <- a }})
			done <- err
		}()
		select {
		case links[i] = <-ready:
		case err := <-done:
			t.Fatalf("%s: Run: %v", d.ID, err)
		}
	}
	waitUntil(t, 60*time.Second, "every agent online in the console", func() bool {
		for _, d := range devices {
			if v, ok := con.Device(d.ID); !ok || !v.Online {
				return false
			}
		}
		return true
	})
	onNode1 := cluster.Nodes[0].MQTTClients(t)
	for _, id := range []string{"r1", "r4"} {
		if !slices.Contains(onNode1, id) {
			t.Fatalf("%s is not on node 1 (%q): the agents did not start at the node BrokerOrder picks", id, onNode1)
		}
	}

	// Every agent streams events; node 1 dies in the middle.
	const every = 50 * time.Millisecond
	emitted := make([]int, agents)
	stop := make(chan struct{})
	var emitters sync.WaitGroup
	var halted sync.Once
	halt := func() { halted.Do(func() { close(stop) }); emitters.Wait() }
	defer halt()
	for i := range links {
		emitters.Add(1)
		go func() {
			defer emitters.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-stop:
					emitted[i] = n
					return
				case <-tick.C:
					links[i].Link().Emit("test.tick", report.Info, report.Fields{"n": n})
				}
			}
		}()
	}
	time.Sleep(time.Second)

	// Node 1's host hangs, then dies. A killed process's sockets are reset
	// by the kernel at once and its agents are elsewhere within half a
	// second, before any console would call them offline; a host that
	// dies (power, panic) resets nothing. So the node is frozen first: its
	// agents fall silent, and with no will from a dead node the console
	// must find them offline by its Silence alone. Then SIGKILL.
	type seen struct{ offline, reconnected, back time.Duration }
	watch := map[string]*seen{"r1": {}, "r4": {}}
	othersOffline := map[string]bool{}
	others := func() {
		for _, d := range devices {
			if v, _ := con.Device(d.ID); watch[d.ID] == nil && !v.Online {
				othersOffline[d.ID] = true
			}
		}
	}
	frozen := time.Now()
	cluster.Nodes[0].Freeze(t)
	waitUntil(t, 20*time.Second, "node 1's agents offline in the console", func() bool {
		others()
		all := true
		for id, s := range watch {
			if v, _ := con.Device(id); s.offline == 0 && !v.Online {
				s.offline = time.Since(frozen)
			}
			all = all && s.offline != 0
		}
		return all
	})
	// The links of node 1's agents are sampled from the kill on: how long
	// until each is up (subscribed, state published) on another node.
	var upMu sync.Mutex
	upAfter := map[string]time.Duration{}
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		down := map[string]bool{}
		for start := time.Now(); time.Since(start) < 75*time.Second; time.Sleep(5 * time.Millisecond) {
			upMu.Lock()
			for i, d := range devices {
				if _, ok := watch[d.ID]; !ok || upAfter[d.ID] != 0 {
					continue
				}
				if c := links[i].Link().Connected(); !c {
					down[d.ID] = true
				} else if down[d.ID] {
					upAfter[d.ID] = time.Since(start)
				}
			}
			n := len(upAfter)
			upMu.Unlock()
			if n == len(watch) {
				return
			}
		}
	}()
	killed := time.Now()
	cluster.Nodes[0].Kill(t)

	// A signed command to all, published after the kill.
	env, err := command.Sign(command.Payload{ID: "after-kill", Target: "all", Issued: killed, Expires: killed.Add(2 * time.Minute), Type: command.Ping}, opsKey)
	if err != nil {
		t.Fatal(err)
	}
	if tok := auditor.Publish(contract.AllCmdTopic, 1, false, env); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("publish command: %v", tok.Error())
	}
	// A link whose first connect after the kill stalls (a QoS 1 publish
	// that JetStream never acknowledged while electing leaders) gives up
	// after 30 s and connects again: allow for that once.
	waitUntil(t, 75*time.Second, "node 1's agents on another node and online again in the console", func() bool {
		others()
		clients := append(cluster.Nodes[1].MQTTClients(t), cluster.Nodes[2].MQTTClients(t)...)
		all := true
		for id, s := range watch {
			upMu.Lock()
			if s.reconnected == 0 && upAfter[id] != 0 && slices.Contains(clients, id) {
				s.reconnected = upAfter[id]
			}
			upMu.Unlock()
			if v, _ := con.Device(id); s.back == 0 && v.Online {
				s.back = time.Since(killed)
			}
			all = all && s.reconnected != 0 && s.back != 0
		}
		return all
	})
	<-sampled
	for id, s := range watch {
		t.Logf("%s: offline in the console %v after the freeze (silence %v); after SIGKILL up on another node in %v, online again in the console in %v",
			id, s.offline.Round(time.Millisecond), silence, s.reconnected.Round(time.Millisecond), s.back.Round(time.Millisecond))
	}
	// Not asserted: the other nodes' agents may fall silent too while
	// JetStream elects new leaders for the streams node 1 led.
	t.Logf("agents of the other nodes shown offline meanwhile: %v", othersOffline)
	time.Sleep(time.Second) // the stream goes on after the failover
	halt()

	waitUntil(t, 30*time.Second, "the command after the kill answered by every agent", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(answered["after-kill"]) == agents
	})

	// No event lost: every tick of every agent arrives, in unbroken chains.
	var reports []*contract.ChainReport
	waitUntil(t, 30*time.Second, "every event at the auditor", func() bool {
		mu.Lock()
		got := slices.Clone(stream.Bytes())
		mu.Unlock()
		reports, err = contract.Audit(bytes.NewReader(got))
		if err != nil || len(reports) != agents {
			return false
		}
		for _, r := range reports {
			i := slices.IndexFunc(devices, func(d brokertest.NATSDevice) bool { return d.ID == r.Device })
			if i < 0 || ticks(got, r.Device) < emitted[i] {
				return false
			}
		}
		return true
	})
	total, dups := 0, 0
	for _, r := range reports {
		if !r.OK() || r.First != 1 {
			t.Errorf("%s: chain from %d to %d: %v", r.Device, r.First, r.Last, r.Problems)
		}
		total += r.Events
		dups += r.Duplicates
	}
	t.Logf("%d events from %d agents, 0 lost, %d QoS 1 duplicates", total, agents, dups)
}

// ticks counts the distinct test.tick events of device in a watch stream.
func ticks(stream []byte, device string) int {
	n := map[float64]bool{}
	for line := range bytes.Lines(stream) {
		var wr contract.WatchRecord
		var ev contract.Event
		if json.Unmarshal(line, &wr) != nil || json.Unmarshal(wr.Payload, &ev) != nil || ev.Device != device || ev.Type != "test.tick" {
			continue
		}
		if v, ok := ev.Fields["n"].(float64); ok {
			n[v] = true
		}
	}
	return len(n)
}

func natsClient(t *testing.T, pki *brokertest.PKI, name, url string) paho.Client {
	t.Helper()
	cert, key := pki.Client(t, name)
	o, err := contract.BrokerOptions(url, pki.CA, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	o.SetClientID(name).SetCleanSession(false).SetAutoReconnect(true).SetOrderMatters(false)
	cl := paho.NewClient(o)
	if tok := cl.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("%s connect: %v", name, tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(100) })
	return cl
}

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lockedBuffer is a bytes.Buffer for several writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
