package console

import (
	"context"
	"crypto/ed25519"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy/policytest"
)

// TestPersistentConsoleCatchesUp: what the fleet sends while a console is
// away (a restart, its broker node killed) reaches a persistent console
// when it is back, telemetry included; a console without a session never
// sees it. Real mosquitto, the single-host broker.
func TestPersistentConsoleCatchesUp(t *testing.T) {
	pki := brokertest.NewPKI(t)
	br := brokertest.Start(t, brokertest.KindMosquitto, pki)
	o, err := contract.BrokerOptions(br.URL(), pki.CA, "", "")
	if err != nil {
		t.Fatal(err)
	}
	o.SetTLSConfig(pki.ClientTLS(t, "r1"))
	o.SetClientID("r1")
	dev := paho.NewClient(o)
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	t.Cleanup(func() { dev.Disconnect(100) })
	publish := func(topic string, v any, retained bool) {
		t.Helper()
		if tok := dev.Publish(topic, 1, retained, mustJSON(t, v)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", topic, tok.Error())
		}
	}
	now := time.Now().UTC()
	publish(contract.Prefix+"r1/state", contract.State{Device: "r1", Site: "s1", Kind: "router", Online: true, BootID: "b", TS: now}, true)
	seq := uint64(0)
	telemetry := func() {
		seq++
		publish(contract.Prefix+"r1/telemetry", contract.Telemetry{Device: "r1", BootID: "b", Seq: seq, TS: now.Add(time.Duration(seq) * time.Second)}, false)
	}

	for _, persistent := range []bool{true, false} {
		name := map[bool]string{true: "persistent", false: "clean"}[persistent]
		t.Run(name, func(t *testing.T) {
			cert, key := pki.Client(t, "console")
			dir := t.TempDir()
			run := func() (*Console, func()) {
				c, err := New(Options{Broker: br.URL(), TLS: TLSFiles{CA: pki.CA, Cert: cert, Key: key},
					ClientID: "console-" + name, Persistent: persistent, Store: filepath.Join(dir, "console.db"),
					Trust: []ed25519.PublicKey{policytest.Key(t).Public().(ed25519.PublicKey)}})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); c.Run(ctx) }()
				return c, func() { cancel(); <-done; c.Close() }
			}
			waitFor := func(what string, cond func() bool) {
				t.Helper()
				for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("%s: not within 10 s", what)
					}
				}
			}
			c, stop := run()
			waitFor("r1's state", func() bool { d, ok := c.Device("r1"); return ok && d.Online })
			time.Sleep(300 * time.Millisecond) // every subscription granted
			telemetry()
			waitFor("the first telemetry", func() bool { return c.Telemetry().Received == 1 })
			stop()

			// Away: two telemetry messages and an event.
			telemetry()
			telemetry()
			ev := contract.Event{ID: "r1-away-" + name, Device: "r1", Seq: seq, BootID: "b", Severity: "notice", Type: "link.denied", TS: now, Prev: contract.Genesis}
			publish(contract.Prefix+"r1/events", ev, false)

			c, stop = run()
			defer stop()
			waitFor("r1's state after the restart", func() bool { _, ok := c.Device("r1"); return ok })
			if persistent {
				waitFor("the telemetry sent while away", func() bool { return c.Telemetry().Received == 2 })
				waitFor("the event sent while away", func() bool { return len(c.Events(EventFilter{Device: "r1"})) == 1 })
				return
			}
			time.Sleep(time.Second)
			if got, evs := c.Telemetry().Received, c.Events(EventFilter{Device: "r1"}); got != 0 || len(evs) != 0 {
				t.Fatalf("a console without a session got %d telemetry and %d events sent while it was away", got, len(evs))
			}
		})
	}
}
