package mosquitto_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/mqttlink"
	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/hal/envtest"
	"linkguard.dev/linkguard/policy/dsse"
)

// The shipped listeners, as linkguard.conf numbers them.
const (
	devicePort   = "8883"
	operatorPort = "8884"
)

// The operator identities of operators.acl.
const (
	consoleID  = "console@ops"
	console2ID = "console-2@ops"
	lgctlID    = "lgctl@ops"
)

// wait bounds every wait for something that must happen.
const wait = 5 * time.Second

// fleet is a broker running the shipped configuration, with its two CAs.
type fleet struct {
	dev, op      *brokertest.PKI
	devTLS       map[string]*tls.Config // fleet-CA certificates by name, issued once
	opTLS        map[string]*tls.Config // operator-CA certificates by name
	broker       brokertest.Broker
	devURL       string
	opURL        string
	dir          string
	revokedAtRun []string // device names in the CRL the broker started with
}

// sites is the site map linkguard-acl is given.
var sites = map[string]string{"r1": "north-3", "r2": "south-1", "r4": "north-3"}

// startFleet runs mosquitto on linkguard.conf, devices.acl (through
// linkguard-acl with the site map) and operators.acl as shipped; only
// ports, file paths, logging and the user it runs as are changed.
func startFleet(t *testing.T) *fleet {
	t.Helper()
	envtest.Command(t, "mosquitto")
	f := &fleet{dev: brokertest.NewPKI(t), op: brokertest.NewPKI(t), dir: t.TempDir(),
		devTLS: map[string]*tls.Config{}, opTLS: map[string]*tls.Config{}}

	// Each certificate is issued once, before the CRLs that may revoke it.
	// A device named "console" is one the fleet CA would sign.
	for _, n := range []string{"r1", "r2", "r3", "r4", "r5", "console"} {
		f.devTLS[n] = f.dev.ClientTLS(t, n)
	}
	for _, n := range []string{consoleID, console2ID, lgctlID, "lgctl@old"} {
		f.opTLS[n] = f.op.ClientTLS(t, n)
		// One server certificate, the fleet CA's, serves both listeners.
		f.opTLS[n].RootCAs = f.dev.Pool()
	}
	f.revokedAtRun = []string{"r3"}
	devCRL := f.dev.CRL(t, f.revokedAtRun...)
	opCRL := f.op.CRL(t, "lgctl@old")

	devACL := f.writeACL(t)
	opACL, _ := filepath.Abs("operators.acl")

	opPort := freePort(t)
	paths := map[string]string{
		"/etc/mosquitto/linkguard/fleet-ca.pem":     f.dev.CA,
		"/etc/mosquitto/linkguard/fleet-crl.pem":    devCRL,
		"/etc/mosquitto/linkguard/server.pem":       f.dev.ServerCert,
		"/etc/mosquitto/linkguard/server.key":       f.dev.ServerKey,
		"/etc/mosquitto/linkguard/operator-ca.pem":  f.op.CA,
		"/etc/mosquitto/linkguard/operator-crl.pem": opCRL,
		"/etc/mosquitto/linkguard/devices.acl":      devACL,
		"/etc/mosquitto/linkguard/operators.acl":    opACL,
	}
	shipped, err := os.ReadFile("linkguard.conf")
	if err != nil {
		t.Fatal(err)
	}
	f.broker = brokertest.MosquittoConf(t, f.dev, func(port int, dir string) string {
		conf, err := testConf(shipped, map[string]string{devicePort: strconv.Itoa(port), operatorPort: strconv.Itoa(opPort)}, paths, dir)
		if err != nil {
			t.Fatal(err)
		}
		return conf
	})
	f.devURL = f.broker.URL()
	f.opURL = "mqtts://127.0.0.1:" + strconv.Itoa(opPort)
	return f
}

// writeACL runs linkguard-acl on devices.acl and the site map, with a
// "!DEVICE" line for each of revoked, into the broker's device ACL file.
func (f *fleet) writeACL(t *testing.T, revoked ...string) string {
	t.Helper()
	var sm strings.Builder
	sm.WriteString("# device site\n")
	for _, d := range slices.Sorted(maps.Keys(sites)) {
		fmt.Fprintf(&sm, "%s %s\n", d, sites[d])
	}
	for _, d := range revoked {
		fmt.Fprintf(&sm, "!%s\n", d)
	}
	smPath := filepath.Join(f.dir, "sites")
	if err := os.WriteFile(smPath, []byte(sm.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	acl, err := exec.Command("sh", "linkguard-acl", "devices.acl", smPath).Output()
	if err != nil {
		t.Fatalf("linkguard-acl: %v", err)
	}
	path := filepath.Join(f.dir, "devices.acl")
	if err := os.WriteFile(path, acl, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testConf rewrites the shipped configuration for a test: listeners onto
// loopback ports, production paths onto the test's files, the log onto
// stderr. A production path left over is an error, so the test never
// runs a configuration other than the one shipped plus these changes.
func testConf(shipped []byte, ports, paths map[string]string, dir string) (string, error) {
	var out strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(shipped))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		key, val, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch {
		case key == "listener":
			p, ok := ports[val]
			if !ok {
				return "", fmt.Errorf("linkguard.conf:%d: listener %q is not one the test knows", n, val)
			}
			line = "listener " + p + " 127.0.0.1"
		case key == "persistence_location":
			line = key + " " + dir + "/"
		case key == "log_dest":
			line = "log_dest stderr"
		case paths[val] != "":
			line = key + " " + paths[val]
		}
		if !strings.HasPrefix(strings.TrimSpace(line), "#") && (strings.Contains(line, "/etc/") || strings.Contains(line, "/var/")) {
			return "", fmt.Errorf("linkguard.conf:%d: %q: a production path the test does not replace", n, line)
		}
		out.WriteString(line + "\n")
	}
	return out.String(), sc.Err()
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ---- clients

type msg struct {
	topic    string
	payload  string
	retained bool
}

// client is one MQTT connection that records everything delivered to it.
type client struct {
	t    *testing.T
	name string
	c    paho.Client
	mu   sync.Mutex
	got  []msg
	sig  chan struct{}
	lost chan error
}

// device connects with a fleet-CA certificate on the device listener.
func (f *fleet) device(t *testing.T, cert, clientID string, clean bool) *client {
	t.Helper()
	c, err := f.dial(t, f.devURL, f.devTLS[cert].Clone(), cert, clientID, clean)
	if err != nil {
		t.Fatalf("%s: connect: %v", cert, err)
	}
	return c
}

// operator connects with an operator-CA certificate on the operator
// listener, with a client id of its own choosing (the broker replaces it).
func (f *fleet) operator(t *testing.T, cert string) *client {
	t.Helper()
	c, err := f.dial(t, f.opURL, f.opTLS[cert].Clone(), cert, "lgconsole-1234", true)
	if err != nil {
		t.Fatalf("%s: connect: %v", cert, err)
	}
	return c
}

func (f *fleet) dial(t *testing.T, url string, tc *tls.Config, name, clientID string, clean bool) (*client, error) {
	c := &client{t: t, name: name, sig: make(chan struct{}, 1), lost: make(chan error, 1)}
	o := paho.NewClientOptions().AddBroker(strings.Replace(url, "mqtts", "ssl", 1)).
		SetTLSConfig(tc).SetClientID(clientID).SetCleanSession(clean).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(wait).SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			c.mu.Lock()
			c.got = append(c.got, msg{m.Topic(), string(m.Payload()), m.Retained()})
			c.mu.Unlock()
			select {
			case c.sig <- struct{}{}:
			default:
			}
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case c.lost <- err:
			default:
			}
		})
	c.c = paho.NewClient(o)
	tok := c.c.Connect()
	if !tok.WaitTimeout(wait) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.c.Disconnect(0) })
	return c, nil
}

// try connects and disconnects again: the connection's error, if any.
func (f *fleet) try(t *testing.T, url string, tc *tls.Config, name string) error {
	c, err := f.dial(t, url, tc.Clone(), name, name, true)
	if err == nil {
		c.c.Disconnect(0)
	}
	return err
}

// sub subscribes at QoS 1 and returns the SUBACK code (0x80: refused).
func (c *client) sub(filter string) byte {
	c.t.Helper()
	tok := c.c.Subscribe(filter, 1, nil)
	if !tok.WaitTimeout(wait) || tok.Error() != nil {
		c.t.Fatalf("%s: subscribe %s: %v", c.name, filter, tok.Error())
	}
	return tok.(*paho.SubscribeToken).Result()[filter]
}

// mustSub subscribes and fails unless the broker granted it.
func (c *client) mustSub(filters ...string) {
	c.t.Helper()
	for _, f := range filters {
		if code := c.sub(f); code == 0x80 {
			c.t.Fatalf("%s: subscription to %s refused", c.name, f)
		}
	}
}

// pub publishes at QoS 1 and waits for the PUBACK. mosquitto acknowledges
// a publish it refuses too: only what subscribers see tells.
func (c *client) pub(topic, payload string, retained bool) {
	c.t.Helper()
	tok := c.c.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(wait) || tok.Error() != nil {
		c.t.Fatalf("%s: publish %s: %v", c.name, topic, tok.Error())
	}
}

func (c *client) snapshot() []msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

// await waits until the client has received payload on topic.
func (c *client) await(topic, payload string) msg {
	c.t.Helper()
	return c.awaitFunc(topic, strconv.Quote(payload), func(p string) bool { return p == payload })
}

// awaitFunc waits until the client has received a message on topic that
// ok accepts.
func (c *client) awaitFunc(topic, what string, ok func(payload string) bool) msg {
	c.t.Helper()
	deadline := time.After(wait)
	for {
		for _, m := range c.snapshot() {
			if m.topic == topic && ok(m.payload) {
				return m
			}
		}
		select {
		case <-c.sig:
		case <-deadline:
			c.t.Fatalf("%s: %s on %s did not arrive within %v; got %v", c.name, what, topic, wait, c.snapshot())
		}
	}
}

// none fails if any payload in bad reached the client.
func (c *client) none(bad map[string]string) {
	c.t.Helper()
	for _, m := range c.snapshot() {
		if why, ok := bad[m.payload]; ok {
			c.t.Errorf("%s received %q on %s: %s", c.name, m.payload, m.topic, why)
		}
	}
}

func (c *client) connected() bool { return c.c.IsConnectionOpen() }

// ---- the test

// TestShippedBrokerConfig runs the shipped mosquitto configuration and
// shows that a device is held to its own identity and an operator to its
// role. A refused publish is acknowledged like any other, so each negative
// check ends with a fence: an allowed message from the same publisher,
// which mosquitto routes after everything sent before it. Once the fence
// has arrived, anything refused that would have arrived has.
func TestShippedBrokerConfig(t *testing.T) {
	f := startFleet(t)
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	val := func(what string) string { return what + "-" + nonce }

	console := f.operator(t, consoleID)
	console.mustSub(contract.Prefix + "#")
	lgctl := f.operator(t, lgctlID)

	// The retained documents only operators may write.
	policy := val("policy") // the retained policy, as its last rightful publisher left it
	lgctl.pub(contract.PolicyTopic, policy, true)
	lgctl.pub(contract.RosterTopic, val("roster"), true)
	console.await(contract.PolicyTopic, val("policy"))
	console.await(contract.RosterTopic, val("roster"))

	r2 := f.device(t, "r2", "r2", false)
	r2t := contract.TopicsFor("r2", sites["r2"])
	r2.mustSub(r2t.Cmd, r2t.SiteCmd, contract.AllCmdTopic)
	r2.pub(r2t.State, val("r2-state"), true)
	console.await(r2t.State, val("r2-state"))

	t.Run("agent", func(t *testing.T) {
		// Everything the agent does (agent/mqttlink/link.go): subscribe to
		// its commands, its site's and the fleet's, the policy and roster;
		// publish its state retained, telemetry, events, results, evidence.
		r1 := f.device(t, "r1", "r1", false)
		t1 := contract.TopicsFor("r1", sites["r1"])
		r1.mustSub(t1.Cmd, t1.SiteCmd, contract.AllCmdTopic, contract.PolicyTopic, contract.RosterTopic)
		if m := r1.await(contract.PolicyTopic, val("policy")); !m.retained {
			t.Error("policy not delivered as retained")
		}
		r1.await(contract.RosterTopic, val("roster"))

		for _, topic := range []string{t1.State, t1.Telemetry, t1.Events, t1.Result, t1.Evidence} {
			r1.pub(topic, val("r1 on "+topic), topic == t1.State)
			console.await(topic, val("r1 on "+topic))
		}
		fresh := f.operator(t, console2ID)
		fresh.mustSub(t1.State)
		if m := fresh.await(t1.State, val("r1 on "+t1.State)); !m.retained {
			t.Error("r1's state was not retained")
		}

		// Commands from lgctl and from the console, on every topic r1 takes
		// them from; the console may relay the policy as well.
		for _, op := range []*client{lgctl, console} {
			for _, topic := range []string{t1.Cmd, t1.SiteCmd, contract.AllCmdTopic} {
				op.pub(topic, val(op.name+" cmd on "+topic), false)
				r1.await(topic, val(op.name+" cmd on "+topic))
			}
		}
		policy = val("policy by the console")
		console.pub(contract.PolicyTopic, policy, true)
		r1.await(contract.PolicyTopic, policy)
	})

	t.Run("real agent", func(t *testing.T) {
		// The agent's own link, as a device runs it, at r1's site: it
		// connects, subscribes, publishes its state, telemetry and events,
		// and answers signed commands sent to it, its site and the fleet.
		keyPath, pubPath, err := dsse.GenerateKeyFiles(t.TempDir(), "ops-1")
		if err != nil {
			t.Fatal(err)
		}
		opKey, err := dsse.LoadPrivateKey(keyPath)
		if err != nil {
			t.Fatal(err)
		}
		ring, err := dsse.LoadKeyring(pubPath)
		if err != nil {
			t.Fatal(err)
		}
		cert, key := f.dev.Client(t, "r1")
		l, err := mqttlink.New(mqttlink.Options{
			Device: "r1", Site: sites["r1"], Kind: "router", Version: "test",
			URL: f.devURL, CA: f.dev.CA, Cert: cert, Key: key,
			Keepalive: 5 * time.Second, TelemetryEvery: 200 * time.Millisecond,
			MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second,
			StateDir: t.TempDir(), QueueMaxBytes: 8 << 20, Operators: ring,
			Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- l.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("link: %v", err)
			}
		}()
		t1 := l.Topics()
		console.awaitFunc(t1.State, "r1's online state", func(p string) bool {
			var st struct {
				Online bool   `json:"online"`
				BootID string `json:"boot_id"`
			}
			return json.Unmarshal([]byte(p), &st) == nil && st.Online && st.BootID == l.BootID()
		})
		console.awaitFunc(t1.Telemetry, "r1's telemetry", func(string) bool { return true })
		l.Emit("test.acl", report.Info, report.Fields{"nonce": nonce})
		console.awaitFunc(t1.Events, "r1's event", func(p string) bool { return strings.Contains(p, nonce) })

		now := time.Now()
		for _, target := range []string{"r1", "site:" + sites["r1"], "all"} {
			id := val("ping-" + strings.ReplaceAll(target, ":", "-"))
			env, err := command.Sign(command.Payload{ID: id, Target: target, Issued: now, Expires: now.Add(time.Minute), Type: command.Ping}, opKey)
			if err != nil {
				t.Fatal(err)
			}
			lgctl.pub(contract.CmdTopicFor(target), string(env), false)
			console.awaitFunc(t1.Result, "r1's result for "+id, func(p string) bool {
				var r contract.Result
				return json.Unmarshal([]byte(p), &r) == nil && r.CmdID == id && r.OK
			})
		}
	})

	t.Run("cannot publish as another or as an operator", func(t *testing.T) {
		r1 := f.device(t, "r1", "r1", false)
		t1 := contract.TopicsFor("r1", sites["r1"])
		// A fleet-CA certificate named like the console is still a device.
		fake := f.device(t, "console", "console", true)
		bad := map[string]string{}
		try := func(c *client, topic string, retained bool) {
			p := val(c.name + " forged " + topic)
			bad[p] = "published by " + c.name + " on " + topic
			c.pub(topic, p, retained)
		}
		for _, topic := range []string{r2t.State, r2t.Events, r2t.Telemetry, r2t.Result, r2t.Evidence, r2t.Cmd, t1.Cmd,
			r2t.SiteCmd, t1.SiteCmd, contract.AllCmdTopic, contract.PolicyTopic, contract.RosterTopic,
			contract.Prefix + "r1/state/x", contract.Prefix + "r1/other"} {
			try(r1, topic, topic == r2t.State || topic == contract.PolicyTopic || topic == contract.RosterTopic)
		}
		for _, topic := range []string{contract.PolicyTopic, contract.AllCmdTopic, contract.Prefix + "r1/cmd"} {
			try(fake, topic, topic == contract.PolicyTopic)
		}
		r1.pub(t1.Events, val("r1 fence"), false)
		fake.pub(contract.Prefix+"console/state", val("fake fence"), true)
		console.await(t1.Events, val("r1 fence"))
		console.await(contract.Prefix+"console/state", val("fake fence"))
		console.none(bad)
		select {
		case err := <-console.lost:
			t.Errorf("the console lost its connection: %v", err)
		default:
		}

		// What is retained is still what its owners wrote.
		check := f.operator(t, console2ID)
		check.mustSub(contract.PolicyTopic, contract.RosterTopic, r2t.State)
		check.await(contract.PolicyTopic, policy)
		check.await(contract.RosterTopic, val("roster"))
		check.await(r2t.State, val("r2-state"))
		check.none(bad)

		// And the operator listener takes no fleet-CA certificate at all.
		if err := f.try(t, f.opURL, f.devTLS["console"], "console"); err == nil {
			t.Error("a fleet-CA certificate connected to the operator listener")
		}
	})

	t.Run("cannot read another's commands", func(t *testing.T) {
		r1 := f.device(t, "r1", "r1-reader", true)
		t1 := contract.TopicsFor("r1", sites["r1"])
		refused := map[string]byte{}
		for _, filter := range []string{r2t.Cmd, r2t.SiteCmd, contract.Prefix + "r2/#", contract.Prefix + "+/cmd",
			contract.Prefix + "site/+/cmd", contract.Prefix + "#", "#", r2t.State} {
			refused[filter] = r1.sub(filter)
		}
		t.Logf("SUBACK codes for r1's filters (0x80 refused): %v", refused)
		r1.mustSub(t1.Cmd)
		bad := map[string]string{val("r2-state"): "r2's retained state"}
		for _, topic := range []string{r2t.Cmd, r2t.SiteCmd} {
			p := val("for r2 on " + topic)
			bad[p] = "a command for r2 on " + topic
			lgctl.pub(topic, p, false)
		}
		lgctl.pub(t1.Cmd, val("r1 read fence"), false)
		r1.await(t1.Cmd, val("r1 read fence"))
		r2.await(r2t.Cmd, val("for r2 on "+r2t.Cmd))
		r2.await(r2t.SiteCmd, val("for r2 on "+r2t.SiteCmd))
		r1.none(bad)
	})

	t.Run("cannot take over another's client id", func(t *testing.T) {
		r1 := f.device(t, "r1", "r1", false)
		t1 := contract.TopicsFor("r1", sites["r1"])
		// r1's certificate, r2's client id, r2's session if it could get it.
		thief := f.device(t, "r1", "r2", false)
		select {
		case <-r1.lost: // the thief's session is r1's: it replaced r1's connection
		case err := <-r2.lost:
			t.Fatalf("the connection with client id r2 took r2's session (r2: %v): its id is not bound to its certificate", err)
		case <-time.After(wait):
			t.Fatal("the connection with client id r2 did not replace r1's: its id is not bound to its certificate")
		}
		thief.sub(r2t.Cmd) // refused: r1 reads r1's commands only
		thief.mustSub(t1.Cmd)
		bad := map[string]string{}
		for i := range 6 {
			p := val("signed for r2 #" + strconv.Itoa(i))
			bad[p] = "r2's command"
			lgctl.pub(r2t.Cmd, p, false)
		}
		lgctl.pub(t1.Cmd, val("thief fence"), false)
		thief.await(t1.Cmd, val("thief fence"))
		for i := range 6 {
			r2.await(r2t.Cmd, val("signed for r2 #"+strconv.Itoa(i)))
		}
		thief.none(bad)
		select {
		case err := <-r2.lost:
			t.Errorf("r2 lost its connection: %v", err)
		default:
		}
		if !r2.connected() {
			t.Error("r2 is not connected")
		}
	})

	t.Run("message size", func(t *testing.T) {
		// message_size_limit is the contract's largest message, the policy.
		if got := confValue(t, "message_size_limit"); got != strconv.Itoa(dsse.MaxEnvelopeSize) {
			t.Fatalf("message_size_limit %s, want dsse.MaxEnvelopeSize %d", got, dsse.MaxEnvelopeSize)
		}
		r1 := f.device(t, "r1", "r1", false)
		t1 := contract.TopicsFor("r1", sites["r1"])
		r1.mustSub(t1.Cmd)
		big := strings.Repeat("p", dsse.MaxEnvelopeSize-len(nonce)-1) + "-" + nonce
		lgctl.pub(t1.Cmd, big+"x", false)
		lgctl.pub(t1.Cmd, big, false)
		r1.await(t1.Cmd, big)
		r1.none(map[string]string{big + "x": "a message over message_size_limit"})
	})

	t.Run("revoked certificates", func(t *testing.T) {
		for _, name := range f.revokedAtRun {
			if err := f.try(t, f.devURL, f.devTLS[name], name); err == nil {
				t.Errorf("%s, in the CRL, connected", name)
			}
		}
		if err := f.try(t, f.opURL, f.opTLS["lgctl@old"], "lgctl@old"); err == nil {
			t.Error("lgctl@old, in the operator CRL, connected")
		}
		// Revoking a device that is online, as README.md says: a new CRL,
		// "!r4" in the site map, linkguard-acl, a reload (SIGHUP). r5, revoked
		// with it but offline, shows when the reload has been applied
		// (connecting as r4 to find out would replace r4's connection).
		r4 := f.device(t, "r4", "r4", true)
		t4 := contract.TopicsFor("r4", sites["r4"])
		r4.pub(t4.Events, val("r4 before"), false)
		console.await(t4.Events, val("r4 before"))
		f.dev.CRL(t, append(f.revokedAtRun, "r4", "r5")...)
		f.writeACL(t, "r4")
		f.broker.(brokertest.Reloader).Reload(t)
		deadline := time.Now().Add(wait)
		for f.try(t, f.devURL, f.devTLS["r5"], "r5") == nil {
			if time.Now().After(deadline) {
				t.Fatal("r5 still connects after its certificate was revoked and mosquitto reloaded")
			}
			time.Sleep(50 * time.Millisecond)
		}

		// r4's open connection is silenced by the deny rule. The PUBACK
		// comes after mosquitto has routed the message; r1's fence, sent
		// after it, reaches the console after anything routed before.
		r1 := f.device(t, "r1", "r1", true)
		tok := r4.c.Publish(t4.Events, 1, false, val("r4 after"))
		if !tok.WaitTimeout(wait) || tok.Error() != nil {
			t.Logf("r4's publish after revocation: %v", tok.Error())
		}
		t.Logf("r4's connection open after the reload: %v", r4.connected())
		t1 := contract.TopicsFor("r1", sites["r1"])
		r1.pub(t1.Events, val("revocation fence"), false)
		console.await(t1.Events, val("revocation fence"))
		console.none(map[string]string{val("r4 after"): "published by r4 after its revocation"})

		// And r4 cannot connect again; the reload refused r4, not everyone.
		if err := f.try(t, f.devURL, f.devTLS["r4"], "r4"); err == nil {
			t.Error("r4 connected after its certificate was revoked and mosquitto reloaded")
		}
		f.operator(t, console2ID)
	})
}

// confValue is a directive's value in the shipped linkguard.conf.
func confValue(t *testing.T, key string) string {
	t.Helper()
	b, err := os.ReadFile("linkguard.conf")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if k, v, _ := strings.Cut(strings.TrimSpace(line), " "); k == key {
			return v
		}
	}
	t.Fatalf("linkguard.conf has no %s", key)
	return ""
}
