// Package broker runs the testbench's embedded MQTT broker: mochi-mqtt on a
// loopback TCP port, stoppable and restartable on the same address so a
// scenario can take the broker away and bring it back (sessions and retained
// messages survive a Stop, as they would on a broker that restarts with
// persistence).
//
// It imports mochi-mqtt only: never agent or hal.
package broker

import (
	"context"
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

const listenerID = "tcp"

// Broker is an embedded MQTT broker on loopback.
type Broker struct {
	srv  *mqtt.Server
	addr string
	mu   sync.Mutex
	up   bool
}

// Start serves MQTT on addr ("127.0.0.1:0" picks a free port). Only loopback
// addresses are accepted: the embedded broker lets every client in.
func Start(addr string, log *slog.Logger) (*Broker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("broker: %s is not a loopback address: the testbench broker has no authentication", addr)
	}
	// Pick the port now so a restart reuses it.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	addr = ln.Addr().String()
	ln.Close()
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumMessageExpiryInterval = 0
	caps.MaximumClientWritesPending = 65536
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(quietDisconnects{log.Handler()}), Capabilities: caps})
	if err := srv.AddHook(new(allowAll), nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if err := srv.Serve(); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	b := &Broker{srv: srv, addr: addr}
	if err := b.Resume(); err != nil {
		srv.Close()
		return nil, err
	}
	return b, nil
}

// URL is the broker's address for clients.
func (b *Broker) URL() string { return "tcp://" + b.addr }

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
		l := listeners.NewTCP(listeners.Config{ID: listenerID, Address: b.addr})
		if err = b.srv.AddListener(l); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("broker: listener: %w", err)
	}
	go b.srv.Listeners.Serve(listenerID, b.srv.EstablishConnection)
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
	return errors.New("broker: listener does not accept connections")
}

// Pause closes the listener and drops every client abruptly (no will is
// suppressed: the broker publishes the wills of the dropped clients).
func (b *Broker) Pause() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.up {
		return
	}
	b.srv.Listeners.Close(listenerID, func(id string) {
		for _, cl := range b.srv.Clients.GetByListener(id) {
			_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
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

var _ io.Closer = (*Broker)(nil)

// allowAll lets every client in: the listener is loopback only.
type allowAll struct{ mqtt.HookBase }

func (h *allowAll) ID() string { return "allow-loopback" }

func (h *allowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *allowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (h *allowAll) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

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
