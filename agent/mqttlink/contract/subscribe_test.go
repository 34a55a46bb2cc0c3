package contract_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
)

func dial(t *testing.T, pki *brokertest.PKI, name, url string) paho.Client {
	t.Helper()
	cert, key := pki.Client(t, name)
	o, err := contract.BrokerOptions(url, pki.CA, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	cl := paho.NewClient(o.SetClientID(name).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
	if tok := cl.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("%s connect: %v", name, tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(0) })
	return cl
}

// TestSubscribeRetriesRefused: a broker that refuses one filter says so
// only in the SUBACK (0x80). Subscribe reports each refusal, asks again
// for that filter alone, and returns once it is granted; a message on it
// then arrives.
func TestSubscribeRetriesRefused(t *testing.T) {
	pki := brokertest.NewPKI(t)
	var asked atomic.Int32
	acl := func(client, topic string, write bool) bool {
		if !write && topic == "t/refused" {
			return asked.Add(1) > 2
		}
		return true
	}
	b := brokertest.MochiACL(t, pki, acl)
	cl := dial(t, pki, "sub", b.URL())

	got := make(chan string, 4)
	var mu sync.Mutex
	var reports [][]string
	err := contract.Subscribe(t.Context(), cl, map[string]byte{"t/granted": 1, "t/refused": 1},
		func(_ paho.Client, m paho.Message) { got <- m.Topic() },
		contract.SubscribeOptions{Step: 5 * time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond,
			Refused: func(fs []string, attempt int, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Errorf("attempt %d: %v, want a refusal", attempt, err)
				}
				reports = append(reports, fs)
			}})
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	mu.Lock()
	if len(reports) != 2 || len(reports[0]) != 1 || reports[0][0] != "t/refused" || len(reports[1]) != 1 {
		t.Errorf("refusals reported %v, want [[t/refused] [t/refused]]", reports)
	}
	mu.Unlock()
	if n := asked.Load(); n != 3 {
		t.Errorf("t/refused asked for %d times, want 3", n)
	}

	pub := dial(t, pki, "pub", b.URL())
	for _, topic := range []string{"t/granted", "t/refused"} {
		if tok := pub.Publish(topic, 1, false, "x"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", topic, tok.Error())
		}
		select {
		case tp := <-got:
			if tp != topic {
				t.Errorf("heard %s, want %s", tp, topic)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("nothing heard on %s", topic)
		}
	}
}

// TestSubscribeEnds: a filter the broker never grants does not hold the
// caller forever: Subscribe ends with the context, and with
// ErrConnectionClosed once the connection is gone.
func TestSubscribeEnds(t *testing.T) {
	pki := brokertest.NewPKI(t)
	b := brokertest.MochiACL(t, pki, func(_, topic string, write bool) bool { return write || topic != "t/never" })
	cl := dial(t, pki, "sub", b.URL())
	subs := map[string]byte{"t/never": 1}
	opts := contract.SubscribeOptions{Step: time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := contract.Subscribe(ctx, cl, subs, nil, opts); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("with the context ended: %v, want %v", err, context.DeadlineExceeded)
	}

	done := make(chan error, 1)
	go func() { done <- contract.Subscribe(t.Context(), cl, subs, nil, opts) }()
	time.Sleep(100 * time.Millisecond)
	cl.Disconnect(0)
	select {
	case err := <-done:
		if !errors.Is(err, contract.ErrConnectionClosed) {
			t.Errorf("with the connection closed: %v, want %v", err, contract.ErrConnectionClosed)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Subscribe still asking 10 s after the connection closed")
	}
}

// TestRefused reads the failure codes of a SUBACK; a token of another
// kind refuses nothing.
func TestRefused(t *testing.T) {
	if r := contract.Refused(paho.NewClient(paho.NewClientOptions()).Publish("x", 0, false, ""), map[string]byte{"x": 1}); r != nil {
		t.Errorf("a publish token: %v", r)
	}
}
