package brokertest

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"linkguard.dev/linkguard/hal/envtest"
)

// Broker is a running test broker.
type Broker interface {
	Name() string
	// URL is mqtts://127.0.0.1:PORT.
	URL() string
	// Stop takes the broker off the network: clients are disconnected and
	// connections refused. Sessions and retained messages are kept.
	Stop(tb testing.TB)
	// Start brings a stopped broker back on the same port.
	Start(tb testing.TB)
}

// Kind names a broker implementation for parametric suites.
type Kind string

// Broker kinds.
const (
	KindMosquitto Kind = "mosquitto"
	KindMochi     Kind = "mochi"
)

// Start starts a broker of the given kind; it is stopped at the end of
// the test.
func Start(tb testing.TB, k Kind, pki *PKI) Broker {
	tb.Helper()
	switch k {
	case KindMosquitto:
		return Mosquitto(tb, pki)
	case KindMochi:
		return Mochi(tb, pki)
	}
	tb.Fatalf("brokertest: unknown broker kind %q", k)
	return nil
}

func freePort(tb testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitTLS waits until the port completes a TLS handshake.
func waitTLS(tb testing.TB, addr string, tc *tls.Config, what func() string) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, tc)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("brokertest: broker on %s did not come up: %v\n%s", addr, err, what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---- mosquitto

type mosquitto struct {
	bin  string
	pki  *PKI
	conf string
	port int
	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *bytes.Buffer
	tc   *tls.Config
}

// Mosquitto starts the Debian mosquitto binary with TLS and required client
// certificates (the certificate's CN is the username), with persistence so
// sessions survive Stop/Start. Skips outside CI if mosquitto is missing.
func Mosquitto(tb testing.TB, pki *PKI) Broker {
	tb.Helper()
	bin := envtest.Command(tb, "mosquitto")
	dir := tb.TempDir()
	m := &mosquitto{bin: bin, pki: pki, port: freePort(tb), conf: filepath.Join(dir, "mosquitto.conf")}
	conf := fmt.Sprintf(`per_listener_settings false
allow_anonymous false
persistence true
persistence_location %s/
autosave_interval 1
log_dest stderr
log_type error
log_type warning
max_queued_messages 100000
max_inflight_messages 0
set_tcp_nodelay true
listener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
use_identity_as_username true
`, dir, m.port, pki.CA, pki.ServerCert, pki.ServerKey)
	if os.Geteuid() == 0 {
		// Run as root, mosquitto drops to user mosquitto, which cannot read
		// the test's private key files.
		conf = "user root\n" + conf
	}
	if err := os.WriteFile(m.conf, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	m.tc = pki.ClientTLS(tb, "brokertest-probe")
	m.Start(tb)
	tb.Cleanup(func() { m.Stop(tb) })
	return m
}

func (m *mosquitto) Name() string { return string(KindMosquitto) }
func (m *mosquitto) URL() string  { return "mqtts://127.0.0.1:" + strconv.Itoa(m.port) }

func (m *mosquitto) Start(tb testing.TB) {
	tb.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return
	}
	m.out = new(bytes.Buffer)
	cmd := exec.Command(m.bin, "-c", m.conf)
	cmd.Stdout, cmd.Stderr = m.out, m.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	m.cmd = cmd
	out := m.out
	waitTLS(tb, "127.0.0.1:"+strconv.Itoa(m.port), m.tc, func() string { return out.String() })
}

// Stop ends mosquitto with SIGTERM, which saves its persistence file.
func (m *mosquitto) Stop(tb testing.TB) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { m.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		m.cmd.Process.Kill()
		<-done
	}
	m.cmd = nil
}

// ---- mochi

type mochi struct {
	srv   *mqtt.Server
	addr  string
	tls   *tls.Config
	tc    *tls.Config
	mu    sync.Mutex
	up    bool
	subID int
}

const mochiListener = "tls"

// Mochi starts an embedded mochi-mqtt broker with a TLS listener that
// requires client certificates signed by the PKI's CA.
func Mochi(tb testing.TB, pki *PKI) Broker {
	tb.Helper()
	cert, err := tls.LoadX509KeyPair(pki.ServerCert, pki.ServerKey)
	if err != nil {
		tb.Fatal(err)
	}
	srv := mqtt.New(&mqtt.Options{
		InlineClient: true,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		Capabilities: func() *mqtt.Capabilities {
			c := mqtt.NewDefaultServerCapabilities()
			c.MaximumMessageExpiryInterval = 0 // keep queued messages across the outage test
			c.MaximumClientWritesPending = 65536
			return c
		}(),
	})
	if err := srv.AddHook(new(allowCertified), nil); err != nil {
		tb.Fatal(err)
	}
	m := &mochi{
		srv:  srv,
		addr: "127.0.0.1:" + strconv.Itoa(freePort(tb)),
		tls: &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pki.Pool(),
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
		tc: pki.ClientTLS(tb, "brokertest-probe"),
	}
	if err := srv.Serve(); err != nil {
		tb.Fatal(err)
	}
	m.Start(tb)
	tb.Cleanup(func() {
		m.Stop(tb)
		// See testbench/broker: a connection accepted just before the
		// listener closed can race mochi's Close (v2.7.9) unless it has
		// registered first.
		time.Sleep(50 * time.Millisecond)
		srv.Close()
	})
	return m
}

// Server exposes the embedded broker (its inline client, hooks).
func (m *mochi) Server() *mqtt.Server { return m.srv }

func (m *mochi) Name() string { return string(KindMochi) }
func (m *mochi) URL() string  { return "mqtts://" + m.addr }

func (m *mochi) Start(tb testing.TB) {
	tb.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.up {
		return
	}
	l := listeners.NewTCP(listeners.Config{ID: mochiListener, Address: m.addr, TLSConfig: m.tls})
	var err error
	for range 100 { // the port may linger a moment after Stop
		if err = m.srv.AddListener(l); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		tb.Fatalf("brokertest: mochi listener: %v", err)
	}
	m.srv.Listeners.Serve(mochiListener, m.srv.EstablishConnection)
	m.up = true
	waitTLS(tb, m.addr, m.tc, func() string { return "" })
}

// Stop closes the listener and disconnects its clients; the server, its
// sessions and retained messages live on.
func (m *mochi) Stop(tb testing.TB) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.up {
		return
	}
	m.srv.Listeners.Close(mochiListener, func(id string) {
		for _, cl := range m.srv.Clients.GetByListener(id) {
			_ = m.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	})
	m.srv.Listeners.Delete(mochiListener)
	m.up = false
}

// allowCertified lets in every client that passed the TLS handshake: the
// listener already demands a certificate signed by the test CA. (mochi's
// own auth hooks would pull in another YAML module.)
type allowCertified struct{ mqtt.HookBase }

func (h *allowCertified) ID() string { return "allow-certified" }

func (h *allowCertified) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *allowCertified) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (h *allowCertified) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

// Inline is implemented by embedded brokers: an in-process subscriber that
// is never disconnected, even by Stop, and sees messages in the order the
// broker accepted them. (A remote subscriber's queued messages may be
// redelivered in another order by mochi after a reconnect.)
type Inline interface {
	Subscribe(filter string, fn func(topic string, payload []byte, retained bool)) (unsubscribe func(), err error)
	Publish(topic string, payload []byte, retained bool) error
}

var _ Inline = (*mochi)(nil)

func (m *mochi) Subscribe(filter string, fn func(string, []byte, bool)) (func(), error) {
	m.mu.Lock()
	m.subID++
	id := m.subID
	m.mu.Unlock()
	err := m.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		fn(pk.TopicName, pk.Payload, pk.FixedHeader.Retain)
	})
	if err != nil {
		return nil, err
	}
	return func() { m.srv.Unsubscribe(filter, id) }, nil
}

func (m *mochi) Publish(topic string, payload []byte, retained bool) error {
	return m.srv.Publish(topic, payload, retained, 1)
}
