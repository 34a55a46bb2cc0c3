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

	"linkguard.dev/linkguard/agent/mqttlink/brokertest/embedded"
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
	return MosquittoConf(tb, pki, func(port int, dir string) string {
		return fmt.Sprintf(`per_listener_settings false
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
`, dir, port, pki.CA, pki.ServerCert, pki.ServerKey)
	})
}

// MosquittoConf starts mosquitto with the configuration conf returns for a
// free loopback port and a directory of its own (for persistence): a
// production configuration under test, say. conf must put a TLS listener
// on 127.0.0.1:port with pki's server certificate that accepts pki's
// client certificates (the broker's URL, and how it is known to be up);
// it may add listeners of its own. Run as root, mosquitto is told to stay
// root (user mosquitto cannot read the test's key files). The broker also
// implements Reloader. Skips outside CI if mosquitto is missing.
func MosquittoConf(tb testing.TB, pki *PKI, conf func(port int, dir string) string) Broker {
	tb.Helper()
	bin := envtest.Command(tb, "mosquitto")
	dir := tb.TempDir()
	m := &mosquitto{bin: bin, pki: pki, port: freePort(tb), conf: filepath.Join(dir, "mosquitto.conf")}
	text := conf(m.port, dir)
	if os.Geteuid() == 0 {
		// Run as root, mosquitto drops to user mosquitto, which cannot read
		// the test's private key files.
		text = "user root\n" + text
	}
	if err := os.WriteFile(m.conf, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	m.tc = pki.ClientTLS(tb, "brokertest-probe")
	m.Start(tb)
	tb.Cleanup(func() { m.Stop(tb) })
	return m
}

// Reloader is implemented by brokers that reread their configuration
// files (ACLs, CRLs, certificates) without dropping clients: mosquitto on
// SIGHUP. Reload returns once the signal is sent; the broker applies it
// shortly after.
type Reloader interface {
	Reload(tb testing.TB)
}

var _ Reloader = (*mosquitto)(nil)

// Reload sends mosquitto SIGHUP.
func (m *mosquitto) Reload(tb testing.TB) {
	tb.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		tb.Fatal("brokertest: reload of a stopped mosquitto")
	}
	if err := m.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		tb.Fatalf("brokertest: reload: %v", err)
	}
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

// mochi is the embedded broker with a TLS listener that requires client
// certificates signed by the PKI's CA.
type mochi struct{ *embedded.Broker }

// Mochi starts an embedded mochi-mqtt broker (package embedded) with a TLS
// listener that requires client certificates signed by the PKI's CA.
func Mochi(tb testing.TB, pki *PKI) Broker { return MochiACL(tb, pki, nil) }

// MochiACL is Mochi with an access rule (embedded.Options.ACL).
func MochiACL(tb testing.TB, pki *PKI, acl func(client, topic string, write bool) bool) Broker {
	tb.Helper()
	cert, err := tls.LoadX509KeyPair(pki.ServerCert, pki.ServerKey)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := embedded.Start(embedded.Options{
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pki.Pool(),
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		ACL:    acl,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Close() })
	m := mochi{b}
	waitTLS(tb, b.Addr(), pki.ClientTLS(tb, "brokertest-probe"), func() string { return "" })
	return m
}

func (m mochi) Name() string { return string(KindMochi) }

// Start brings the listener back after Stop.
func (m mochi) Start(tb testing.TB) {
	tb.Helper()
	if err := m.Resume(); err != nil {
		tb.Fatalf("brokertest: %v", err)
	}
}

// Stop closes the listener and disconnects its clients; the server, its
// sessions and retained messages live on.
func (m mochi) Stop(testing.TB) { m.Pause() }

// Inline is implemented by embedded brokers: an in-process subscriber that
// is never disconnected, even by Stop, and sees messages in the order the
// broker accepted them. (A remote subscriber's queued messages may be
// redelivered in another order by mochi after a reconnect.)
type Inline interface {
	Subscribe(filter string, fn func(topic string, payload []byte, retained bool)) (unsubscribe func(), err error)
	Publish(topic string, payload []byte, retained bool) error
}

var _ Inline = mochi{}
