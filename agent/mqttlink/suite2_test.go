package mqttlink_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/mqttlink"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/policytest"
	"linkguard.dev/linkguard/policy/store"
)

// send signs and publishes a command as lgctl does.
func (e *env) send(t *testing.T, obs *observer, p command.Payload, retained bool) {
	t.Helper()
	env, err := command.Sign(p, e.opKey)
	if err != nil {
		t.Fatal(err)
	}
	e.publish(t, obs, contract.CmdTopicFor(p.Target), env, retained)
}

func (e *env) publish(t *testing.T, obs *observer, topic string, b []byte, retained bool) {
	t.Helper()
	if err := obs.publish(topic, b, retained); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

func results(ms []msg) map[string][]contract.Result {
	out := map[string][]contract.Result{}
	for _, m := range ms {
		if strings.HasSuffix(m.Topic, "/cmd/result") {
			var r contract.Result
			if json.Unmarshal(m.Payload, &r) == nil {
				out[r.CmdID] = append(out[r.CmdID], r)
			}
		}
	}
	return out
}

func payload(id, target, typ string, issued, expires time.Time, args string) command.Payload {
	p := command.Payload{ID: id, Target: target, Issued: issued, Expires: expires, Type: typ}
	if args != "" {
		p.Args = json.RawMessage(args)
	}
	return p
}

func testCommands(t *testing.T, e *env) {
	const dev = "dev-cmd"
	obs := e.observe(t, "console-cmd", "linkguard/v1/#")
	now := time.Now()
	// Published retained before the device subscribes: the broker replays
	// it at subscribe time, and it must never be acted on.
	e.send(t, obs, payload("retained-1", dev, command.LogLevel, now, now.Add(time.Hour), `{"level":"debug"}`), true)
	t.Cleanup(func() { e.publish(t, obs, contract.CmdTopicFor(dev), nil, true) })

	lv := new(slogLevelVar)
	opt := e.options(t, dev, t.TempDir())
	opt.LevelVar = lv.v()
	runLink(t, opt, nil)
	obs.waitFor(t, "refusal of the retained command", 15*time.Second, func(ms []msg) bool {
		r := results(ms)["retained-1"]
		return len(r) == 1 && !r[0].OK && r[0].Reason == string(command.ReasonRetained)
	})
	if lv.v().Level().String() != "INFO" {
		t.Fatalf("a retained command changed the log level to %v", lv.v().Level())
	}

	stranger := policytest.Key(t)
	signedBy := func(p command.Payload) []byte {
		env, err := command.Sign(p, stranger)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	tampered := func() []byte {
		env, _ := command.Sign(payload("tampered", dev, command.Ping, now, now.Add(time.Minute), ""), e.opKey)
		return bytes.Replace(env, []byte(`"sig": "`), []byte(`"sig": "AAAA`), 1)
	}
	replayed, _ := command.Sign(payload("replayed", dev, command.Ping, now, now.Add(time.Minute), ""), e.opKey)
	deep := []byte(strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000))
	binary := make([]byte, 4096)
	for i := range binary {
		binary[i] = byte(i * 7)
	}
	huge := bytes.Repeat([]byte(`{"payload":"`), 200000) // 2.4 MB

	type raw struct {
		topic string
		body  []byte
	}
	cases := []struct {
		id     string
		msg    any // command.Payload (signed by the operator) or raw
		ok     bool
		reason command.Reason
	}{
		{"ping-1", payload("ping-1", dev, command.Ping, now, now.Add(time.Minute), ""), true, ""},
		{"site-1", payload("site-1", "site:tachileik", command.Ping, now, now.Add(time.Minute), ""), true, ""},
		{"all-1", payload("all-1", "all", command.Ping, now, now.Add(time.Minute), ""), true, ""},
		{"level-1", payload("level-1", dev, command.LogLevel, now, now.Add(time.Minute), `{"level":"debug"}`), true, ""},
		{"rebirth-1", payload("rebirth-1", dev, command.Rebirth, now, now.Add(time.Minute), ""), true, ""},
		{"replayed", raw{contract.CmdTopicFor(dev), replayed}, true, ""},
		{"replayed", raw{contract.CmdTopicFor(dev), replayed}, false, command.ReasonReplay},
		{"tampered", raw{contract.CmdTopicFor(dev), tampered()}, false, command.ReasonBadSignature},
		{"stranger", raw{contract.CmdTopicFor(dev), signedBy(payload("stranger", dev, command.Ping, now, now.Add(time.Minute), ""))}, false, command.ReasonUntrusted},
		{"wrong-target", raw{contract.CmdTopicFor(dev), mustSign(t, e, payload("wrong-target", "dev-other", command.Ping, now, now.Add(time.Minute), ""))}, false, command.ReasonWrongTarget},
		{"wrong-site", raw{contract.AllCmdTopic, mustSign(t, e, payload("wrong-site", "site:mae-sai", command.Ping, now, now.Add(time.Minute), ""))}, false, command.ReasonWrongTarget},
		{"expired", payload("expired", dev, command.Ping, now.Add(-time.Hour), now.Add(-time.Minute), ""), false, command.ReasonExpired},
		{"future", payload("future", dev, command.Ping, now.Add(time.Hour), now.Add(2*time.Hour), ""), false, command.ReasonFuture},
		{"unknown", payload("unknown", dev, "frobnicate", now, now.Add(time.Minute), ""), false, command.ReasonUnknownType},
		{"bad-args", payload("bad-args", dev, command.LogLevel, now, now.Add(time.Minute), `{"level":"loud"}`), false, command.ReasonFailed},
		{"", raw{contract.CmdTopicFor(dev), deep}, false, command.ReasonMalformed},
		{"", raw{contract.CmdTopicFor(dev), binary}, false, command.ReasonMalformed},
		{"", raw{contract.CmdTopicFor(dev), huge}, false, command.ReasonTooLarge},
		{"", raw{contract.CmdTopicFor(dev), []byte(`{"id":"x","type":"relay.set","target":"dev-cmd"}`)}, false, command.ReasonMalformed},
	}
	for _, c := range cases {
		switch m := c.msg.(type) {
		case command.Payload:
			e.send(t, obs, m, false)
		case raw:
			e.publish(t, obs, m.topic, m.body, false)
		}
	}
	// Every command gets exactly its result, in order.
	ms := obs.waitFor(t, "a result for every command", 20*time.Second, func(ms []msg) bool {
		n := 0
		for _, m := range ms {
			if strings.HasSuffix(m.Topic, "/cmd/result") {
				n++
			}
		}
		return n >= len(cases)+1
	})
	var got []contract.Result
	for _, m := range ms {
		if strings.HasSuffix(m.Topic, "/cmd/result") {
			got = append(got, decode[contract.Result](t, m.Payload))
		}
	}
	got = got[1:] // the retained one
	if len(got) != len(cases) {
		t.Fatalf("%d results for %d commands", len(got), len(cases))
	}
	for i, c := range cases {
		r := got[i]
		if r.CmdID != c.id || r.OK != c.ok || r.Reason != string(c.reason) {
			t.Errorf("command %d %q: result %+v, want ok=%v reason=%q", i, c.id, r, c.ok, c.reason)
		}
	}
	if lv.v().Level().String() != "DEBUG" {
		t.Errorf("log.level did not change the level: %v", lv.v().Level())
	}
	// Each refusal is also an event with the same reason.
	refusals := map[string]int{}
	for _, ev := range events(ms, dev) {
		if ev.Type == report.CommandRefused {
			refusals[ev.Fields["reason"].(string)]++
		}
	}
	for _, c := range cases {
		if !c.ok && refusals[string(c.reason)] == 0 {
			t.Errorf("no %s event for reason %s", report.CommandRefused, c.reason)
		}
	}
	// Unharmed: still answering.
	e.send(t, obs, payload("ping-after", dev, command.Ping, time.Now(), time.Now().Add(time.Minute), ""), false)
	obs.waitFor(t, "ping after the hostile messages", 10*time.Second, func(ms []msg) bool {
		r := results(ms)["ping-after"]
		return len(r) == 1 && r[0].OK
	})
}

func mustSign(t *testing.T, e *env, p command.Payload) []byte {
	env, err := command.Sign(p, e.opKey)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func testFleetPolicy(t *testing.T, e *env) {
	const dev = "dev-policy"
	obs := e.observe(t, "console-policy", "linkguard/v1/#")
	committee := policytest.Key(t)
	var link *mqttlink.Link
	st, err := store.New(store.Options{
		Trust: policytest.Keyring(committee), Threshold: 1, StateDir: t.TempDir(),
		OnOutcome: func(o store.Outcome) { link.PolicyOutcome(o) },
	})
	if err != nil {
		t.Fatal(err)
	}
	pol := policytest.Synthetic(50, 1)
	pol.Serial, pol.Issued, pol.Expires = 7, time.Now().Add(-time.Hour).UTC().Truncate(time.Second), time.Now().AddDate(0, 1, 0).UTC().Truncate(time.Second)
	good := policytest.Sign(t, policytest.YAML(pol), committee)
	e.publish(t, obs, contract.PolicyTopic, good, true)
	t.Cleanup(func() { e.publish(t, obs, contract.PolicyTopic, nil, true) })

	opt := e.options(t, dev, t.TempDir())
	opt.Policy = st
	opt.PolicyFile = filepath.Join(t.TempDir(), "policy.dsse")
	runLink(t, opt, func(l *mqttlink.Link) { link = l })
	obs.waitFor(t, "policy applied event and state with serial 7", 15*time.Second, func(ms []msg) bool {
		applied := false
		for _, ev := range events(ms, dev) {
			applied = applied || (ev.Type == report.PolicyApplied && ev.Fields["source"] == "mqtt")
		}
		last := contract.State{}
		for _, m := range ms {
			if m.Topic == link.Topics().State {
				json.Unmarshal(m.Payload, &last)
			}
		}
		return applied && last.Policy != nil && last.Policy.Serial == 7
	})
	onDisk, err := os.ReadFile(opt.PolicyFile)
	if err != nil || !bytes.Equal(onDisk, good) {
		t.Fatalf("policy file not written with the applied envelope: %v", err)
	}
	// A policy signed by someone else is refused, reported, and changes nothing.
	pol.Serial = 8
	e.publish(t, obs, contract.PolicyTopic, policytest.Sign(t, policytest.YAML(pol), policytest.Key(t)), true)
	obs.waitFor(t, "policy rejected event", 15*time.Second, func(ms []msg) bool {
		for _, ev := range events(ms, dev) {
			if ev.Type == report.PolicyRejected && ev.Fields["source"] == "mqtt" {
				return true
			}
		}
		return false
	})
	if st.Current().Serial() != 7 {
		t.Fatalf("enforcing serial %d after a forged policy", st.Current().Serial())
	}
	// The retained policy cleared on the broker (an empty message): said
	// plainly, not as a malformed envelope, and the policy in force stays.
	e.publish(t, obs, contract.PolicyTopic, nil, true)
	obs.waitFor(t, "the clearing reported", 15*time.Second, func(ms []msg) bool {
		for _, ev := range events(ms, dev) {
			if r, _ := ev.Fields["reason"].(string); ev.Type == report.PolicyRejected && strings.Contains(r, "was cleared") {
				return true
			}
		}
		return false
	})
	if st.Current().Serial() != 7 {
		t.Fatalf("enforcing serial %d after the retained policy was cleared", st.Current().Serial())
	}
	_ = policy.PayloadType
}

// testOutage stops the broker for d while events flow, then starts it:
// every event arrives, once per id, in order, and the chain verifies.
func testOutage(t *testing.T, e *env, d time.Duration) {
	const dev = "dev-outage"
	obs := e.observe(t, "console-outage", "linkguard/v1/"+dev+"/#")
	link := runLink(t, e.options(t, dev, t.TempDir()), nil)
	obs.waitFor(t, "online", 15*time.Second, func(ms []msg) bool { return len(ms) > 0 })

	ctx, cancel := context.WithCancel(context.Background())
	emitted := make(chan int)
	go func() {
		n := 0
		defer func() { emitted <- n }()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				n++
				link.Emit("test.tick", report.Info, report.Fields{"n": n})
			}
		}
	}()
	time.Sleep(time.Second)
	e.broker.Stop(t)
	time.Sleep(d)
	if link.QueueStats().Depth == 0 {
		t.Fatal("nothing queued during the outage")
	}
	e.broker.Start(t)
	time.Sleep(time.Second)
	cancel()
	n := <-emitted
	ms := obs.waitFor(t, "every event after the outage", 60*time.Second, func(ms []msg) bool {
		seen := map[float64]bool{}
		for _, ev := range events(ms, dev) {
			if ev.Type == "test.tick" {
				seen[ev.Fields["n"].(float64)] = true
			}
		}
		return len(seen) == n
	})
	checkEvents(t, ms, dev)
	t.Logf("%s: %d events across a %v outage", e.kind, n, d)
	// Telemetry kept its per-boot sequence, gap-free, and went through the
	// queue during the outage too.
	var seqs []uint64
	seen := map[string]bool{}
	for _, m := range ms {
		// QoS 1 may redeliver a message: identical bytes, dropped here as
		// a console would by (boot_id, seq).
		if m.Topic == link.Topics().Telemetry && !seen[string(m.Payload)] {
			seen[string(m.Payload)] = true
			seqs = append(seqs, decode[contract.Telemetry](t, m.Payload).Seq)
		}
	}
	if len(seqs) < int(d/time.Second) {
		t.Fatalf("only %d telemetry messages", len(seqs))
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("telemetry seq %d after %d", seqs[i], seqs[i-1])
		}
	}
}

// checkEvents asserts: in first-arrival order the event sequence numbers
// rise by one; a redelivered id (QoS 1 at-least-once) repeats identical
// bytes; the hash chain verifies.
func checkEvents(t *testing.T, ms []msg, dev string) {
	t.Helper()
	var stream bytes.Buffer
	first := map[string][]byte{}
	var order []uint64
	dups := 0
	for _, m := range ms {
		if !strings.HasSuffix(m.Topic, "/events") {
			continue
		}
		ev := decode[contract.Event](t, m.Payload)
		if b, ok := first[ev.ID]; ok {
			dups++
			if !bytes.Equal(b, m.Payload) {
				t.Fatalf("event %s redelivered with different bytes", ev.ID)
			}
			continue
		}
		first[ev.ID] = m.Payload
		order = append(order, ev.Seq)
		stream.Write(m.Payload)
		stream.WriteByte('\n')
	}
	for i := 1; i < len(order); i++ {
		if order[i] != order[i-1]+1 {
			t.Fatalf("event seq %d arrived after %d; arrival order: %v", order[i], order[i-1], order)
		}
	}
	reps, err := contract.Audit(&stream)
	if err != nil || len(reps) != 1 || !reps[0].OK() {
		t.Fatalf("audit: %v %+v", err, reps)
	}
	t.Logf("%d distinct events, %d redelivered duplicates (dropped by id)", len(order), dups)
}

// testKillMidStream queues events while the broker is down, kills the agent
// with SIGKILL, restarts it with the broker up: the queued events arrive,
// and the new boot's events continue the chain.
func testKillMidStream(t *testing.T, e *env) {
	const dev = "dev-kill"
	const count = 300
	obs := e.observe(t, "console-kill", "linkguard/v1/"+dev+"/events")
	state := t.TempDir()
	opt := e.options(t, dev, state)

	// First: deliver some live, then kill mid-stream.
	h := startHelper(t, e, opt, count, 2*time.Millisecond)
	obs.waitFor(t, "first events", 15*time.Second, func(ms []msg) bool { return len(ms) > 20 })
	h.kill()
	// Second: the broker is down while the agent queues, then dies.
	e.broker.Stop(t)
	h = startHelper(t, e, opt, count, 0)
	h.waitEmitted(t, 30*time.Second)
	time.Sleep(100 * time.Millisecond)
	h.kill()
	e.broker.Start(t)
	// Third: restart; everything queued must arrive.
	h = startHelper(t, e, opt, 1, 0)
	h.waitEmitted(t, 30*time.Second)
	ms := obs.waitFor(t, "all queued events", 60*time.Second, func(ms []msg) bool {
		seen := map[uint64]bool{}
		var maxSeq uint64
		for _, ev := range events(ms, dev) {
			seen[ev.Seq] = true
			maxSeq = max(maxSeq, ev.Seq)
		}
		// every seq up to the last, and the third boot's tick
		return maxSeq > 0 && uint64(len(seen)) == maxSeq && ticks(ms, dev) >= count+1
	})
	checkEvents(t, ms, dev)
	boots := map[string]bool{}
	for _, ev := range events(ms, dev) {
		boots[ev.BootID] = true
	}
	if len(boots) != 3 {
		t.Fatalf("events from %d boots, want 3", len(boots))
	}
}

// ticks counts distinct test.tick events of the second and third boots
// (the first was killed mid-stream, so its count is whatever it reached).
func ticks(ms []msg, dev string) int {
	ids := map[string]bool{}
	byBoot := map[string]int{}
	var boots []string
	for _, ev := range events(ms, dev) {
		if ev.Type != "test.tick" || ids[ev.ID] {
			continue
		}
		ids[ev.ID] = true
		if byBoot[ev.BootID] == 0 {
			boots = append(boots, ev.BootID)
		}
		byBoot[ev.BootID]++
	}
	n := 0
	for i, b := range boots {
		if i > 0 {
			n += byBoot[b]
		}
	}
	return n
}
