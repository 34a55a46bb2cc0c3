package agent_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/physic"

	"linkguard.dev/linkguard/agent"
	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/agent/feeds"
	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/agent/mqttlink/contract/schema"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/hal/meter"
	"linkguard.dev/linkguard/hal/relay/relaytest"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/policytest"
	"linkguard.dev/linkguard/policy/roster"
	"linkguard.dev/linkguard/policy/roster/rostertest"
)

// site is a relay device run by agent.Run against an embedded broker, its
// feed's relays and meter handed in through the hardware seam, with a
// console subscribed to the whole tree.
type site struct {
	t       *testing.T
	in      brokertest.Inline
	cfg     *config.Config
	hw      *agent.Hardware
	relays  map[string]*relaytest.Relay
	anchors [2]ed25519.PrivateKey // policy.trust, threshold 1
	ops     ed25519.PrivateKey    // mqtt.operators
	mu      sync.Mutex
	seen    []msg
	issued  time.Time
	sent    map[string]int // command id -> times sent
}

type msg struct{ topic, payload string }

// steady is a meter that always reads the same modest load.
type steady struct{}

func (steady) Read(context.Context) (meter.Snapshot, error) {
	return meter.Snapshot{Time: time.Now(), Quality: meter.Good, NPhases: 1, Power: 5 * physic.KiloWatt}, nil
}

const rosterDevice = "relay-roster"

func newSite(t *testing.T) *site {
	pki := brokertest.NewPKI(t)
	in := brokertest.Mochi(t, pki).(brokertest.Inline)
	s := &site{t: t, in: in, relays: map[string]*relaytest.Relay{}, sent: map[string]int{}, issued: time.Now().Add(-time.Hour).UTC().Truncate(time.Second)}
	unsub, err := in.Subscribe("linkguard/v1/#", func(topic string, p []byte, _ bool) {
		s.mu.Lock()
		s.seen = append(s.seen, msg{topic, string(p)})
		s.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unsub)
	dir := t.TempDir()
	var pubs [2]string
	for i := range s.anchors {
		keyPath, pub, err := dsse.GenerateKeyFiles(dir, fmt.Sprintf("committee-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		s.anchors[i], _ = dsse.LoadPrivateKey(keyPath)
		pubs[i] = pub
	}
	opsKey, opsPub, _ := dsse.GenerateKeyFiles(dir, "ops")
	s.ops, _ = dsse.LoadPrivateKey(opsKey)
	cert, key := pki.Client(t, rosterDevice)
	yaml := fmt.Sprintf(`device: {id: %s, site: tachileik, kind: relay}
state_dir: %s
policy: {file: %s, trust: [%s, %s], threshold: 1}
mqtt: {url: %s, ca: %s, cert: %s, key: %s, telemetry_every: 1s, operators: [%s]}
buses: [{port: /dev/fake-rs485}]
feeds:
  - id: feed-1
    meter: {bus: /dev/fake-rs485, model: sdm630, slave: 1}
    min_on: 1ms
    min_off: 1ms
    circuits:
      - {id: c1, relay: {bus: /dev/fake-rs485, slave: 2, coil: 0}, priority: 1}
      - {id: hospital, relay: {bus: /dev/fake-rs485, slave: 2, coil: 1}, protected: true}
`, rosterDevice, filepath.Join(dir, "state"), filepath.Join(dir, "policy.signed.json"), pubs[0], pubs[1],
		in.(brokertest.Broker).URL(), pki.CA, cert, key, opsPub)
	if s.cfg, err = config.Parse("site.yaml", []byte(yaml)); err != nil {
		t.Fatal(err)
	}
	s.hw = &agent.Hardware{OpenFeeds: func(cfg *config.Config, _ *slog.Logger) ([]feeds.Spec, io.Closer, error) {
		f := cfg.Feeds[0]
		spec := feeds.Spec{ID: f.ID, Meter: steady{}, MinOn: f.MinOn, MinOff: f.MinOff, MaxOpsPerHour: f.MaxOpsPerHour,
			StaleAfter: f.StaleAfter, SafeState: feeds.Restore, Confirm: f.Confirm, Period: f.Period, ReadbackEvery: f.Readback}
		for _, c := range f.Circuits {
			r, ok := s.relays[c.ID]
			if !ok {
				r = relaytest.New(true, nil)
				s.relays[c.ID] = r
			}
			spec.Circuits = append(spec.Circuits, feeds.CircuitSpec{ID: c.ID, Relay: r, Priority: c.Priority, Protected: c.Protected})
		}
		return []feeds.Spec{spec}, io.NopCloser(nil), nil
	}}
	return s
}

// run starts the agent and returns it with a function that stops it.
func (s *site) run() (*agent.Agent, func()) {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *agent.Agent, 1)
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(ctx, s.cfg, agent.Options{Hardware: s.hw, Ready: func(a *agent.Agent) { ready <- a }})
	}()
	var a *agent.Agent
	select {
	case a = <-ready:
	case err := <-done:
		s.t.Fatalf("Run: %v", err)
	}
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			s.t.Errorf("Run: %v", err)
		}
	}
	s.t.Cleanup(func() {
		select {
		case <-ctx.Done():
		default:
			stop()
		}
	})
	return a, stop
}

// waitFor waits until pred holds for some message published so far.
func (s *site) waitFor(what string, pred func(topic string, payload []byte) bool) {
	s.t.Helper()
	s.waitForAll(what, func(ms []msg) bool {
		for _, m := range ms {
			if pred(m.topic, []byte(m.payload)) {
				return true
			}
		}
		return false
	})
}

// waitForAll waits until pred holds for the messages published so far.
func (s *site) waitForAll(what string, pred func([]msg) bool) {
	s.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		seen := append([]msg(nil), s.seen...)
		s.mu.Unlock()
		if pred(seen) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("no %s over MQTT", what)
}

// event waits for an event of typ whose fields include want.
func (s *site) event(typ string, want report.Fields) {
	s.t.Helper()
	s.waitFor(fmt.Sprintf("%s event with %v", typ, want), func(topic string, p []byte) bool {
		var ev contract.Event
		if topic != contract.TopicsFor(rosterDevice, "").Events || json.Unmarshal(p, &ev) != nil || ev.Type != typ {
			return false
		}
		for k, v := range want {
			if fmt.Sprint(ev.Fields[k]) != fmt.Sprint(v) {
				return false
			}
		}
		return true
	})
}

// state waits for an online state naming policy serial p and roster r.
func (s *site) state(p, r uint64) {
	s.t.Helper()
	s.waitFor(fmt.Sprintf("state with policy %d and roster %d", p, r), func(topic string, b []byte) bool {
		var st contract.State
		return topic == contract.TopicsFor(rosterDevice, "").State && json.Unmarshal(b, &st) == nil && st.Online &&
			st.Policy != nil && st.Policy.Serial == p && st.Roster != nil && st.Roster.Serial == r
	})
}

func (s *site) policy(serial uint64, keys ...ed25519.PrivateKey) []byte {
	p := policytest.Synthetic(10, serial)
	p.Serial, p.Issued, p.Expires = serial, s.issued, s.issued.AddDate(0, 1, 0)
	return policytest.Sign(s.t, policytest.YAML(p), keys...)
}

func (s *site) roster(spec rostertest.Spec, keys ...ed25519.PrivateKey) []byte {
	if spec.Issued.IsZero() {
		spec.Issued = s.issued
	}
	return rostertest.Sign(s.t, rostertest.YAML(spec), keys...)
}

func (s *site) publish(topic string, b []byte, retained bool) {
	s.t.Helper()
	if err := s.in.Publish(topic, b, retained); err != nil {
		s.t.Fatal(err)
	}
}

// command sends a command signed by keys and waits for its result, and for
// the command.refused event with the same reason when it is refused.
func (s *site) command(id, typ string, args any, keys ...ed25519.PrivateKey) contract.Result {
	s.t.Helper()
	now := time.Now()
	b, _ := json.Marshal(args)
	env, err := command.Sign(command.Payload{ID: id, Target: rosterDevice, Issued: now, Expires: now.Add(time.Minute), Type: typ, Args: b}, keys...)
	if err != nil {
		s.t.Fatal(err)
	}
	s.sent[id]++
	s.publish(contract.CmdTopicFor(rosterDevice), env, false)
	// A refused id may be sent again (cosigned): wait for this sending's
	// result, the latest.
	var got contract.Result
	s.waitForAll("result of "+id, func(ms []msg) bool {
		var rs []contract.Result
		for _, m := range ms {
			var r contract.Result
			if m.topic == contract.TopicsFor(rosterDevice, "").Result && json.Unmarshal([]byte(m.payload), &r) == nil && r.CmdID == id {
				rs = append(rs, r)
			}
		}
		if len(rs) < s.sent[id] {
			return false
		}
		got = rs[len(rs)-1]
		return true
	})
	if !got.OK {
		s.event(report.CommandRefused, report.Fields{"cmd_id": id, "reason": got.Reason})
	}
	return got
}

// TestRunRosterTrust runs a relay device through the roster's life on the
// composition root: a policy signed by a committee member only a roster
// names is refused, then taken once that roster is in force (it arrived
// first and is tried again); a roster raising the committee threshold
// makes one such signature too few; a protected circuit needs k grid
// signatures over MQTT; keys outside the roster, the configured operator
// key and roles without the right are refused, each with a command.refused
// event; rollbacks and expired rosters are refused from the retained topic
// and from the watched file alike, the last good roster kept; the state
// names both serials; a restart restores the policy the roster's members
// signed, under the restored roster.
func TestRunRosterTrust(t *testing.T) {
	s := newSite(t)
	a, stop := s.run()
	s.state(0, 0)

	dora, erin := rostertest.NewMember(t, "dora", roster.Committee), rostertest.NewMember(t, "erin", roster.Committee)
	chair := rostertest.Member{ID: "chair", Roles: []roster.Role{roster.Committee}, Key: s.anchors[0]}
	grid1, grid2 := rostertest.NewMember(t, "grid-1", roster.Grid), rostertest.NewMember(t, "grid-2", roster.Grid)
	tech, viewer := rostertest.NewMember(t, "tech", roster.Technician), rostertest.NewMember(t, "viewer", roster.Viewer)
	members := []rostertest.Member{chair, dora, erin, grid1, grid2, tech, viewer}

	// Before any roster, dora is nobody to this device.
	s.publish(contract.PolicyTopic, s.policy(5, dora.Key), true)
	s.event(report.PolicyRejected, report.Fields{"source": "mqtt", "serial": 0})
	if a.Policy().Current() != nil {
		t.Fatal("a policy by a key outside the trust anchors was enforced")
	}
	// The roster naming her comes into force; the refused policy is taken.
	s.publish(contract.RosterTopic, s.roster(rostertest.Spec{Serial: 2, Members: members}, s.anchors[0]), true)
	s.event(report.RosterApplied, report.Fields{"source": "mqtt", "serial": 2})
	s.event(report.PolicyApplied, report.Fields{"source": "mqtt", "serial": 5})
	s.state(5, 2)
	if b, err := os.ReadFile(s.cfg.Policy.File); err != nil || !strings.Contains(string(b), dsse.KeyID(dora.Public())) {
		t.Errorf("the policy taken after the roster change is not kept in the policy file: %v", err)
	}

	// Commands: only the roster's keys, each for its role; a protected
	// circuit needs two grid signatures.
	relay := func(circuit string) feeds.RelayOrder {
		return feeds.RelayOrder{Feed: "feed-1", Circuit: circuit, State: feeds.StateOff, Override: true, Reason: "transformer fire"}
	}
	stranger := policytest.Key(t)
	for _, c := range []struct {
		id     string
		order  feeds.RelayOrder
		keys   []ed25519.PrivateKey
		reason command.Reason
	}{
		{"hospital-1", relay("hospital"), []ed25519.PrivateKey{grid1.Key}, command.ReasonBelowThreshold},
		{"viewer-1", relay("c1"), []ed25519.PrivateKey{viewer.Key}, command.ReasonRole},
		{"tech-1", relay("c1"), []ed25519.PrivateKey{tech.Key}, command.ReasonRole},
		{"committee-1", relay("c1"), []ed25519.PrivateKey{dora.Key}, command.ReasonRole},
		{"stranger-1", relay("c1"), []ed25519.PrivateKey{stranger}, command.ReasonUntrusted},
		{"configured-operator-1", relay("c1"), []ed25519.PrivateKey{s.ops}, command.ReasonUntrusted},
		{"hospital-1", relay("hospital"), []ed25519.PrivateKey{grid1.Key, grid2.Key}, ""},
		{"c1-1", relay("c1"), []ed25519.PrivateKey{grid2.Key}, ""},
	} {
		r := s.command(c.id, command.RelaySet, c.order, c.keys...)
		if r.OK != (c.reason == "") || r.Reason != string(c.reason) {
			t.Errorf("%s: ok %v reason %q (%s), want reason %q", c.id, r.OK, r.Reason, r.Error, c.reason)
		}
	}
	if s.relays["hospital"].On() || s.relays["c1"].On() {
		t.Errorf("after the accepted orders: hospital on %v, c1 on %v; want both off", s.relays["hospital"].On(), s.relays["c1"].On())
	}

	// The next roster raises the committee threshold to two: dora alone no
	// longer signs a policy, dora with erin does.
	s.publish(contract.RosterTopic, s.roster(rostertest.Spec{Serial: 3, Members: members,
		Thresholds: map[roster.Class]int{roster.ClassCommittee: 2}}, s.anchors[0], s.anchors[1]), true)
	s.event(report.RosterApplied, report.Fields{"source": "mqtt", "serial": 3})
	s.publish(contract.PolicyTopic, s.policy(6, dora.Key), true)
	s.event(report.PolicyRejected, report.Fields{"source": "mqtt", "prev": 5})
	s.publish(contract.PolicyTopic, s.policy(6, dora.Key, erin.Key), true)
	s.event(report.PolicyApplied, report.Fields{"source": "mqtt", "serial": 6})
	s.state(6, 3)

	// Rollbacks and expired rosters, retained and in the watched file.
	expired := rostertest.Spec{Serial: 9, Issued: s.issued.AddDate(0, -2, 0), Expires: s.issued.Add(-time.Minute), Members: members}
	file := "file:" + s.cfg.Policy.Roster
	for _, c := range []struct {
		name, source string
		env          []byte
		serial       uint64
	}{
		{"rollback over MQTT", "mqtt", s.roster(rostertest.Spec{Serial: 1, Members: members}, s.anchors[0], s.anchors[1]), 1},
		{"expired over MQTT", "mqtt", s.roster(expired, s.anchors[0], s.anchors[1]), 9},
		{"rollback in the file", file, s.roster(rostertest.Spec{Serial: 2, Members: []rostertest.Member{grid1}}, s.anchors[0], s.anchors[1]), 2},
		{"expired in the file", file, s.roster(rostertest.Spec{Serial: 10, Issued: expired.Issued, Expires: expired.Expires, Members: members}, s.anchors[0], s.anchors[1]), 10},
	} {
		if c.source == "mqtt" {
			s.publish(contract.RosterTopic, c.env, true)
		} else if err := os.WriteFile(s.cfg.Policy.Roster, c.env, 0o644); err != nil {
			t.Fatal(err)
		}
		s.event(report.RosterRejected, report.Fields{"source": c.source, "serial": c.serial, "prev": 3})
	}
	// Roster 3 still rules: grid-1 and grid-2 switch the hospital back on,
	// one of them does not, and the state still names roster 3.
	on := feeds.RelayOrder{Feed: "feed-1", Circuit: "hospital", State: feeds.StateOn, Override: true, Reason: "fire out"}
	if r := s.command("hospital-2", command.RelaySet, on, grid2.Key); r.Reason != string(command.ReasonBelowThreshold) {
		t.Errorf("one grid signature under the kept roster: %+v", r)
	}
	if r := s.command("hospital-2", command.RelaySet, on, grid1.Key, grid2.Key); !r.OK || !s.relays["hospital"].On() {
		t.Errorf("two grid signatures under the kept roster: %+v, hospital on %v", r, s.relays["hospital"].On())
	}
	if r := s.command("rebirth-1", command.Rebirth, nil, tech.Key); !r.OK {
		t.Errorf("rebirth: %+v", r)
	}
	s.state(6, 3)

	// A restart: the roster is restored first, so the policy dora and erin
	// signed (no anchor among them) is enforced from the last-known-good.
	stop()
	s.publish(contract.RosterTopic, nil, true)
	s.publish(contract.PolicyTopic, nil, true)
	a, _ = s.run()
	if got := a.Policy().Current(); got == nil || got.Serial() != 6 || got.Source != "last-known-good" {
		t.Fatalf("after a restart: policy %v, want serial 6 from the last-known-good", got.Serial())
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.seen {
		if strings.HasPrefix(m.topic, contract.Prefix+rosterDevice+"/") && !strings.HasSuffix(m.topic, "/cmd") {
			if err := schema.ValidateTopic(m.topic, []byte(m.payload)); err != nil {
				t.Errorf("message breaks the contract: %v\n%s", err, contract.Pretty([]byte(m.payload)))
			}
		}
	}
}
