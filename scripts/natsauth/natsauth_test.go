package natsauth_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/scripts/natsauth"
)

// TestCalloutBindsIdentity runs a real 3-node NATS cluster whose MQTT
// clients are all judged by the callout service, and tries what a thief
// with one device's certificate tried against the static permission map:
// taking another device's client id (refused, and the holder keeps its
// session and its commands), publishing as another device, connecting
// while not in the fleet CA's site map, with a revoked certificate, or as
// an operator under a device's client id. A CRL written while the cluster
// runs refuses the next connection of the device it revokes.
func TestCalloutBindsIdentity(t *testing.T) {
	pki := brokertest.NewPKI(t)
	ca := readCert(t, pki.CA)
	dir := t.TempDir()
	sites := filepath.Join(dir, "sites")
	if err := os.WriteFile(sites, []byte("# test\nr1 s1\nr2 s2\nr4 s1\n!r5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Certificates first: a CRL revokes the latest issued to a name.
	tlsOf := map[string]string{}
	for _, n := range []string{"r1", "r2", "r3", "r4", "r5", "console", "stranger"} {
		cert, key := pki.Client(t, n)
		tlsOf[n] = cert + "\x00" + key
	}
	crl := pki.CRL(t, "r4")

	issuer, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := issuer.PublicKey()
	az := &natsauth.Authorizer{
		Issuer: issuer, Account: "FLEET", FleetCA: ca, OperatorCA: ca,
		Operators: map[string]jwt.Permissions{"console": natsauth.Roles["console"], brokertest.NATSProbe: natsauth.Roles["console"]},
		Sites:     sites, CRL: crl,
	}
	var mu sync.Mutex
	refused := map[string]string{} // certificate name/client id -> reason
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pw := make([]byte, 16)
	rand.Read(pw)
	callout := &brokertest.NATSCallout{Issuer: pub, User: "auth", Password: hex.EncodeToString(pw)}
	callout.Serve = func(urls []string) {
		err := natsauth.Start(ctx, natsauth.ServiceOptions{URLs: urls, User: callout.User, Password: callout.Password, Authorizer: az,
			OnDecision: func(d natsauth.Decision) {
				if d.Refused != "" {
					mu.Lock()
					refused[d.Name+"/"+d.ClientID] = d.Refused
					mu.Unlock()
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
	}
	c := brokertest.NATS(t, pki, brokertest.NATSOptions{Callout: callout})
	urls := c.URLs()

	dial := func(name, clientID, url string, lost *atomic.Int32) (paho.Client, error) {
		cert, key, _ := strings.Cut(tlsOf[name], "\x00")
		o, err := contract.BrokerOptions(url, pki.CA, cert, key)
		if err != nil {
			t.Fatal(err)
		}
		o.SetClientID(clientID).SetProtocolVersion(4).SetCleanSession(false).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second)
		o.SetConnectionLostHandler(func(paho.Client, error) {
			if lost != nil {
				lost.Add(1)
			}
		})
		cl := paho.NewClient(o)
		tok := cl.Connect()
		if !tok.WaitTimeout(20 * time.Second) {
			return nil, context.DeadlineExceeded
		}
		if tok.Error() != nil {
			return nil, tok.Error()
		}
		t.Cleanup(func() { cl.Disconnect(0) })
		return cl, nil
	}
	mustDial := func(name, clientID, url string, lost *atomic.Int32) paho.Client {
		t.Helper()
		cl, err := dial(name, clientID, url, lost)
		if err != nil {
			t.Fatalf("%s as %q: %v", name, clientID, err)
		}
		return cl
	}
	refusedBecause := func(name, clientID, url, reason string) {
		t.Helper()
		if _, err := dial(name, clientID, url, nil); err == nil {
			t.Errorf("%s connected with client id %q: the callout should refuse it", name, clientID)
			return
		}
		mu.Lock()
		got := refused[name+"/"+clientID]
		mu.Unlock()
		if !strings.Contains(got, reason) {
			t.Errorf("%s as %q: refused with %q, want it to say %q", name, clientID, got, reason)
		}
	}

	console := mustDial("console", "console-test", urls[2], nil)
	type msg struct{ topic, payload string }
	got := make(chan msg, 64)
	if tok := console.Subscribe("linkguard/v1/#", 1, func(_ paho.Client, m paho.Message) {
		got <- msg{m.Topic(), string(m.Payload())}
	}); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("console subscribe: %v", tok.Error())
	} else if st := tok.(*paho.SubscribeToken); st.Result()["linkguard/v1/#"] != 1 {
		t.Fatalf("console subscription to linkguard/v1/# refused (SUBACK %#x)", st.Result()["linkguard/v1/#"])
	}

	var r2Lost atomic.Int32
	r2 := mustDial("r2", "r2", urls[1], &r2Lost)
	cmds := make(chan string, 8)
	if tok := r2.Subscribe(contract.CmdTopicFor("r2"), 1, func(_ paho.Client, m paho.Message) { cmds <- string(m.Payload()) }); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("r2 subscribe: %v", tok.Error())
	}

	// The thief: r1's certificate under r2's client id, on every node.
	for _, u := range urls {
		refusedBecause("r1", "r2", u, "a device's client id is its certificate's name")
	}
	if n := r2Lost.Load(); n != 0 {
		t.Errorf("r2 lost its connection %d times to a thief's attempts", n)
	}
	if tok := console.Publish(contract.CmdTopicFor("r2"), 1, false, "for-r2"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("console publish: %v", tok.Error())
	}
	select {
	case p := <-cmds:
		if p != "for-r2" {
			t.Errorf("r2 got %q", p)
		}
	case <-time.After(15 * time.Second):
		t.Error("r2's command never reached it")
	}

	// r1 under its own name: admitted with a device's rights only.
	r1 := mustDial("r1", "r1", urls[0], nil)
	for _, p := range []struct{ topic, payload string }{
		{contract.TopicsFor("r2", "s2").Events, "r1-as-r2"},
		{contract.PolicyTopic, "r1-policy"},
		{contract.AllCmdTopic, "r1-all-cmd"},
		{contract.TopicsFor("r1", "s1").Events, "r1-own"},
	} {
		r1.Publish(p.topic, 1, false, p.payload).WaitTimeout(10 * time.Second)
	}
	deadline := time.After(15 * time.Second)
	for done := false; !done; {
		select {
		case m := <-got:
			if m.payload == "r1-own" {
				done = true
			} else if strings.HasPrefix(m.payload, "r1-") {
				t.Errorf("r1 published %q on %s: it should have been refused", m.payload, m.topic)
			}
		case <-deadline:
			t.Fatal("r1's own event never reached the console")
		}
	}
	if tok := r1.Subscribe(contract.CmdTopicFor("r2"), 1, nil); tok.WaitTimeout(10 * time.Second) {
		if st, ok := tok.(*paho.SubscribeToken); ok && st.Result()[contract.CmdTopicFor("r2")] != 0x80 {
			t.Errorf("r1 may read r2's commands (SUBACK %#x)", st.Result()[contract.CmdTopicFor("r2")])
		}
	}

	refusedBecause("r3", "r3", urls[0], "not in the fleet CA's site map")
	refusedBecause("r4", "r4", urls[1], "revoked (CRL)")
	refusedBecause("r5", "r5", urls[2], "revoked (site map)")
	refusedBecause("console", "r1", urls[0], "a device's")
	// One CA signs both kinds here, so a stranger is judged as a device.
	refusedBecause("stranger", "stranger", urls[0], "not in the fleet CA's site map")

	// Revoking r2 while it runs: its next connection is refused.
	time.Sleep(10 * time.Millisecond) // a new modification time for the CRL file
	pki.CRL(t, "r4", "r2")
	r2.Disconnect(0)
	refusedBecause("r2", "r2", urls[0], "revoked (CRL)")
}

func readCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: not PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
