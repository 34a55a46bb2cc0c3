package console

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
)

// Options configure a Console.
type Options struct {
	Broker string // tcp:// or mqtt:// URL (ssl:// with TLS below)
	// Brokers are further nodes of a clustered broker, tried in order
	// after Broker whenever the console (re)connects.
	Brokers  []string
	ClientID string // default "lgconsole-" + random
	// Persistent keeps the broker session (clean session false) so events,
	// results and telemetry published while the console was away are
	// delivered when it is back. Give a stable ClientID with it.
	Persistent bool
	// Share, when set, takes telemetry, events and results through the
	// shared subscription group $share/Share/..., so several console
	// instances split the fleet's stream between them on a clustered
	// broker. Retained state and the fleet policy are always subscribed
	// unshared: every instance needs all of it.
	Share string
	TLS   TLSFiles

	// Trust are the committee's public keys: the anchors the devices were
	// provisioned with. The fleet policy and the roster are verified
	// against them (and the roster's committee) before anything is shown
	// or built on them. The console holds no private key.
	Trust []ed25519.PublicKey
	// FleetCA, when set, are the CA certificates device certificates
	// chain to: every report must be sealed by the device its topic
	// names (contract.Seal), or it is listed as unverified and never
	// merged. Without it the console believes what arrives and says so.
	FleetCA *x509.CertPool
	// Revoked, with FleetCA, names revoked device certificates (a CRL).
	Revoked    func(serial *big.Int) bool
	Threshold  int    // committee signatures a policy or roster needs at the least
	RosterFile string // a signed roster to start from; later ones come retained
	// StateDir keeps the console's store (console.db: audit log, pending
	// actions, enrolments) and the last good roster. Empty: memory only.
	StateDir string
	// Store, when set, is the store's DSN instead of StateDir/console.db:
	// a postgres:// URL (several consoles sharing one history) or a
	// SQLite file path.
	Store string
	// Retention is how long the store keeps telemetry, rollups and events;
	// a zero field takes DefaultRetention's, a negative one keeps for ever.
	Retention Retention
	// Hosts are the names (host:port) the console answers to; every
	// other Host header is refused. Empty: DefaultHosts of the listener.
	Hosts  []string
	Secure bool // served over TLS: cookies are Secure, origins https
	// SessionTTL is how long a login lasts (default 30 minutes).
	SessionTTL time.Duration
	// PolicyValidity is how long a proposed policy is valid from its
	// issue (default 30 days).
	PolicyValidity time.Duration
	// ExpiryWarning is how long before the fleet policy or an approval
	// expires the console warns (default 14 days).
	ExpiryWarning time.Duration

	Logger *slog.Logger
	Now    func() time.Time
	// MaxEvents bounds the event history kept (default 2000).
	MaxEvents int
	// Silence marks a device offline when nothing came from it for this
	// long (default 45 s), whatever its last state said: on a clustered
	// broker the will of a client on a node that died is never sent.
	Silence time.Duration
}

// TLSFiles are PEM files for an mqtts:// broker.
type TLSFiles struct{ CA, Cert, Key string }

// Console follows the fleet and acts on it.
type Console struct {
	opt    Options
	log    *slog.Logger
	client paho.Client
	trust  *trust
	auth   auth
	store  *Audit
	hosts  []string

	pmu     sync.Mutex // pending; taken before mu
	pending map[string]*Pending
	// history feeds the store's event history (recordEvents). A full
	// queue blocks the MQTT handler, and so the broker's flow control:
	// nothing received is dropped.
	history chan contract.Event
	samples chan Sample         // telemetry for the store, the same way
	dirty   map[string]struct{} // devices whose stored copy is behind; under mu
	dirtyA  map[string]struct{} // actions whose stored copy is behind; under mu
	foreign atomic.Uint64       // events whose payload names another device than the topic
	gate    *gate               // which reports are believed

	mu      sync.RWMutex
	devices map[string]*Device
	events  []EventRecord
	evN     int64
	actions []*Action
	byCmd   map[string]*Action
	policy  *fleetPolicy // the retained fleet policy, when there is one
	revoked map[string]approvalNode
	changed chan struct{} // closed and replaced at every change
	connErr string
	connUp  bool

	rateCache rateCache // devices' traffic rates, from the store

	msgs   atomic.Uint64 // messages ingested
	rateMu sync.Mutex
	rateAt time.Time
	rateN  uint64
	rate   float64
}

// New makes a console; Run connects it.
func New(opt Options) (*Console, error) {
	if opt.Broker == "" {
		return nil, errors.New("console: broker url is required")
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.ClientID == "" {
		opt.ClientID = "lgconsole-" + newID()[:12]
	}
	if opt.MaxEvents <= 0 {
		opt.MaxEvents = 2000
	}
	if opt.Silence <= 0 {
		opt.Silence = 45 * time.Second
	}
	if opt.SessionTTL <= 0 {
		opt.SessionTTL = 30 * time.Minute
	}
	for _, r := range []struct {
		v *time.Duration
		d time.Duration
	}{{&opt.Retention.Raw, DefaultRetention.Raw},
		{&opt.Retention.Minute, DefaultRetention.Minute}, {&opt.Retention.Hour, DefaultRetention.Hour}, {&opt.Retention.Events, DefaultRetention.Events}} {
		if *r.v == 0 {
			*r.v = r.d
		}
	}
	if opt.ExpiryWarning <= 0 {
		opt.ExpiryWarning = DefaultExpiryWarning
	}
	if opt.PolicyValidity <= 0 {
		opt.PolicyValidity = 30 * 24 * time.Hour
	}
	t, err := newTrust(&opt)
	if err != nil {
		return nil, err
	}
	dbPath := opt.Store
	if dbPath == "" && opt.StateDir != "" {
		dbPath = filepath.Join(opt.StateDir, "console.db")
	}
	st, err := OpenAudit(dbPath)
	if err != nil {
		return nil, err
	}
	c := &Console{
		opt: opt, log: opt.Logger, trust: t, store: st, pending: map[string]*Pending{}, history: make(chan contract.Event, historyQueue),
		samples: make(chan Sample, telemetryQueue), dirty: map[string]struct{}{}, dirtyA: map[string]struct{}{},
		gate:    newGate(opt),
		auth:    auth{challenges: map[string]time.Time{}, sessions: map[string]*Session{}},
		devices: map[string]*Device{}, byCmd: map[string]*Action{},
		revoked: map[string]approvalNode{}, changed: make(chan struct{}),
	}
	for _, h := range opt.Hosts {
		c.hosts = append(c.hosts, strings.ToLower(h))
	}
	if err := c.loadPending(); err != nil {
		st.Close()
		return nil, err
	}
	if err := c.loadActions(); err != nil {
		st.Close()
		return nil, err
	}
	if err := c.loadDevices(); err != nil {
		st.Close()
		return nil, err
	}
	if err := c.loadRevoked(); err != nil {
		st.Close()
		return nil, err
	}
	return c, nil
}

// SetListener names the console after the address it serves on when no
// Hosts were configured.
func (c *Console) SetListener(addr string) {
	if len(c.hosts) == 0 {
		c.hosts = DefaultHosts(addr)
	}
}

// Close closes the console's store; call it once Run has returned (Run
// drains the events it received into the store as it stops).
func (c *Console) Close() error { return c.store.Close() }

// audit records r; a failure to write is logged, never silent.
func (c *Console) audit(r AuditRecord) {
	if r.At.IsZero() {
		r.At = c.opt.Now()
	}
	if _, err := c.store.Add(r); err != nil {
		c.log.Error("console: audit record lost", "kind", r.Kind, "err", err)
	}
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (c *Console) topic(t string) string {
	if c.opt.Share != "" {
		return "$share/" + c.opt.Share + "/" + t
	}
	return t
}

// Run connects to the broker and follows the fleet until ctx ends.
func (c *Console) Run(ctx context.Context) error {
	o, err := contract.BrokerListOptions(append([]string{c.opt.Broker}, c.opt.Brokers...), c.opt.TLS.CA, c.opt.TLS.Cert, c.opt.TLS.Key)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	// Handlers run in order, one at a time: a device's messages must reach
	// the model in the order the broker sent them.
	o.SetClientID(c.opt.ClientID).
		SetCleanSession(!c.opt.Persistent).SetResumeSubs(c.opt.Persistent).SetAutoReconnect(true).SetMaxReconnectInterval(5 * time.Second).
		SetConnectRetry(true).SetConnectRetryInterval(time.Second).SetKeepAlive(15 * time.Second).
		SetOrderMatters(true)
	// Telemetry is QoS 0 for a console without a session, which the broker
	// forgets when it goes anyway; a persistent console takes it at QoS 1
	// so that what the fleet sends while it is away (its node killed, a
	// restart) is delivered when it is back: the store's (device, boot,
	// seq) key drops the redeliveries.
	telQoS := byte(0)
	if c.opt.Persistent {
		telQoS = 1
	}
	o.SetOnConnectHandler(func(cl paho.Client) {
		subs := map[string]byte{
			contract.Prefix + "+/state":               1,
			contract.PolicyTopic:                      1,
			contract.RosterTopic:                      1,
			c.topic(contract.Prefix + "+/telemetry"):  telQoS,
			c.topic(contract.Prefix + "+/events"):     1,
			c.topic(contract.Prefix + "+/cmd/result"): 1,
		}
		// A refused subscription (SUBACK 0x80: NATS while it makes the
		// consumers of a fleet that connects at once, or an ACL) is asked
		// again until granted: paho reports it as done, and a console that
		// took it for granted ingested nothing on it.
		go func() {
			err := contract.Subscribe(ctx, cl, subs, c.onMessage, contract.SubscribeOptions{
				Refused: func(filters []string, attempt int, err error) {
					c.log.Error("console: subscription refused; asking again", "filters", filters, "attempt", attempt, "err", err)
				},
			})
			if err != nil && ctx.Err() == nil {
				c.log.Warn("console: subscribe", "err", err)
			}
		}()
		c.setConn(true, "")
		c.log.Info("console connected", "brokers", len(o.Servers))
	})
	o.SetConnectionLostHandler(func(_ paho.Client, err error) {
		c.setConn(false, err.Error())
		c.log.Warn("console lost the broker", "err", err)
	})
	rctx, stopRecording := context.WithCancel(context.Background())
	recorded := make(chan struct{})
	go func() { defer close(recorded); c.record(rctx) }()
	go c.keepRates(ctx)
	c.client = paho.NewClient(o)
	c.client.Connect() // retries on its own
	<-ctx.Done()
	c.client.Disconnect(250)
	stopRecording()
	<-recorded
	return nil
}

func (c *Console) setConn(up bool, e string) {
	c.mu.Lock()
	c.connUp, c.connErr = up, e
	c.mu.Unlock()
	c.notify()
}

// notify wakes Wait callers; call without c.mu held.
func (c *Console) notify() {
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// Changed returns a channel closed at the next change of the model.
func (c *Console) Changed() <-chan struct{} {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.changed
}

func (c *Console) onMessage(_ paho.Client, m paho.Message) {
	c.msgs.Add(1)
	c.ingest(m.Topic(), m.Payload())
}

// ingest takes one message of the contract; exported behaviour for tests
// lives in Ingest.
func (c *Console) ingest(topic string, payload []byte) {
	switch topic {
	case contract.PolicyTopic:
		c.setPolicy(payload)
		c.notify()
		return
	case contract.RosterTopic:
		c.setRoster(payload)
		c.notify()
		return
	}
	rest, ok := strings.CutPrefix(topic, contract.Prefix)
	if !ok {
		return
	}
	dev, kind, ok := strings.Cut(rest, "/")
	if !ok || dev == "" || dev == "site" || dev == "all" {
		return
	}
	now := c.opt.Now()
	var believed []contract.Event // events, decided before c.mu is taken
	verified := false
	switch kind {
	case "state", "telemetry", "cmd/result":
		if len(payload) == 0 && kind == "state" {
			break // a retained state cleared: only the broker's own rules let anyone do that
		}
		ok := false
		if ok, verified = c.gate.admit(now, topic, dev, contract.KindOf(kind), payload); !ok {
			c.notify()
			return
		}
	case "events":
		var e contract.Event
		if json.Unmarshal(payload, &e) != nil || e.ID == "" {
			return
		}
		if e.Device != dev {
			// A device publishing as another (on its own topic or any):
			// never merged into that device's history.
			c.gate.refuse(Unverified{At: now, Topic: topic, Device: dev, Claimed: e.Device, Kind: contract.KindEvents,
				Reason: contract.ErrWrongDevice.Error()})
			if c.foreign.Add(1)%1000 == 1 {
				c.log.Warn("console: event names another device than its topic; not kept", "topic_device", dev, "payload_device", e.Device)
			}
			c.notify()
			return
		}
		if believed = c.gate.admitEvent(now, topic, dev, payload, e); len(believed) == 0 {
			return // waits for its device's signed checkpoint, or refused
		}
	default:
		return
	}
	c.mu.Lock()
	if d := c.devices[dev]; d != nil {
		d.heard = now
	}
	switch kind {
	case "state":
		var s contract.State
		if len(payload) == 0 { // retained state cleared
			delete(c.devices, dev)
			c.dirty[dev] = struct{}{}
			break
		}
		if json.Unmarshal(payload, &s) == nil && s.Device == dev {
			d := c.device(dev)
			d.applyState(&s)
			d.Verified = verified
			d.heard = now
			c.markApplied(dev)
			c.dirty[dev] = struct{}{}
		}
	case "telemetry":
		var t contract.Telemetry
		if json.Unmarshal(payload, &t) == nil && t.Device == dev {
			d := c.device(dev)
			l, _ := t.Links() // nil when malformed: shown and stored as absent
			fs, _ := t.Feeds()
			d.applyTelemetry(&t, l, fs)
			d.heard = now
			if !d.Online && !d.StateAt.IsZero() && t.BootID == d.BootID && t.TS.After(d.StateAt) {
				// A will can come after the device is back: on a cluster the
				// node that held its old connection sends it late, after the
				// new connection's online state, and the retained state stays
				// "offline" (a will is stamped when set, at connect). Signed
				// telemetry of the same boot stamped after it says the device
				// is connected; if it is not, --silence says so again.
				d.Online = true
				c.dirty[dev] = struct{}{}
			}
			if d.StateAt.IsZero() && d.stateAsked.IsZero() {
				// First heard: its state may simply still be on its way.
				d.stateAsked = now.Add(stateAskGrace - stateAskEvery)
			}
			if d.StateAt.IsZero() && now.Sub(d.stateAsked) > stateAskEvery {
				d.stateAsked = now
				c.askState(dev)
			}
			sample := sampleOf(&t, l, fs)
			defer func() { c.samples <- sample }() // after c.mu is released
		}
	case "events":
		for _, e := range believed {
			c.evN++
			c.events = append(c.events, EventRecord{N: c.evN, Event: e})
		}
		if n := len(c.events); n > c.opt.MaxEvents {
			c.events = append(c.events[:0:0], c.events[n-c.opt.MaxEvents:]...)
		}
		defer func() { // after c.mu is released
			for _, e := range believed {
				c.history <- e
			}
		}()
	case "cmd/result":
		var r contract.Result
		if json.Unmarshal(payload, &r) == nil && r.Device == dev {
			if a := c.byCmd[r.CmdID]; a != nil {
				a.Results = append(a.Results, r)
				c.dirtyA[a.ID] = struct{}{}
				defer c.audit(AuditRecord{Kind: "result", Subject: r.CmdID, Detail: payload})
			}
		}
	}
	c.mu.Unlock()
	c.notify()
}

// stateAskEvery spaces the console's requests for a device's retained
// state.
const stateAskEvery = 30 * time.Second

// stateAskGrace is how long a device is heard without its state before it
// is first asked for: a fleet coming up sends telemetry (QoS 0) that can
// overtake states (QoS 1, a window at a time).
const stateAskGrace = 5 * time.Second

// askState subscribes once more to dev's state topic, so the broker sends
// its retained state again: a device is heard (its telemetry) but its
// state never came. A clustered broker can miss a QoS 1 message to a
// wildcard subscription (NATS while it sets up the subscription's
// consumer); a retained message is always sent on subscribe. dev is one
// level of a topic a client published to, so it holds no wildcard.
func (c *Console) askState(dev string) {
	cl := c.client
	if cl == nil || !cl.IsConnectionOpen() {
		return
	}
	topic := contract.Prefix + dev + "/state"
	go func() {
		// No handler of its own: paho matches every message against each
		// handler's filter, one by one, and runs every handler that
		// matches, so a handler per asked device made each message cost
		// O(devices asked) and reach the model twice. The retained copy
		// matches the +/state subscription's handler like any state.
		tok := cl.Subscribe(topic, 0, nil)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			c.log.Warn("console: asking for a device's state failed", "device", dev, "err", tok.Error())
			return
		}
		// The retained copy comes with the subscription; the wildcard
		// subscription carries the rest.
		time.Sleep(5 * time.Second)
		cl.Unsubscribe(topic)
	}()
}

// Ingest feeds one message to the model as if it came from the broker
// (tests and benchmarks).
func (c *Console) Ingest(topic string, payload []byte) {
	c.msgs.Add(1)
	c.ingest(topic, payload)
}

func (c *Console) device(id string) *Device {
	d := c.devices[id]
	if d == nil {
		d = &Device{ID: id}
		c.devices[id] = d
	}
	return d
}

// markApplied records dev under every policy action whose serial it now
// enforces. c.mu must be held.
func (c *Console) markApplied(dev string) {
	d := c.devices[dev]
	for _, a := range c.actions {
		if a.Serial != 0 && d.Online && d.PolicySerial >= a.Serial && !contains(a.Applied, dev) {
			a.Applied = append(a.Applied, dev)
			c.dirtyA[a.ID] = struct{}{}
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Devices returns the fleet, sorted by site then id.
func (c *Console) Devices() []Device {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]Device, 0, len(c.devices))
	now := c.opt.Now()
	for _, d := range c.devices {
		out = append(out, c.view(d, now))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Site != out[j].Site {
			return out[i].Site < out[j].Site
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// view is a copy of d as shown now: a device silent for longer than
// Options.Silence is offline, even if no will said so.
func (c *Console) view(d *Device, now time.Time) Device {
	v := d.clone()
	if v.Online && !d.heard.IsZero() && now.Sub(d.heard) > c.opt.Silence {
		v.Online, v.Silent = false, true
	}
	return v
}

// Device returns one device.
func (c *Console) Device(id string) (Device, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	d, ok := c.devices[id]
	if !ok {
		return Device{}, false
	}
	return c.view(d, c.opt.Now()), true
}

// Events returns the events f selects, oldest first, at most f.Limit (the
// newest ones).
func (c *Console) Events(f EventFilter) []EventRecord {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []EventRecord
	for i := range c.events {
		if f.match(&c.events[i]) {
			out = append(out, c.events[i])
		}
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out
}

// Actions returns the operator's actions, newest first.
func (c *Console) Actions() []Action {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]Action, 0, len(c.actions))
	for i := len(c.actions) - 1; i >= 0; i-- {
		out = append(out, c.actions[i].copy())
	}
	return out
}

// Ingested counts the messages taken in.
func (c *Console) Ingested() uint64 { return c.msgs.Load() }

// IngestRate is messages per second over the last few seconds.
func (c *Console) IngestRate() float64 {
	c.rateMu.Lock()
	defer c.rateMu.Unlock()
	now, n := c.opt.Now(), c.msgs.Load()
	if c.rateAt.IsZero() {
		c.rateAt, c.rateN = now, n
		return 0
	}
	if dt := now.Sub(c.rateAt); dt >= 2*time.Second {
		c.rate = float64(n-c.rateN) / dt.Seconds()
		c.rateAt, c.rateN = now, n
	}
	return c.rate
}

// Connected reports the broker connection and the last error.
func (c *Console) Connected() (bool, string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.connUp, c.connErr
}
