package mqttlink

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sync/errgroup"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/agent/queue"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/hal/atomicfile"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/roster"
	"linkguard.dev/linkguard/policy/store"
)

// Options configure a Link.
type Options struct {
	Device, Site, Kind, Version string

	URL           string   // tcp:// mqtt:// ssl:// mqtts:// ws:// wss://
	URLs          []string // more brokers (a cluster's nodes): with URL, tried in turn from the place BrokerOrder gives the device
	CA, Cert, Key string   // PEM files; Cert+Key = the device's identity
	// Signer seals state, telemetry, events and results with the
	// device's key (contract.Seal); nil sends them unsigned.
	Signer         *contract.Signer
	Keepalive      time.Duration
	TelemetryEvery time.Duration
	MinBackoff     time.Duration // first reconnect delay (default 500ms)
	MaxBackoff     time.Duration // reconnect delay cap (default 60s)
	// StepTimeout bounds each step of a connection: connect, subscribe,
	// the retained state (default DefaultStepTimeout).
	StepTimeout time.Duration

	StateDir      string // queue, event chain and replay memory live in StateDir/mqtt
	QueueMaxBytes int64

	Operators  *dsse.Keyring // who may sign commands
	Policy     *store.Store  // the fleet policy is applied here; may be nil
	PolicyFile string        // and written here once applied; may be empty
	// Roster, when set, says who may sign which commands; the fleet roster
	// is applied to it and written to RosterFile once applied.
	Roster       *roster.Store
	RosterFile   string
	CommandFloor roster.Thresholds // the device's lower bounds on command thresholds

	Logger   *slog.Logger
	LevelVar *slog.LevelVar // for log.level; may be nil
	Now      func() time.Time
	// InFlight bounds the QoS 1 messages awaiting PUBACK (default 64).
	InFlight int
	// FanoutQoS0 subscribes the site's and the fleet's command topics at
	// QoS 0: on NATS Server every QoS 1 subscription is a replicated
	// JetStream consumer, so this leaves one per device instead of three.
	// The price: a command to a site or to all that is sent while the
	// device is offline never reaches it (its own command topic stays
	// QoS 1, and the retained policy and roster come at every connect).
	FanoutQoS0 bool
}

// Defaults of Options.
const (
	DefaultTelemetryEvery = 10 * time.Second
	DefaultKeepalive      = 30 * time.Second
)

// Link is a device's connection to the broker.
type Link struct {
	opt    Options
	log    *slog.Logger
	topics contract.Topics
	bootID string
	start  time.Time
	q      *queue.Queue
	cmds   command.Dispatcher
	verify *command.Verifier
	client paho.Client
	broker atomic.Value // string: the broker last tried, for logs

	upMu sync.Mutex
	up   chan struct{} // closed while connected
	lost chan error

	chainMu    sync.Mutex
	chainSeq   uint64
	chainHash  string
	lastSigned time.Time // the newest event signed
	unsigned   int       // events since, waiting for a checkpoint
	chainPath  string
	chainSaved chainHead // what the file holds; touched by Run's goroutines only

	secMu    sync.Mutex
	sections map[string]func() any
	telSeq   uint64

	intake   intake // commands waiting for verification, refusals for their answer
	policyIn chan []byte
	rosterIn chan []byte
	// lastRosterRefused is the hash of the last fleet roster refused, so a
	// redelivery is not refused (and reported) again.
	lastRosterRefused [32]byte
	// lastRefused is the digest of the last fleet policy the store refused:
	// the broker hands the same retained message back on every reconnect,
	// and one refusal event for it is enough. Owned by policyLoop.
	lastRefused [32]byte
	// policySwap is signalled whenever the policy or the roster in force
	// swaps, from MQTT or a file alike: the retained state carries both
	// serials.
	policySwap chan struct{}
	stateMu    sync.Mutex // orders state snapshots with their publication
	dropsShown [2]uint64
}

var (
	_ report.Events     = (*Link)(nil)
	_ report.Telemetry  = (*Link)(nil)
	_ command.Registrar = (*Link)(nil)
)

// New opens the link's durable state (queue, event chain, replay memory);
// Run connects.
func New(opt Options) (*Link, error) {
	if opt.Device == "" || len(opt.brokers()) == 0 {
		return nil, errors.New("mqttlink: device and url are required")
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.TelemetryEvery <= 0 {
		opt.TelemetryEvery = DefaultTelemetryEvery
	}
	if opt.Keepalive <= 0 {
		opt.Keepalive = DefaultKeepalive
	}
	if opt.MinBackoff <= 0 {
		opt.MinBackoff = 500 * time.Millisecond
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = time.Minute
	}
	if opt.StepTimeout <= 0 {
		opt.StepTimeout = DefaultStepTimeout
	}
	if opt.InFlight <= 0 {
		opt.InFlight = 64
	}
	if opt.Operators == nil {
		opt.Operators = dsse.NewKeyring()
	}
	dir := filepath.Join(opt.StateDir, "mqtt")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mqttlink: %w", err)
	}
	q, err := queue.Open(filepath.Join(dir, "queue"), queue.Options{MaxBytes: opt.QueueMaxBytes})
	if err != nil {
		return nil, fmt.Errorf("mqttlink: %w", err)
	}
	seen, err := command.OpenSeen(filepath.Join(dir, "commands-seen.json"), opt.Now())
	if err != nil {
		q.Close()
		return nil, fmt.Errorf("mqttlink: %w", err)
	}
	l := &Link{
		opt:       opt,
		log:       opt.Logger,
		topics:    contract.TopicsFor(opt.Device, opt.Site),
		bootID:    newID(),
		start:     opt.Now(),
		q:         q,
		up:        make(chan struct{}),
		lost:      make(chan error, 1),
		chainPath: filepath.Join(dir, "events-chain.json"),
		sections:  map[string]func() any{},
		policyIn:  make(chan []byte, 1),
		rosterIn:  make(chan []byte, 1),

		policySwap: make(chan struct{}, 1),
	}
	l.verify = &command.Verifier{Keys: opt.Operators, Device: opt.Device, Site: opt.Site, Seen: seen, Now: opt.Now,
		Floor: opt.CommandFloor, Authorizer: &l.cmds}
	if opt.Roster != nil {
		l.verify.Roster = opt.Roster
	}
	if err := l.loadChain(); err != nil {
		q.Close()
		return nil, err
	}
	l.registerBuiltins()
	// The state names the policy and the roster in force: republish it
	// when either swaps.
	republish := func() {
		select {
		case l.policySwap <- struct{}{}:
		default: // a republish is already due
		}
	}
	if opt.Policy != nil {
		opt.Policy.Subscribe(func(*store.Current) { republish() })
	}
	if opt.Roster != nil {
		opt.Roster.Subscribe(func(*roster.Current) { republish() })
	}
	return l, nil
}

// BootID identifies this run of the agent in state, will, telemetry and events.
func (l *Link) BootID() string { return l.bootID }

// Topics returns the device's topics.
func (l *Link) Topics() contract.Topics { return l.topics }

// Register adds a command handler (command.Registrar).
func (l *Link) Register(typ string, h command.Handler) error { return l.cmds.Register(typ, h) }

// AddSection adds a telemetry section (report.Telemetry).
func (l *Link) AddSection(name string, collect func() any) {
	l.secMu.Lock()
	defer l.secMu.Unlock()
	l.sections[name] = collect
}

// QueueStats exposes the queue's figures (for tests and benchmarks).
func (l *Link) QueueStats() queue.Stats { return l.q.Stats() }

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Run connects, keeps the connection, publishes and takes commands until
// ctx ends or one of its loops fails. It closes the queue when it returns.
func (l *Link) Run(ctx context.Context) error {
	defer l.q.Close()
	client, err := l.newClient()
	if err != nil {
		return err
	}
	l.client = client
	l.Emit(report.AgentStarted, report.Info, report.Fields{"version": l.opt.Version})
	g, gctx := errgroup.WithContext(ctx)
	for _, loop := range []func(context.Context) error{l.deliver, l.telemetryLoop, l.commandLoop, l.policyLoop} {
		g.Go(func() error { return loop(gctx) })
	}
	g.Go(func() error { l.connectLoop(gctx); return nil })
	err = g.Wait()
	l.checkpoint(true) // delivered at the next start if not now
	l.saveChain()
	if l.client.IsConnectionOpen() {
		// A clean shutdown says so itself rather than leaving it to the will.
		if b, err := json.Marshal(l.state(false)); err == nil {
			l.client.Publish(l.topics.State, 1, true, l.seal(contract.KindState, b)).WaitTimeout(2 * time.Second)
		}
		l.client.Disconnect(250)
	}
	return err
}

func (l *Link) newClient() (paho.Client, error) {
	o, err := contract.BrokerListOptions(l.opt.brokers(), l.opt.CA, l.opt.Cert, l.opt.Key)
	if err != nil {
		return nil, err
	}
	o.SetConnectionNotificationHandler(func(_ paho.Client, n paho.ConnectionNotification) {
		if b, ok := n.(paho.ConnectionNotificationBroker); ok {
			l.broker.Store(b.Broker.Scheme + "://" + b.Broker.Host)
		}
	})
	o.SetClientID(l.opt.Device).
		SetCleanSession(false).
		SetResumeSubs(false).
		SetOrderMatters(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(l.opt.Keepalive).
		SetPingTimeout(10 * time.Second).
		SetConnectTimeout(l.opt.StepTimeout).
		SetWriteTimeout(15 * time.Second).
		SetStore(paho.NewOrderedMemoryStore()).
		SetMaxResumePubInFlight(l.opt.InFlight).
		SetConnectionLostHandler(func(_ paho.Client, err error) { l.setDown(err) })
	will, err := json.Marshal(l.state(false))
	if err != nil {
		return nil, fmt.Errorf("mqttlink: will: %w", err)
	}
	o.SetBinaryWill(l.topics.State, l.seal(contract.KindState, will), 1, true)
	return paho.NewClient(o), nil
}

// brokers are URL and URLs, in the order this device tries them.
func (o *Options) brokers() []string {
	var b []string
	if o.URL != "" {
		b = append(b, o.URL)
	}
	return BrokerOrder(o.Device, append(b, o.URLs...))
}

// BrokerOrder is the order a device tries the brokers of a list in: from
// the place its id picks (FNV-1a, modulo the list's length), round to the
// start. A fleet configured with one list spreads over a cluster's nodes
// instead of every device landing on the first (whose loss then moved the
// whole fleet at once, and which carried every session).
func BrokerOrder(device string, urls []string) []string {
	if len(urls) < 2 {
		return urls
	}
	h := fnv.New32a()
	h.Write([]byte(device))
	i := int(h.Sum32() % uint32(len(urls)))
	return append(slices.Clone(urls[i:]), urls[:i]...)
}

// brokerName is the broker address for logs, the one last tried: never
// credentials or a query.
func (l *Link) brokerName() string {
	if b, ok := l.broker.Load().(string); ok {
		return b
	}
	u, err := url.Parse(l.opt.URL)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Scheme + "://" + u.Host
}

// connectLoop connects and reconnects with exponential backoff and full
// jitter until ctx ends.
func (l *Link) connectLoop(ctx context.Context) {
	backoff := l.opt.MinBackoff
	for ctx.Err() == nil {
		refused, pending, err := l.connect(ctx)
		if err == nil {
			backoff = l.opt.MinBackoff
			sctx, stop := context.WithCancel(ctx)
			if len(refused) > 0 {
				go l.resubscribe(sctx, refused)
			}
			if pending != nil {
				go l.awaitState(sctx, pending)
			}
			select {
			case <-ctx.Done():
				stop()
				return
			case err = <-l.lost:
			}
			stop()
			l.log.Warn("mqtt connection lost", "broker", l.brokerName(), "err", err)
		} else {
			l.log.Warn("mqtt connect failed", "broker", l.brokerName(), "err", err, "retry_max", backoff)
		}
		delay := jitter(backoff)
		backoff = min(backoff*2, l.opt.MaxBackoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// jitter picks a delay in [d/2, d) so a fleet does not reconnect in step.
func jitter(d time.Duration) time.Duration {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(d/2)+1))
	if err != nil {
		return d
	}
	return d/2 + time.Duration(n.Int64())
}

// DefaultStepTimeout bounds each step of a connection (connect,
// subscribe, the retained state): a broker node that does not answer in
// time is left for the next URL. A clustered broker can accept a
// connection and never acknowledge a publish while its stream leaders are
// re-elected; 30 s of waiting kept a device off the fleet that long.
const DefaultStepTimeout = 10 * time.Second

// connect connects, subscribes and publishes the state. The filters the
// broker refused (SUBACK 0x80) come back for connectLoop to ask again:
// NATS refuses a QoS 1 subscription whose JetStream consumer it could not
// make (its API queue overflows while a fleet ramps), and an agent that
// took the SUBACK for granted was deaf to every command on it.
func (l *Link) connect(ctx context.Context) (refused map[string]byte, pending paho.Token, err error) {
	select {
	case <-l.lost: // a stale loss from the previous session
	default:
	}
	// paho tries the brokers in turn, each for its whole connect timeout
	// (StepTimeout): a hung node first in the list must not use up the
	// wait for the healthy ones after it.
	ctok := l.client.Connect()
	if err := waitToken(ctx, ctok, l.opt.StepTimeout*time.Duration(len(l.opt.brokers()))); err != nil {
		// An attempt we stopped waiting for goes on, and paho refuses every
		// Connect until it ends; one that then succeeds is a session nobody
		// subscribes or publishes on, and the device stays "already
		// connected" but silent (with a 15 s connect timeout against a 10 s
		// wait, a tenth of a 10,000-agent fleet ramping on two cores).
		// Disconnect ends the attempt either way.
		l.client.Disconnect(0)
		return nil, nil, err
	}
	// The policy and the roster are retained, sent again at every
	// subscribe, so QoS 0 loses nothing that the next connection would not
	// bring; on NATS it spares two JetStream consumers per device.
	fanout := byte(1)
	if l.opt.FanoutQoS0 {
		fanout = 0
	}
	subs := map[string]byte{l.topics.Cmd: 1, contract.AllCmdTopic: fanout, contract.PolicyTopic: 0}
	if l.opt.Roster != nil {
		subs[contract.RosterTopic] = 0
	}
	if l.opt.Site != "" {
		subs[l.topics.SiteCmd] = fanout
	}
	tok := l.client.SubscribeMultiple(subs, l.onMessage)
	switch err := waitToken(ctx, tok, l.opt.StepTimeout); {
	case errors.Is(err, errStepTimeout) && l.client.IsConnectionOpen():
		// A broker slow to answer (NATS making JetStream consumers for a
		// fleet that connects at once): dropping the connection to start
		// again only asked it for every consumer again, and at 1,000
		// devices kept most of them reconnecting. The connection stays and
		// the subscriptions are asked again, as refused ones are.
		refused = subs
	case err != nil:
		l.client.Disconnect(0)
		return nil, nil, fmt.Errorf("subscribe: %w", err)
	default:
		refused = contract.Refused(tok, subs)
	}
	if tok, err := l.publishState(ctx); err != nil {
		if !errors.Is(err, errStepTimeout) || !l.client.IsConnectionOpen() {
			l.client.Disconnect(0)
			return nil, nil, err
		}
		// Connected and subscribed, the state not yet acknowledged: a
		// cluster busy with a fleet that connects at once (NATS writing
		// every retained state through its stream). Dropping the
		// connection here asked the busy broker for the whole session
		// again: at 1,000 devices on NATS most of the fleet went round
		// that loop for minutes. The connection stays; awaitState waits
		// longer and leaves the node only if it still does not answer
		// (a hung node, whose connection paho cannot tell from a slow one).
		pending = tok
	}
	l.upMu.Lock()
	select {
	case <-l.up:
	default:
		close(l.up)
	}
	l.upMu.Unlock()
	l.log.Info("mqtt connected", "broker", l.brokerName(), "client_id", l.opt.Device, "boot_id", l.bootID)
	return refused, pending, nil
}

// SubscriptionRefused is the event an agent emits when the broker refused
// a subscription it needs (a command topic, the policy, the roster), or did
// not answer it within the step timeout: until it is granted, nothing on
// that topic reaches the device. The agent keeps asking, with backoff, for
// as long as the connection lasts.
const SubscriptionRefused = "mqtt.subscription_refused"

// resubscribe asks again for the refused filters, with the connection's
// backoff, until the broker grants them all or ctx (the connection) ends.
func (l *Link) resubscribe(ctx context.Context, refused map[string]byte) {
	filters := slices.Sorted(maps.Keys(refused))
	l.log.Warn("mqtt subscription refused", "broker", l.brokerName(), "filters", filters)
	l.Emit(SubscriptionRefused, report.Warning, report.Fields{"broker": l.brokerName(), "filters": filters})
	// The refusal was an attempt: the next waits its backoff.
	select {
	case <-ctx.Done():
		return
	case <-time.After(jitter(l.opt.MinBackoff)):
	}
	err := contract.Subscribe(ctx, l.client, refused, l.onMessage, contract.SubscribeOptions{
		Step: l.opt.StepTimeout, MinBackoff: 2 * l.opt.MinBackoff, MaxBackoff: l.opt.MaxBackoff,
		Refused: func(filters []string, attempt int, err error) {
			l.log.Warn("mqtt subscription refused again", "filters", filters, "attempt", attempt, "err", err)
		},
	})
	if err == nil {
		l.log.Info("mqtt subscriptions granted")
	}
}

func (l *Link) setDown(err error) {
	l.upMu.Lock()
	select {
	case <-l.up:
		l.up = make(chan struct{})
	default:
	}
	l.upMu.Unlock()
	select {
	case l.lost <- err:
	default:
	}
}

func (l *Link) upChan() chan struct{} {
	l.upMu.Lock()
	defer l.upMu.Unlock()
	return l.up
}

func waitToken(ctx context.Context, tok paho.Token, limit time.Duration) error {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errStepTimeout
	}
}

// errStepTimeout is a token not done within its step's time.
var errStepTimeout = errors.New("timed out")

func (l *Link) state(online bool) contract.State {
	s := contract.State{Online: online, Device: l.opt.Device, BootID: l.bootID, TS: l.opt.Now().UTC()}
	if !online {
		return s
	}
	s.Site, s.Kind, s.Version = l.opt.Site, l.opt.Kind, l.opt.Version
	s.Capabilities = l.cmds.Types()
	if l.opt.Policy != nil {
		if c := l.opt.Policy.Current(); c != nil {
			exp := c.Matcher.Policy().Expires.UTC()
			s.Policy = &contract.PolicyState{Serial: c.Serial(), Expires: &exp}
		} else {
			s.Policy = &contract.PolicyState{}
		}
	}
	if l.opt.Roster != nil {
		s.Roster = &contract.RosterState{}
		if c := l.opt.Roster.Current(); c != nil {
			exp := c.Roster.Expires.UTC()
			s.Roster = &contract.RosterState{Serial: c.Serial(), Expires: &exp}
		}
	}
	return s
}

func (l *Link) publishState(ctx context.Context) (paho.Token, error) {
	// Snapshot and hand to paho under one lock, so a state built before a
	// policy swap is never published after the one built after it.
	l.stateMu.Lock()
	b, err := json.Marshal(l.state(true))
	if err != nil {
		l.stateMu.Unlock()
		return nil, fmt.Errorf("mqttlink: state: %w", err)
	}
	b = l.seal(contract.KindState, b)
	tok := l.client.Publish(l.topics.State, 1, true, b)
	l.stateMu.Unlock()
	if err := waitToken(ctx, tok, l.opt.StepTimeout); err != nil {
		return tok, fmt.Errorf("publish state: %w", err)
	}
	return tok, nil
}

// awaitState waits for the PUBACK of a state the connection's step timeout
// did not see acknowledged, for stateGrace steps more: a broker that still
// does not answer is taken for hung, and the connection is dropped so the
// device moves to the next node.
func (l *Link) awaitState(ctx context.Context, tok paho.Token) {
	err := waitToken(ctx, tok, stateGrace*l.opt.StepTimeout)
	switch {
	case ctx.Err() != nil:
	case err == nil:
		l.log.Info("mqtt state acknowledged late", "broker", l.brokerName())
	default:
		l.log.Warn("mqtt state never acknowledged: leaving the node", "broker", l.brokerName(), "err", err)
		l.client.Disconnect(0)
		l.setDown(fmt.Errorf("publish state: %w", err))
	}
}

// stateGrace is how many step timeouts more a connection waits for its
// state's PUBACK before it leaves the node.
const stateGrace = 2

// ---- durable publishing

// record layout in the queue: topic length (u16), topic, payload.
func encodeRecord(topic string, payload []byte) []byte {
	b := make([]byte, 0, 2+len(topic)+len(payload))
	b = append(b, byte(len(topic)>>8), byte(len(topic)))
	b = append(b, topic...)
	return append(b, payload...)
}

func decodeRecord(b []byte) (string, []byte, error) {
	if len(b) < 2 {
		return "", nil, errors.New("mqttlink: short queue record")
	}
	n := int(b[0])<<8 | int(b[1])
	if len(b) < 2+n {
		return "", nil, errors.New("mqttlink: short queue record")
	}
	return string(b[2 : 2+n]), b[2+n:], nil
}

// enqueue puts a message on the durable queue for in-order delivery.
func (l *Link) enqueue(c queue.Class, topic string, payload []byte) error {
	_, err := l.q.Append(c, encodeRecord(topic, payload))
	return err
}

type pending struct {
	seq     uint64
	tok     paho.Token
	barrier chan struct{} // set on a barrier: closed once everything before it settled
}

// deliver publishes queued records in order, at most InFlight awaiting
// PUBACK, and acknowledges them in the queue as their PUBACKs arrive, in
// order. Records in flight when the connection drops stay in paho's ordered
// store and are resent first on reconnect (clean session false); records in
// flight when the process dies are resent from the queue at the next start.
// So delivery is at least once and in order; consumers drop duplicates by
// event id. A publish that fails outright (not connected) stops the
// acknowledgements; once everything in flight has settled, the queue hands
// every unacknowledged record out again, in order.
func (l *Link) deliver(ctx context.Context) error {
	inflight := make(chan pending, l.opt.InFlight)
	var failed sync.Mutex // guards bad
	bad := false
	acked := make(chan struct{})
	go func() {
		defer close(acked)
		for p := range inflight {
			if p.barrier != nil {
				failed.Lock()
				bad = false
				failed.Unlock()
				close(p.barrier)
				continue
			}
			err := waitToken(ctx, p.tok, 1<<62)
			if ctx.Err() != nil {
				continue
			}
			failed.Lock()
			if err != nil && !bad {
				bad = true
				l.log.Warn("publish failed; will resend from the queue", "seq", p.seq, "err", err)
			}
			ok := !bad
			failed.Unlock()
			if ok {
				if err := l.q.Ack(p.seq); err != nil {
					l.log.Error("queue ack", "err", err)
				}
			}
		}
	}()
	defer func() { close(inflight); <-acked }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.upChan():
		}
		rec, err := l.q.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, queue.ErrClosed) {
				return nil
			}
			return fmt.Errorf("mqttlink: queue: %w", err)
		}
		failed.Lock()
		retry := bad
		failed.Unlock()
		if retry {
			b := pending{barrier: make(chan struct{})}
			select {
			case inflight <- b:
			case <-ctx.Done():
				return nil
			}
			select {
			case <-b.barrier:
			case <-ctx.Done():
				return nil
			}
			l.q.Rewind()
			continue
		}
		topic, payload, err := decodeRecord(rec.Data)
		if err != nil {
			l.log.Error("dropping unreadable queue record", "seq", rec.Seq, "err", err)
			continue
		}
		select {
		case inflight <- pending{seq: rec.Seq, tok: l.client.Publish(topic, 1, false, payload)}:
		case <-ctx.Done():
			return nil
		}
	}
}

// ---- events

type chainHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// loadChain restores the event chain head: the chain file, or the newest
// event still in the queue if that is later (the file is written after the
// queue, so a crash between the two leaves the queue ahead).
func (l *Link) loadChain() error {
	l.chainSeq, l.chainHash = 0, contract.Genesis
	if b, err := os.ReadFile(l.chainPath); err == nil {
		var h chainHead
		if err := json.Unmarshal(b, &h); err != nil {
			return fmt.Errorf("mqttlink: event chain %s is damaged: %w", l.chainPath, err)
		}
		if len(h.Hash) != 64 {
			return fmt.Errorf("mqttlink: event chain %s is damaged: a head hash of %d characters", l.chainPath, len(h.Hash))
		}
		l.chainSeq, l.chainHash = h.Seq, h.Hash
		l.chainSaved = h
	} else if !os.IsNotExist(err) {
		return fmt.Errorf("mqttlink: event chain: %w", err)
	}
	last, ok, err := l.q.Last(queue.Event, func(data []byte) bool {
		topic, _, err := decodeRecord(data)
		return err == nil && topic == l.topics.Events
	})
	if err != nil {
		return fmt.Errorf("mqttlink: %w", err)
	}
	if ok {
		_, payload, _ := decodeRecord(last)
		var ev contract.Event
		if json.Unmarshal(payload, &ev) == nil && ev.Seq > l.chainSeq {
			sum := sha256.Sum256(payload)
			l.chainSeq, l.chainHash = ev.Seq, hex.EncodeToString(sum[:])
		}
	}
	return nil
}

// Emit publishes an event through the durable queue, chained to the
// previous one (report.Events).
func (l *Link) Emit(typ string, sev report.Severity, f report.Fields) {
	l.chainMu.Lock()
	defer l.chainMu.Unlock()
	ev := contract.Event{
		ID: newID(), TS: l.opt.Now().UTC(), Seq: l.chainSeq + 1,
		Device: l.opt.Device, BootID: l.bootID,
		Severity: sev.String(), Type: typ, Prev: l.chainHash, Fields: f,
	}
	b, err := json.Marshal(ev)
	if err != nil {
		ev.Fields = map[string]any{"unencodable_fields": err.Error()}
		b, _ = json.Marshal(ev)
	}
	if l.opt.Signer != nil {
		// Each signature costs ~2.5 ms on an armv7 (qemu; BenchmarkSealEvent), so a burst
		// is signed at most every SignGap and closed by a signed
		// checkpoint: a signed event vouches for those before it
		// through their prev hashes.
		if now := time.Now(); typ == ChainCheckpoint || now.Sub(l.lastSigned) >= SignGap {
			b, l.lastSigned, l.unsigned = l.seal(contract.KindEvents, b), now, 0
		} else {
			l.unsigned++
		}
	}
	if err := l.enqueue(queue.Event, l.topics.Events, b); err != nil {
		l.log.Error("event not queued", "type", typ, "err", err)
		return
	}
	sum := sha256.Sum256(b)
	l.chainSeq, l.chainHash = ev.Seq, hex.EncodeToString(sum[:])
}

// SignGap is the least time between two signed events; the events between
// wait at most about this long for the checkpoint that vouches for them.
const SignGap = 250 * time.Millisecond

// ChainCheckpoint is the signed event that closes a burst of unsigned ones.
const ChainCheckpoint = "chain.checkpoint"

// checkpoint signs the chain head when unsigned events wait for it.
func (l *Link) checkpoint(force bool) {
	l.chainMu.Lock()
	n := l.unsigned
	due := n > 0 && (force || time.Since(l.lastSigned) >= SignGap)
	l.chainMu.Unlock()
	if due {
		l.Emit(ChainCheckpoint, report.Info, report.Fields{"vouches": n})
	}
}

// seal signs a report when the link has a signer. A failure to sign is
// logged and the report goes unsigned: consumers show it as unverified,
// which is better than losing it.
func (l *Link) seal(kind string, b []byte) []byte {
	if l.opt.Signer == nil {
		return b
	}
	sealed, err := l.opt.Signer.Seal(kind, b)
	if err != nil {
		l.log.Error("report not signed", "kind", kind, "err", err)
		return b
	}
	return sealed
}

// saveChain writes the chain head file when it moved. It is written lazily
// (each second and at shutdown) and never fsynced: the newest event always
// stays in the queue's active event segment, and loadChain takes the later
// of file and queue, so the file only has to be right when the queue no
// longer holds the head; it must never be ahead of the queue.
func (l *Link) saveChain() {
	l.chainMu.Lock()
	head := chainHead{l.chainSeq, l.chainHash}
	l.chainMu.Unlock()
	if head == l.chainSaved {
		return
	}
	hb, _ := json.Marshal(head)
	if err := atomicfile.Replace(l.chainPath, hb, 0o600); err != nil {
		l.log.Error("event chain head not saved", "err", err)
		return
	}
	l.chainSaved = head
}
