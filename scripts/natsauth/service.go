package natsauth

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// AuthSubject is where a server sends its callout requests.
const AuthSubject = "$SYS.REQ.USER.AUTH"

// queue lets one service run beside every node: a node sends its requests
// to a service connected to it first, so a node cut off from the others
// still admits clients.
const queue = "linkguard-auth"

// ServiceOptions connect a Service to the cluster as the callout's user.
type ServiceOptions struct {
	URLs               []string // nats://host:4222 of the node(s) to serve, local one first
	User, Password     string   // the auth_callout.auth_users user
	Logger             *slog.Logger
	Authorizer         *Authorizer
	ReconnectWait      time.Duration  // default 250 ms
	OnDecision         func(Decision) // called with each decision before it is answered (tests)
	DisconnectedNotify func(error)
}

// Start connects and answers callout requests until ctx ends,
// reconnecting for ever. It returns once subscribed (or, with no node up
// yet, at once: it subscribes when one is), or with the first error.
func Start(ctx context.Context, o ServiceOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	wait := o.ReconnectWait
	if wait <= 0 {
		wait = 250 * time.Millisecond
	}
	opts := []nats.Option{
		nats.Name("linkguard-auth"), nats.UserInfo(o.User, o.Password),
		nats.MaxReconnects(-1), nats.ReconnectWait(wait), nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("natsauth: disconnected", "err", err)
			if o.DisconnectedNotify != nil {
				o.DisconnectedNotify(err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("natsauth: reconnected", "url", c.ConnectedUrl()) }),
	}
	nc, err := nats.Connect(joinURLs(o.URLs), opts...)
	if err != nil {
		return fmt.Errorf("natsauth: connect: %w", err)
	}
	_, err = nc.QueueSubscribe(AuthSubject, queue, func(m *nats.Msg) {
		resp, d, err := o.Authorizer.Respond(m.Data, time.Now())
		if err != nil {
			log.Error("natsauth: request", "err", err)
			return
		}
		// Recorded before the answer goes out, so whoever watches decisions
		// has seen this one by the time the client learns its fate.
		if o.OnDecision != nil {
			o.OnDecision(d)
		}
		if err := m.Respond(resp); err != nil {
			log.Error("natsauth: respond", "err", err)
		}
		if d.Refused != "" {
			log.Warn("natsauth: refused", "name", d.Name, "client_id", d.ClientID, "reason", d.Refused)
		} else {
			log.Info("natsauth: admitted", "name", d.Name, "client_id", d.ClientID, "kind", d.Kind)
		}
	})
	if err != nil {
		nc.Close()
		return fmt.Errorf("natsauth: subscribe: %w", err)
	}
	if err := nc.Flush(); err != nil && nc.IsConnected() {
		nc.Close()
		return fmt.Errorf("natsauth: subscribe: %w", err)
	}
	context.AfterFunc(ctx, nc.Close)
	return nil
}

func joinURLs(urls []string) string {
	s := ""
	for i, u := range urls {
		if i > 0 {
			s += ","
		}
		s += u
	}
	return s
}
