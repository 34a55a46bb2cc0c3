package mqttlink_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/mqttlink"
	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/policytest"
)

// FloodJunk is how many junk messages TestIntakeFlood publishes on
// linkguard/v1/all/cmd: the flood that once left a signed ping unanswered.
const FloodJunk = 30000

// TestIntakeFlood: 30,000 junk messages on the fleet's command topic (over
// the size limit, not JSON, nested too deep, envelopes signed by a stranger,
// envelopes naming a real operator's key with junk signatures), published
// from four goroutines through the embedded broker, with signed pings in
// the middle of it: on the device's own topic by the operator whose key id
// the junk copies, and on the fleet topic by another operator. Both are
// answered, within a bound; the refusals answered stay within the topic's
// budget; the intake stays within its caps; command.flood sums up the
// rest, by reason.
func TestIntakeFlood(t *testing.T) {
	e := newEnv(t, brokertest.KindMochi)
	in := e.broker.(brokertest.Inline)
	// The junk goes out at QoS 0 from the broker's inline client: at QoS 1
	// the broker would hold at most its in-flight store (8192) for the
	// device and drop the rest, pings included, before any reached the
	// device. The broker must drop nothing (checked at the end), so the
	// device sees every message.
	srv := e.broker.(interface{ Server() *mqtt.Server }).Server()
	const dev = "flood-1"
	topics := contract.TopicsFor(dev, "tachileik")
	other := policytest.Key(t) // a second operator, whose key id the junk does not copy
	opt := e.options(t, dev, t.TempDir())
	opt.Operators = dsse.NewKeyring(e.opKey.Public().(ed25519.PublicKey), other.Public().(ed25519.PublicKey))
	obs := e.observe(t, "console", contract.Prefix+dev+"/#")
	l := runLink(t, opt, nil)
	obs.waitFor(t, "online state", 10*time.Second, func(ms []msg) bool {
		for _, m := range ms {
			if m.Topic == topics.State && strings.Contains(string(m.Payload), `"online":true`) {
				return true
			}
		}
		return false
	})

	junk := floodJunk(t, e.opKey)
	var (
		published atomic.Int64
		half      = make(chan struct{})
		once      sync.Once
		wg        sync.WaitGroup
	)
	var heapPeak atomic.Uint64
	stopSampling := sampleHeap(&heapPeak)
	start := time.Now()
	const publishers = 4
	for p := range publishers {
		wg.Go(func() {
			for i := p; i < FloodJunk; i += publishers {
				if err := srv.Publish(contract.AllCmdTopic, junk[i%len(junk)], false, 0); err != nil {
					t.Errorf("publish junk: %v", err)
					return
				}
				if published.Add(1) == FloodJunk/2 {
					once.Do(func() { close(half) })
				}
			}
		})
	}
	<-half
	now := time.Now()
	pings := map[string]time.Time{}
	for _, p := range []struct {
		id, target string
		key        ed25519.PrivateKey
	}{{"ping-own-topic", dev, e.opKey}, {"ping-other-operator", "all", other}} {
		b, err := command.Sign(command.Payload{ID: p.id, Target: p.target, Issued: now, Expires: now.Add(time.Minute), Type: command.Ping}, p.key)
		if err != nil {
			t.Fatal(err)
		}
		pings[p.id] = time.Now()
		if err := in.Publish(contract.CmdTopicFor(p.target), b, false); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	floodTime := time.Since(start)

	answered := map[string]time.Duration{}
	obs.waitFor(t, "the pings' results", 20*time.Second, func(ms []msg) bool {
		for id, rs := range results(ms) {
			if sent, ok := pings[id]; ok && len(rs) > 0 {
				if !rs[0].OK {
					t.Fatalf("ping %s refused: %s %s", id, rs[0].Reason, rs[0].Error)
				}
				if _, seen := answered[id]; !seen {
					answered[id] = time.Since(sent) // an upper bound: polled every 50 ms at most
				}
			}
		}
		return len(answered) == len(pings)
	})
	for id, d := range answered {
		t.Logf("%s answered within %v", id, d.Round(time.Millisecond))
		// Behind half the flood in the broker's queue for the device: about
		// 0.6 s here, 4 to 6 s under the race detector.
		if d > 15*time.Second {
			t.Errorf("%s answered after %v", id, d)
		}
	}

	// Every junk message is counted once, refused or dropped, in the
	// command.flood of the interval the device read it in (an interval
	// whose refusals all had their answers has none: count those
	// answers). Summaries come at the link's FloodEvery ticks; under the
	// race detector the device reads the flood over two intervals.
	var (
		refusals, refusedEvents int
		counted, dropped        uint64
	)
	tally := func(ms []msg) {
		refusals, refusedEvents, counted, dropped = 0, 0, 0, 0
		for _, rs := range results(ms) {
			for _, r := range rs {
				if !r.OK {
					refusals++
				}
			}
		}
		for _, ev := range events(ms, dev) {
			if ev.Type == report.CommandRefused {
				refusedEvents++
			}
		}
		for _, f := range floods(ms, dev) {
			for _, n := range f["refused"].(map[string]any) {
				counted += uint64(n.(float64))
			}
			dropped += uint64(f["dropped"].(float64))
		}
	}
	ms := obs.waitFor(t, "command.flood events for the whole flood", 2*mqttlink.FloodEvery+5*time.Second, func(ms []msg) bool {
		tally(ms)
		return len(floods(ms, dev)) > 0 && counted+dropped+uint64(refusals) >= FloodJunk
	})
	stopSampling()
	elapsed := time.Since(start)
	tally(ms)

	// One topic took junk: its budget over the time since the flood began.
	budget := mqttlink.RefusalBurst + mqttlink.RefusalsPerSecond*int(elapsed.Seconds()+1)
	t.Logf("%d junk published in %v; %d refusal results, %d command.refused events in %v (budget %d)",
		FloodJunk, floodTime.Round(time.Millisecond), refusals, refusedEvents, elapsed.Round(time.Millisecond), budget)
	if refusals > budget || refusedEvents > budget {
		t.Errorf("%d refusal results and %d refusal events, over the budget of %d", refusals, refusedEvents, budget)
	}
	if refusals == 0 {
		t.Error("no junk was answered: the first refusals should be")
	}

	if info := srv.Info.Clone(); info.MessagesDropped != 0 || info.InflightDropped != 0 {
		t.Errorf("the broker dropped %d messages (%d in flight): the device did not see the whole flood", info.MessagesDropped, info.InflightDropped)
	}
	for _, f := range floods(ms, dev) {
		t.Logf("command.flood: %v", f)
		if f["topic"] != contract.AllCmdTopic {
			t.Errorf("command.flood for %v: only the fleet topic was flooded", f["topic"])
		}
		// The caps, beyond which each lane takes its first message: three
		// lanes (fleet topic with either key, the device's topic).
		if p := f["queued_peak"].(float64); p > mqttlink.IntakeMessages+3 {
			t.Errorf("queued_peak %v: over the intake's cap", p)
		}
		if p := f["queued_peak_bytes"].(float64); p > mqttlink.IntakeBytes+3*command.MaxMessage {
			t.Errorf("queued_peak_bytes %v: over the intake's cap", p)
		}
	}
	for _, r := range []string{"too-large", "malformed", "untrusted-key", "bad-signature"} {
		found := false
		for _, f := range floods(ms, dev) {
			if _, ok := f["refused"].(map[string]any)[r]; ok {
				found = true
			}
		}
		if !found {
			t.Errorf("no command.flood counted %s refusals", r)
		}
	}
	t.Logf("counted in command.flood: %d refused, %d dropped; heap peak %d MiB; disk queue %+v",
		counted, dropped, heapPeak.Load()>>20, l.QueueStats())
	if counted+dropped > FloodJunk {
		t.Errorf("%d refused and %d dropped counted: more than the %d published", counted, dropped, FloodJunk)
	}
	if q := l.QueueStats(); q.Depth > int64(2*budget+100) {
		t.Errorf("outgoing queue %d deep after the flood", q.Depth)
	}
}

// floodJunk is the flood's mix, one message in fifty over the size limit.
func floodJunk(t *testing.T, op ed25519.PrivateKey) [][]byte {
	stranger := policytest.Key(t)
	opID := dsse.KeyID(op.Public().(ed25519.PublicKey))
	junkSig := base64.StdEncoding.EncodeToString(make([]byte, ed25519.SignatureSize))
	now := time.Now()
	var out [][]byte
	for i := range 50 {
		p := command.Payload{ID: "junk-" + strconv.Itoa(i), Target: "all", Issued: now, Expires: now.Add(time.Minute), Type: command.Ping}
		var b []byte
		switch i % 4 {
		case 0:
			b = []byte("reboot now " + strconv.Itoa(i))
		case 1:
			b = []byte(strings.Repeat(`{"a":`, command.MaxDepth+i) + "1" + strings.Repeat("}", command.MaxDepth+i))
		case 2:
			var err error
			if b, err = command.Sign(p, stranger); err != nil {
				t.Fatal(err)
			}
		case 3:
			body, _ := json.Marshal(p)
			b = []byte(`{"payloadType":"` + command.PayloadType + `","payload":"` + base64.StdEncoding.EncodeToString(body) +
				`","signatures":[{"keyid":"` + opID + `","sig":"` + junkSig + `"}]}`)
		}
		out = append(out, b)
	}
	out[49] = []byte(strings.Repeat("x", command.MaxMessage+1))
	return out
}

// floods returns the fields of the device's command.flood events.
func floods(ms []msg, dev string) []map[string]any {
	var out []map[string]any
	for _, ev := range events(ms, dev) {
		if ev.Type == mqttlink.CommandFlood {
			out = append(out, ev.Fields)
		}
	}
	return out
}

// sampleHeap records the heap's peak until stopped.
func sampleHeap(peak *atomic.Uint64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > peak.Load() {
				peak.Store(m.HeapAlloc)
			}
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
