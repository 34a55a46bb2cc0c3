package console

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy/dsse"
)

// TestActionSignedKeyNeverServed: an action posted to the HTTP API goes out
// as a command signed by the operator key that a device's verifier accepts,
// while nothing the console serves (page, assets, state, events, the
// action's answer) carries the private key in any usual encoding.
func TestActionSignedKeyNeverServed(t *testing.T) {
	pki := brokertest.NewPKI(t)
	br := brokertest.Start(t, brokertest.KindMochi, pki)
	keyPath, pubPath, err := dsse.GenerateKeyFiles(t.TempDir(), "operator")
	if err != nil {
		t.Fatal(err)
	}
	op, err := dsse.LoadPrivateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := dsse.LoadKeyring(pubPath)
	if err != nil {
		t.Fatal(err)
	}

	// A device-side listener on r1's command topic.
	got := make(chan []byte, 4)
	o, err := contract.BrokerOptions(br.URL(), pki.CA, "", "")
	if err != nil {
		t.Fatal(err)
	}
	o.SetTLSConfig(pki.ClientTLS(t, "r1"))
	o.SetClientID("r1-listener")
	dev := paho.NewClient(o)
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("listener connect: %v", tok.Error())
	}
	defer dev.Disconnect(100)
	if tok := dev.Subscribe(contract.CmdTopicFor("r1"), 1, func(_ paho.Client, m paho.Message) { got <- m.Payload() }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}

	cert, key := pki.Client(t, "console")
	c, err := New(Options{Broker: br.URL(), TLS: TLSFiles{CA: pki.CA, Cert: cert, Key: key}, Operator: op, OperatorName: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for up, _ := c.Connected(); !up; up, _ = c.Connected() {
		if time.Now().After(deadline) {
			t.Fatal("console did not connect")
		}
		time.Sleep(20 * time.Millisecond)
	}

	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	var served bytes.Buffer
	get := func(path string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		io.Copy(&served, resp.Body)
	}
	post := func(body string, header bool) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/action", strings.NewReader(body))
		if header {
			req.Header.Set(actionHeader, "1")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(&served, resp.Body)
		resp.Body.Close()
		return resp
	}
	// Without the console's header (a cross-site form post) nothing is sent.
	if resp := post(`{"action":"rebirth","target":"r1"}`, false); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("action without header: %d", resp.StatusCode)
	}
	if resp := post(`{"action":"throttle.set","target":"r1","feed":"feed-1","cap_kw":20}`, true); resp.StatusCode != http.StatusOK {
		t.Fatalf("throttle.set: %d %s", resp.StatusCode, served.String())
	}
	var msg []byte
	select {
	case msg = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no command published")
	}
	select {
	case extra := <-got:
		t.Fatalf("a second command was published: %s", extra)
	case <-time.After(200 * time.Millisecond):
	}
	seen, err := command.OpenSeen(filepath.Join(t.TempDir(), "seen.json"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	v := &command.Verifier{Keys: ring, Device: "r1", Seen: seen, Now: time.Now}
	_, cmd, err := v.Verify(msg)
	if err != nil {
		t.Fatalf("device refuses the console's command: %v", err)
	}
	var args struct {
		Feed  string  `json:"feed"`
		CapKW float64 `json:"cap_kw"`
	}
	if cmd.Type != "throttle.set" || json.Unmarshal(cmd.Args, &args) != nil || args.Feed != "feed-1" || args.CapKW != 20 {
		t.Fatalf("command %+v args %s", cmd, cmd.Args)
	}

	for _, p := range []string{"/", "/static/app.js", "/static/app.css", "/api/state", "/api/events"} {
		get(p)
	}
	seed := op.Seed()
	for name, enc := range map[string]string{
		"hex seed": hex.EncodeToString(seed), "base64 seed": base64.StdEncoding.EncodeToString(seed),
		"base64 key": base64.StdEncoding.EncodeToString(op), "hex key": hex.EncodeToString(op),
		"raw url base64 seed": base64.RawURLEncoding.EncodeToString(seed),
	} {
		if bytes.Contains(served.Bytes(), []byte(enc)) {
			t.Fatalf("the console served the operator's private key (%s)", name)
		}
	}
	if !bytes.Contains(served.Bytes(), []byte("throttle.set")) {
		t.Fatal("the served state does not show the action: the check read nothing")
	}
}
