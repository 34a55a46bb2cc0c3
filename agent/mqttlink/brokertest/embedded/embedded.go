// Package embedded runs an MQTT broker inside the process: mochi-mqtt on a
// loopback port, over TCP or TLS, stoppable and restartable on the same
// address so a test or a scenario can take the broker away and bring it
// back (sessions and retained messages survive a Pause, as they would on a
// broker that restarts with persistence), with an inline client that
// publishes and subscribes without a connection. It is the one embedded
// broker of the module: brokertest's mochi and the testbench's demo and
// scenarios both run it.
//
// It lets every client in (loopback only): it is for tests and desktop
// demos, never a device or a deployment. It imports mochi-mqtt only.
package embedded

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

const listenerID = "embedded"

// Options configure a broker.
type Options struct {
	// Addr is where it listens ("127.0.0.1:0" picks a free port, kept
	// across Pause and Resume); only loopback addresses are accepted.
	Addr string
	// TLS, when set, serves MQTT over TLS; with ClientAuth it demands the
	// clients' certificates.
	TLS    *tls.Config
	Logger *slog.Logger
	// ACL, when set, decides each subscription (write false) and publish
	// (write true) of a client, by its client id; nil allows everything.
	// A refused subscription gets a failure SUBACK, as a clustered
	// broker's does.
	ACL func(client, topic string, write bool) bool
}

// Broker is a running embedded broker.
type Broker struct {
	srv   *mqtt.Server
	addr  string
	tls   *tls.Config
	mu    sync.Mutex
	up    bool
	subID int
}

var _ io.Closer = (*Broker)(nil)

// Start serves MQTT on o.Addr until Close.
func Start(o Options) (*Broker, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("embedded: %s is not a loopback address: the embedded broker lets every client in", o.Addr)
	}
	// Pick the port now so a restart reuses it.
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumMessageExpiryInterval = 0 // keep queued messages across an outage
	caps.MaximumClientWritesPending = 65536
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(quietDisconnects{log.Handler()}), Capabilities: caps})
	if err := srv.AddHook(&allowAll{acl: o.ACL}, nil); err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	if err := srv.Serve(); err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	b := &Broker{srv: srv, addr: addr, tls: o.TLS}
	if err := b.Resume(); err != nil {
		srv.Close()
		return nil, err
	}
	return b, nil
}

// URL is the broker's address for clients: tcp://, or mqtts:// with TLS.
func (b *Broker) URL() string {
	if b.tls != nil {
		return "mqtts://" + b.addr
	}
	return "tcp://" + b.addr
}

// Addr is host:port.
func (b *Broker) Addr() string { return b.addr }

// Server exposes the embedded broker (its inline client, hooks).
func (b *Broker) Server() *mqtt.Server { return b.srv }

// Resume opens the listener again after Pause.
func (b *Broker) Resume() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.up {
		return nil
	}
	var err error
	for range 100 { // the port may linger a moment after Pause
		l := listeners.NewTCP(listeners.Config{ID: listenerID, Address: b.addr, TLSConfig: b.tls})
		if err = b.srv.AddListener(l); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("embedded: listener: %w", err)
	}
	b.srv.Listeners.Serve(listenerID, b.srv.EstablishConnection)
	b.up = true
	// Wait until it accepts.
	for range 100 {
		c, err := net.DialTimeout("tcp", b.addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("embedded: listener does not accept connections")
}

// Pause closes the listener and drops every client abruptly (no will is
// suppressed: the broker publishes the wills of the dropped clients).
// Sessions, retained messages and inline subscriptions live on.
func (b *Broker) Pause() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.up {
		return
	}
	b.srv.Listeners.Close(listenerID, func(id string) {
		// Not Clients.GetByListener: in mochi v2.7.9 it read-locks the
		// clients twice (through Len), and a client attaching meanwhile
		// (its Delete waiting for the write lock) deadlocks the broker.
		for _, cl := range b.srv.Clients.GetAll() {
			if cl.Net.Listener == id && !cl.Closed() {
				_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
	})
	b.srv.Listeners.Delete(listenerID)
	b.up = false
}

// Close stops the broker.
func (b *Broker) Close() error {
	b.Pause()
	// mochi adds a connection to the WaitGroup that Close waits on only once
	// the connection's goroutine runs; one accepted just before the listener
	// closed can race that Wait (a data race in mochi v2.7.9, seen under
	// -race). Let such stragglers register first.
	time.Sleep(closeGrace)
	return b.srv.Close()
}

// closeGrace is how long Close lets connections accepted before the
// listener closed reach mochi's bookkeeping.
const closeGrace = 50 * time.Millisecond

// Subscribe calls fn for every message on filter, in the order the broker
// accepted them, from an in-process subscriber that no Pause disconnects.
// (A remote subscriber's queued messages may be redelivered in another
// order by mochi after a reconnect.)
func (b *Broker) Subscribe(filter string, fn func(topic string, payload []byte, retained bool)) (unsubscribe func(), err error) {
	b.mu.Lock()
	b.subID++
	id := b.subID
	b.mu.Unlock()
	err = b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		fn(pk.TopicName, pk.Payload, pk.FixedHeader.Retain)
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: subscribe %s: %w", filter, err)
	}
	return func() { b.srv.Unsubscribe(filter, id) }, nil
}

// Publish publishes at QoS 1 from the inline client.
func (b *Broker) Publish(topic string, payload []byte, retained bool) error {
	if err := b.srv.Publish(topic, payload, retained, 1); err != nil {
		return fmt.Errorf("embedded: publish %s: %w", topic, err)
	}
	return nil
}

// allowAll lets every client in: the listener is loopback only, and with
// TLS the handshake already demanded what the TLS config asks.
type allowAll struct {
	mqtt.HookBase
	acl func(client, topic string, write bool) bool
}

func (h *allowAll) ID() string { return "allow-loopback" }

func (h *allowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *allowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (h *allowAll) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	return h.acl == nil || cl.Net.Inline || h.acl(cl.ID, topic, write)
}

// quietDisconnects demotes mochi's message-less warning about a client's
// connection ending (EOF, reset: every agent stop or kill in a demo) to
// debug; everything else passes unchanged.
type quietDisconnects struct{ slog.Handler }

func (q quietDisconnects) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn && r.Message == "" {
		r.Level = slog.LevelDebug
		if !q.Handler.Enabled(ctx, r.Level) {
			return nil
		}
	}
	return q.Handler.Handle(ctx, r)
}

func (q quietDisconnects) WithAttrs(as []slog.Attr) slog.Handler {
	return quietDisconnects{q.Handler.WithAttrs(as)}
}

func (q quietDisconnects) WithGroup(name string) slog.Handler {
	return quietDisconnects{q.Handler.WithGroup(name)}
}
