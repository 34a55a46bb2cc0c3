package brokertest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"linkguard.dev/linkguard/hal/envtest"
)

// NATSDevice is a device of a NATS cluster's permission map: its
// certificate's common name is its id.
type NATSDevice struct{ ID, Site string }

// NATSOptions configure a NATS cluster.
type NATSOptions struct {
	Nodes int // default 3
	// Devices get the device permissions (NATSPermissions); Operators
	// (the console, operators' tools) may publish and subscribe anything.
	// A certificate named in neither is refused.
	Devices   []NATSDevice
	Operators []string
	// Callout, when set, hands every MQTT connection to an authorization
	// callout service (scripts/natsauth) instead of the static permission
	// map: Devices and Operators are then not used, and the service, which
	// the test starts, decides identity and rights.
	Callout *NATSCallout
}

// NATSCallout configures the cluster for an authorization callout: the
// public account nkey that signs its answers, and the user and password
// the service connects with (a client of account AUTH). Admitted clients
// are placed in account FLEET, which has JetStream and the MQTT sessions.
type NATSCallout struct {
	Issuer         string
	User, Password string
	// Serve starts the service on the nodes' client URLs; it is called
	// once the nodes run, before the cluster is probed (the probe's
	// client, NATSProbe, must be admitted as an operator).
	Serve func(clientURLs []string)
}

// NATSProbe is the certificate name of the client that checks each node
// is ready.
const NATSProbe = "brokertest-nats-probe"

// NATSCluster is a cluster of nats-server processes (JetStream, an MQTT
// listener with TLS on each node, users mapped from client certificates),
// one process per node so a node can be killed with SIGKILL.
type NATSCluster struct {
	Nodes    []*NATSNode
	pki      *PKI
	probe    string // an operator identity for readiness checks
	probeTLS *tls.Config
}

// NATSNode is one node of a NATSCluster.
type NATSNode struct {
	Name                          string
	bin, conf                     string
	mqttPort, monPort, clientPort int
	mu                            sync.Mutex
	cmd                           *exec.Cmd
	done                          chan struct{}
	out                           *bytes.Buffer
}

var natsBin struct {
	once sync.Once
	path string
	err  error
}

// NATSServer returns the nats-server binary of the module's go.mod (a
// tool dependency): `go tool -n` builds it once into the build cache
// (about 45 s on two cores) and prints its path, later in 0.2 s.
func NATSServer(tb testing.TB) string {
	tb.Helper()
	natsBin.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			natsBin.err = err
			return
		}
		cmd := exec.Command(goBin, "tool", "-n", "nats-server")
		// The server runs here, whatever the tests were built for.
		cmd.Env = append(os.Environ(), "GOOS=", "GOARCH=", "CGO_ENABLED=0")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			natsBin.err = fmt.Errorf("go tool -n nats-server: %w: %s", err, stderr.String())
			return
		}
		natsBin.path = strings.TrimSpace(string(out))
	})
	if natsBin.err != nil {
		envtest.Missing(tb, "nats-server ("+natsBin.err.Error()+")")
	}
	return natsBin.path
}

// NATSPermissions are the subjects a device may use. NATS maps the MQTT
// topic a/b/c to the subject a.b.c. A device publishes under its own
// prefix (but not its own command topic) and subscribes to its own, its
// site's and the fleet's commands and the retained fleet policy and
// roster. QoS 1 subscriptions are delivered through a JetStream consumer
// on $MQTT.sub.<nuid>, which the MQTT layer subscribes to as the client.
func NATSPermissions(d NATSDevice) string {
	p := "linkguard.v1." + d.ID + "."
	sub := []string{p + "cmd", "linkguard.v1.all.cmd", "linkguard.v1.policy", "linkguard.v1.roster", "$MQTT.sub.>"}
	if d.Site != "" {
		sub = append(sub, "linkguard.v1.site."+d.Site+".cmd")
	}
	return fmt.Sprintf(`{publish: {allow: [%q], deny: [%q]}, subscribe: {allow: [%s]}}`,
		p+">", p+"cmd", quoteAll(sub))
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// NATS starts a NATS Server cluster and waits until its routes are up,
// JetStream has a meta leader and the MQTT streams exist (a first MQTT
// session creates them, replicated on every node). It is killed at the
// end of the test.
func NATS(tb testing.TB, pki *PKI, opt NATSOptions) *NATSCluster {
	tb.Helper()
	bin := NATSServer(tb)
	if opt.Nodes <= 0 {
		opt.Nodes = 3
	}
	c := &NATSCluster{pki: pki, probe: NATSProbe}
	c.probeTLS = pki.ClientTLS(tb, c.probe)
	auth := staticAuth(c.probe, opt)
	if opt.Callout != nil {
		auth = calloutAuth(opt.Callout)
	}
	routePorts := make([]int, opt.Nodes)
	for i := range routePorts {
		routePorts[i] = freePort(tb)
	}
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, strconv.Quote("nats-route://127.0.0.1:"+strconv.Itoa(p)))
	}
	dir := tb.TempDir()
	for i := range opt.Nodes {
		n := &NATSNode{Name: "n" + strconv.Itoa(i+1), bin: bin, mqttPort: freePort(tb), monPort: freePort(tb), clientPort: freePort(tb)}
		n.conf = filepath.Join(dir, n.Name+".conf")
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: 1GB
  limits { default_max_consumers: -1 }
}
cluster {
  name: linkguard
  listen: 127.0.0.1:%d
  routes: [%s]
}
mqtt {
  listen: 127.0.0.1:%d
  tls {
    cert_file: %q
    key_file: %q
    ca_file: %q
    %s: true
    timeout: 5
  }
  stream_replicas: %d
  consumer_memory_storage: true
  ack_wait: "5s"
  max_ack_pending: 1024
  js_api_timeout: "20s" # as scripts/nats/linkguard.conf, which says why
}
%s
`, n.Name, n.clientPort, n.monPort, filepath.Join(dir, n.Name), routePorts[i], strings.Join(routes, ", "), n.mqttPort,
			pki.ServerCert, pki.ServerKey, pki.CA, auth.verify, min(opt.Nodes, 3), auth.conf)
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			tb.Fatal(err)
		}
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		n.start(tb)
	}
	tb.Cleanup(func() {
		for _, n := range c.Nodes {
			n.Kill(tb)
		}
	})
	if opt.Callout != nil && opt.Callout.Serve != nil {
		opt.Callout.Serve(c.ClientURLs())
	}
	c.WaitReady(tb, 60*time.Second)
	return c
}

// natsAuth is how a cluster's nodes authenticate MQTT clients: the mqtt
// TLS block's verify option and the configuration's account and
// authorization blocks.
type natsAuth struct{ verify, conf string }

// staticAuth maps certificates to users with fixed permissions.
func staticAuth(probe string, opt NATSOptions) natsAuth {
	var users []string
	for _, o := range append([]string{probe}, opt.Operators...) {
		users = append(users, fmt.Sprintf(`{user: %q, permissions: {publish: ">", subscribe: ">"}}`, "CN="+o))
	}
	for _, d := range opt.Devices {
		users = append(users, fmt.Sprintf(`{user: %q, permissions: %s}`, "CN="+d.ID, NATSPermissions(d)))
	}
	return natsAuth{verify: "verify_and_map", conf: "authorization {\n  users: [\n    " + strings.Join(users, ",\n    ") + "\n  ]\n}"}
}

// calloutAuth asks the callout service about every client but its own
// user. The client's verified certificate chain goes with the request.
func calloutAuth(c *NATSCallout) natsAuth {
	return natsAuth{verify: "verify", conf: fmt.Sprintf(`accounts {
  AUTH: { users: [ {user: %q, password: %q} ] }
  FLEET: { jetstream: enabled }
}
authorization {
  auth_callout {
    issuer: %q
    auth_users: [ %q ]
    account: AUTH
  }
}`, c.User, c.Password, c.Issuer, c.User)}
}

// ClientURLs are the nodes' NATS client URLs (nats://127.0.0.1:PORT), in
// node order, for a callout service.
func (c *NATSCluster) ClientURLs() []string {
	var u []string
	for _, n := range c.Nodes {
		u = append(u, "nats://127.0.0.1:"+strconv.Itoa(n.clientPort))
	}
	return u
}

// URLs are the nodes' MQTT URLs (mqtts://127.0.0.1:PORT), in node order.
func (c *NATSCluster) URLs() []string {
	var u []string
	for _, n := range c.Nodes {
		u = append(u, n.URL())
	}
	return u
}

// WaitReady waits until every running node reports JetStream healthy with
// a meta leader, and an MQTT session can be made on each.
func (c *NATSCluster) WaitReady(tb testing.TB, within time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		for {
			err := n.jsReady()
			if err == nil {
				err = c.mqttProbe(n, time.Until(deadline))
			}
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("brokertest: nats node %s not ready after %v: %v\n%s", n.Name, within, err, n.Output())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// jsReady asks the monitoring port whether JetStream is current and the
// meta group has a leader.
func (n *NATSNode) jsReady() error {
	hc := &http.Client{Timeout: 2 * time.Second}
	r, err := hc.Get("http://127.0.0.1:" + strconv.Itoa(n.monPort) + "/healthz")
	if err != nil {
		return err
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: %s", r.Status)
	}
	r, err = hc.Get("http://127.0.0.1:" + strconv.Itoa(n.monPort) + "/jsz")
	if err != nil {
		return err
	}
	defer r.Body.Close()
	var jsz struct {
		Meta *struct {
			Leader string `json:"leader"`
		} `json:"meta_cluster"`
	}
	if err := json.NewDecoder(r.Body).Decode(&jsz); err != nil {
		return fmt.Errorf("jsz: %w", err)
	}
	if jsz.Meta == nil || jsz.Meta.Leader == "" {
		return fmt.Errorf("jsz: no meta leader yet")
	}
	return nil
}

// mqttProbe makes a persistent MQTT session with a QoS 1 subscription on
// n, and ends it: the first one in an account creates the MQTT streams.
func (c *NATSCluster) mqttProbe(n *NATSNode, within time.Duration) error {
	o := paho.NewClientOptions().AddBroker("ssl://127.0.0.1:" + strconv.Itoa(n.mqttPort)).
		SetClientID(c.probe + "-" + n.Name).SetCleanSession(true).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).
		SetTLSConfig(c.probeTLS)
	cl := paho.NewClient(o)
	ctx, cancel := context.WithTimeout(context.Background(), min(within, 20*time.Second))
	defer cancel()
	tok := cl.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return fmt.Errorf("mqtt connect: %w", ctx.Err())
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("mqtt connect: %w", err)
	}
	defer cl.Disconnect(0)
	tok = cl.Subscribe("brokertest/probe", 1, nil)
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return fmt.Errorf("mqtt subscribe: %w", ctx.Err())
	}
	return tok.Error()
}

// URL is mqtts://127.0.0.1:PORT of the node's MQTT listener.
func (n *NATSNode) URL() string { return "mqtts://127.0.0.1:" + strconv.Itoa(n.mqttPort) }

// Running reports whether the node's process is alive.
func (n *NATSNode) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// Output is what the node logged.
func (n *NATSNode) Output() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.out == nil {
		return ""
	}
	return n.out.String()
}

func (n *NATSNode) start(tb testing.TB) {
	tb.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return
	}
	n.out = new(bytes.Buffer)
	cmd := exec.Command(n.bin, "-c", n.conf)
	cmd.Stdout, cmd.Stderr = syncWriter{&n.mu, n.out}, syncWriter{&n.mu, n.out}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(n.done)
}

// Start starts a killed node again from its store; call the cluster's
// WaitReady before counting on it.
func (n *NATSNode) Start(tb testing.TB) { n.start(tb) }

// Kill ends the node with SIGKILL: no goodbye to its clients or its
// peers, no wills sent, as when a host dies.
func (n *NATSNode) Kill(tb testing.TB) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// Freeze stops the node with SIGSTOP, as a host that hangs: its sockets
// stay open and silent, so its clients notice nothing until their
// keepalive runs out (a killed process's sockets are reset by the kernel
// at once, on loopback as on a live host). Kill ends a frozen node too.
func (n *NATSNode) Freeze(tb testing.TB) {
	tb.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		tb.Fatalf("brokertest: freeze of a stopped node %s", n.Name)
	}
	if err := n.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		tb.Fatalf("brokertest: freeze %s: %v", n.Name, err)
	}
}

// syncWriter guards a process's output buffer, read while it runs.
type syncWriter struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (w syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// MQTTClients are the client ids of the MQTT connections the node holds
// (its monitoring port's /connz).
func (n *NATSNode) MQTTClients(tb testing.TB) []string {
	tb.Helper()
	var connz struct {
		Conns []struct {
			MQTTClient string `json:"mqtt_client"`
		} `json:"connections"`
	}
	n.monitor(tb, "/connz?limit=100000", &connz)
	var ids []string
	for _, c := range connz.Conns {
		if c.MQTTClient != "" {
			ids = append(ids, c.MQTTClient)
		}
	}
	return ids
}

// MQTTConsumers are the filter subjects of the JetStream consumers behind
// MQTT QoS 1 subscriptions that node n holds (its monitoring port's /jsz),
// one entry per consumer: on NATS every QoS 1 subscription of every
// session is one.
func (n *NATSNode) MQTTConsumers(tb testing.TB) []string {
	tb.Helper()
	var jsz struct {
		Accounts []struct {
			Streams []struct {
				Name      string `json:"name"`
				Consumers []struct {
					Config struct {
						Filter  string   `json:"filter_subject"`
						Filters []string `json:"filter_subjects"`
					} `json:"config"`
				} `json:"consumer_detail"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	n.monitor(tb, "/jsz?accounts=true&streams=true&consumers=true&config=true", &jsz)
	var fs []string
	for _, a := range jsz.Accounts {
		for _, st := range a.Streams {
			if st.Name != "$MQTT_msgs" {
				continue
			}
			for _, c := range st.Consumers {
				fs = append(fs, c.Config.Filter)
				fs = append(fs, c.Config.Filters...)
			}
		}
	}
	return fs
}

// monitor decodes the JSON the node's monitoring port answers at path.
func (n *NATSNode) monitor(tb testing.TB, path string, v any) {
	tb.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	r, err := hc.Get("http://127.0.0.1:" + strconv.Itoa(n.monPort) + path)
	if err != nil {
		tb.Fatalf("brokertest: %s %s: %v", n.Name, path, err)
	}
	defer r.Body.Close()
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		tb.Fatalf("brokertest: %s %s: %v", n.Name, path, err)
	}
}
