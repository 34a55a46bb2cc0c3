package console

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/policytest"
	"linkguard.dev/linkguard/policy/roster"
	"linkguard.dev/linkguard/policy/roster/rostertest"
)

// fixture is a console on a real broker, with a committee of three (two
// signatures needed), grid operators, a technician and a viewer in a
// roster signed by the two anchor keys the devices were provisioned with.
type fixture struct {
	t       *testing.T
	br      brokertest.Broker
	pki     *brokertest.PKI
	anchors []ed25519.PrivateKey
	m       map[string]rostertest.Member
	dir     string
	c       *Console
	srv     *httptest.Server
	pub     paho.Client
	mu      sync.Mutex
	got     map[string][][]byte // topic → messages seen by a device-side listener
	now     time.Time           // zero: the real clock
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.now.IsZero() {
		return time.Now()
	}
	return f.now
}

func examplePolicy(t *testing.T) []byte {
	t.Helper()
	doc, err := os.ReadFile("../../policy/testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, pki: brokertest.NewPKI(t), dir: t.TempDir(), got: map[string][][]byte{}, m: map[string]rostertest.Member{}}
	f.br = brokertest.Start(t, brokertest.KindMochi, f.pki)
	f.anchors = []ed25519.PrivateKey{policytest.Key(t), policytest.Key(t)}
	var members []rostertest.Member
	for _, m := range []struct {
		id    string
		roles []roster.Role
	}{{"alice", []roster.Role{roster.Committee}}, {"bob", []roster.Role{roster.Committee}}, {"carol", []roster.Role{roster.Committee}},
		{"gina", []roster.Role{roster.Grid}}, {"gus", []roster.Role{roster.Grid}}, {"tess", []roster.Role{roster.Technician}},
		{"vic", []roster.Role{roster.Viewer}}} {
		mem := rostertest.NewMember(t, m.id, m.roles...)
		f.m[m.id] = mem
		members = append(members, mem)
	}
	ros := rostertest.Sign(t, rostertest.YAML(rostertest.Spec{Serial: 3, Issued: time.Now().Add(-time.Hour),
		Thresholds: map[roster.Class]int{roster.ClassCommittee: 2}, Members: members}), f.anchors...)
	rosterFile := filepath.Join(f.dir, "roster.signed.json")
	if err := os.WriteFile(rosterFile, ros, 0o600); err != nil {
		t.Fatal(err)
	}

	// A device-side client: publishes the fleet policy, listens to what
	// the console relays.
	o, err := contract.BrokerOptions(f.br.URL(), f.pki.CA, "", "")
	if err != nil {
		t.Fatal(err)
	}
	o.SetTLSConfig(f.pki.ClientTLS(t, "r1"))
	o.SetClientID("r1-listener")
	f.pub = paho.NewClient(o)
	if tok := f.pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("listener connect: %v", tok.Error())
	}
	t.Cleanup(func() { f.pub.Disconnect(100) })
	if tok := f.pub.Subscribe(contract.Prefix+"#", 1, func(_ paho.Client, m paho.Message) {
		f.mu.Lock()
		f.got[m.Topic()] = append(f.got[m.Topic()], m.Payload())
		f.mu.Unlock()
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	f.publish(contract.PolicyTopic, policytest.Sign(t, examplePolicy(t), f.anchors...))
	f.start(rosterFile)
	return f
}

func (f *fixture) publish(topic string, payload []byte) {
	f.t.Helper()
	if tok := f.pub.Publish(topic, 1, true, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		f.t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// start runs a console on the fixture's state directory.
func (f *fixture) start(rosterFile string) {
	t := f.t
	cert, key := f.pki.Client(t, "console")
	var trust []ed25519.PublicKey
	for _, a := range f.anchors {
		trust = append(trust, a.Public().(ed25519.PublicKey))
	}
	c, err := New(Options{Broker: f.br.URL(), TLS: TLSFiles{CA: f.pki.CA, Cert: cert, Key: key}, Trust: trust, Threshold: 2,
		RosterFile: rosterFile, StateDir: filepath.Join(f.dir, "state"), Now: f.clock, SessionTTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	f.c = c
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.wg.Add(1)
	go func() { defer f.wg.Done(); c.Run(ctx) }()
	f.srv = httptest.NewServer(c.Handler())
	c.SetListener(strings.TrimPrefix(f.srv.URL, "http://"))
	t.Cleanup(f.stop)
	f.waitFor("console connected with the fleet policy", func() bool {
		up, _ := c.Connected()
		_, ok := c.Policy()
		return up && ok
	})
}

func (f *fixture) stop() {
	if f.cancel == nil {
		return
	}
	f.srv.Close()
	f.cancel()
	f.wg.Wait()
	f.c.Close()
	f.cancel = nil
}

func (f *fixture) waitFor(what string, cond func() bool) {
	f.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: not within 10s", what)
		}
	}
}

func (f *fixture) messages(topic string) [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.got[topic]...)
}

// client is the named member at the console, logged in.
func (f *fixture) client(id string) *Client {
	f.t.Helper()
	cl := &Client{URL: f.srv.URL, Key: f.m[id].Key}
	if _, err := cl.Login(context.Background()); err != nil {
		f.t.Fatalf("%s login: %v", id, err)
	}
	return cl
}

func status(err error) int {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Status
	}
	return 0
}

// TestProposalNeedsTwoCommitteeMembers: a revoke proposed by one member is
// not published on their signature alone; a second member's signature,
// made apart with lgctl policy cosign and uploaded, publishes it; the
// published policy verifies against the anchors and roster committee with
// threshold 2, has the next serial of the verified policy, a fresh issue
// time and the configured validity, and no longer holds the approval.
func TestProposalNeedsTwoCommitteeMembers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	alice, bob := f.client("alice"), f.client("bob")
	if _, err := alice.Propose(ctx, Proposal{Action: "revoke", Approval: "LA-2026-0017"}); status(err) != http.StatusBadRequest {
		t.Fatalf("a proposal without a reason: %v", err)
	}
	p, err := alice.Propose(ctx, Proposal{Action: "revoke", Approval: "LA-2026-0017", Reason: "call-centre traffic, case 118"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Serial != 43 || p.BaseSerial != 42 || p.Needed != 2 || len(p.Signatures) != 0 {
		t.Fatalf("proposal %+v", p)
	}
	if _, err := alice.Sign(ctx, p.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Sign(ctx, p.ID, nil); status(err) != http.StatusBadRequest {
		t.Fatalf("alice signing twice: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(f.messages(contract.PolicyTopic)); n != 1 {
		t.Fatalf("published on one signature: %d policies on the topic", n)
	}
	// Bob co-signs offline, as lgctl policy cosign does, and uploads.
	env, err := bob.Envelope(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	cosigned, err := dsse.Cosign(env, f.m["bob"].Key, dsse.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	done, err := bob.Upload(ctx, p.ID, cosigned)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != "published" {
		t.Fatalf("after two signatures: %+v", done)
	}
	f.waitFor("policy published", func() bool { return len(f.messages(contract.PolicyTopic)) == 2 })
	pub := f.messages(contract.PolicyTopic)[1]
	ring := dsse.NewKeyring(f.m["alice"].Public(), f.m["bob"].Public(), f.m["carol"].Public())
	v, err := ring.Verify(pub, policy.PayloadType, 2)
	if err != nil {
		t.Fatalf("the published policy does not verify k=2: %v", err)
	}
	np, err := policy.Parse(v.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if np.Serial != 43 || time.Since(np.Issued) > 5*time.Minute || np.Expires.Sub(np.Issued) != 30*24*time.Hour {
		t.Fatalf("serial %d issued %v expires %v", np.Serial, np.Issued, np.Expires)
	}
	for _, a := range np.Approvals {
		if a.ID == "LA-2026-0017" {
			t.Fatal("the revoked approval is still in the published policy")
		}
	}
	f.waitFor("console shows serial 43", func() bool { pv, _ := f.c.Policy(); return pv.Serial == 43 && pv.Verified })
	// Carol cannot sign what is already published.
	if _, err := f.client("carol").Sign(ctx, p.ID, nil); status(err) != http.StatusBadRequest {
		t.Fatalf("signing a published proposal: %v", err)
	}
}

// TestRolesAtTheConsole: a viewer sees but cannot propose or command; a
// technician cannot throttle; a grid operator's throttle is relayed as a
// command a device's verifier (with the same roster) accepts; a key
// outside the roster cannot log in.
func TestRolesAtTheConsole(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	vic := f.client("vic")
	if _, err := vic.Propose(ctx, Proposal{Action: "revoke", Approval: "LA-2026-0017", Reason: "viewer tries"}); status(err) != http.StatusForbidden {
		t.Fatalf("viewer proposal: %v", err)
	}
	if _, err := vic.Command(ctx, "r1", "rebirth", nil, "", 0); status(err) != http.StatusForbidden {
		t.Fatalf("viewer command: %v", err)
	}
	if _, err := f.client("tess").Command(ctx, "r1", "throttle.set", map[string]any{"feed": "feed-1", "cap_kw": 20}, "", 0); status(err) != http.StatusForbidden {
		t.Fatalf("technician throttle: %v", err)
	}
	if _, err := f.client("gina").Command(ctx, "r1", "throttle.set", map[string]any{"feed": "feed-1", "cap_kw": 20}, "evening peak", 0); err != nil {
		t.Fatal(err)
	}
	f.waitFor("command relayed", func() bool { return len(f.messages(contract.CmdTopicFor("r1"))) == 1 })
	seen, err := command.OpenSeen(filepath.Join(t.TempDir(), "seen.json"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	v := &command.Verifier{Roster: f.c.trust.roster, Device: "r1", Seen: seen}
	if _, cmd, err := v.Verify(f.messages(contract.CmdTopicFor("r1"))[0]); err != nil || cmd.Type != "throttle.set" || cmd.Signers[0] != "gina" {
		t.Fatalf("device verdict on the relayed command: %v %+v", err, cmd)
	}
	stranger := &Client{URL: f.srv.URL, Key: policytest.Key(t)}
	if _, err := stranger.Login(ctx); status(err) != http.StatusForbidden {
		t.Fatalf("a key outside the roster logged in: %v", err)
	}
}

// TestRequestsAnAttackerSends: a foreign Host (DNS rebinding), a POST
// without the CSRF token or from another origin, a replayed login
// challenge, a forged login signature and an expired session are refused.
func TestRequestsAnAttackerSends(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	alice := f.client("alice")
	do := func(method, path, host, csrf, origin string, body string) int {
		req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
		if host != "" {
			req.Host = host
		}
		if csrf != "" {
			req.Header.Set(csrfHeader, csrf)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := alice.http().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	prop := `{"action":"revoke","approval":"LA-2026-0017","reason":"attacker"}`
	if code := do("GET", "/api/state", "evil.example:80", "", "", ""); code != http.StatusMisdirectedRequest {
		t.Fatalf("foreign Host on GET: %d", code)
	}
	if code := do("POST", "/api/proposals", "evil.example:80", alice.csrf, "", prop); code != http.StatusMisdirectedRequest {
		t.Fatalf("foreign Host on POST: %d", code)
	}
	if code := do("POST", "/api/proposals", "", "", "", prop); code != http.StatusForbidden {
		t.Fatalf("POST without CSRF token: %d", code)
	}
	if code := do("POST", "/api/proposals", "", "wrong", "", prop); code != http.StatusForbidden {
		t.Fatalf("POST with a wrong CSRF token: %d", code)
	}
	if code := do("POST", "/api/proposals", "", alice.csrf, "http://evil.example", prop); code != http.StatusForbidden {
		t.Fatalf("POST from another origin: %d", code)
	}
	if code := do("GET", "/api/state", "", "", "", ""); code != http.StatusOK {
		t.Fatalf("alice's own GET: %d", code)
	}
	// Without a cookie nothing of the fleet is shown.
	resp, err := http.Get(f.srv.URL + "/api/state")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("state without a session: %d", resp.StatusCode)
	}

	// A login signature replayed with the same nonce, or over another host.
	u, _ := url.Parse(f.srv.URL)
	var ch struct{ Nonce string }
	if err := alice.do(ctx, "GET", "/api/login/challenge", nil, &ch); err != nil {
		t.Fatal(err)
	}
	key := f.m["bob"].Key
	good := LoginRequest{PublicKey: roster.FormatKey(f.m["bob"].Public()), Nonce: ch.Nonce,
		Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(key, LoginMessage("evil.example:80", ch.Nonce)))}
	if err := alice.do(ctx, "POST", "/api/login", good, nil); status(err) != http.StatusForbidden {
		t.Fatalf("a login signed for another host: %v", err)
	}
	good.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, LoginMessage(u.Host, ch.Nonce)))
	if err := alice.do(ctx, "POST", "/api/login", good, nil); status(err) != http.StatusForbidden {
		t.Fatalf("a login with a used nonce: %v", err)
	}

	// Under TLS the session cookie is Secure as well as HttpOnly and
	// SameSite=Strict.
	f.c.opt.Secure = true
	if err := alice.do(ctx, "GET", "/api/login/challenge", nil, &ch); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"public_key":%q,"nonce":%q,"signature":%q}`, roster.FormatKey(f.m["carol"].Public()), ch.Nonce,
		base64.StdEncoding.EncodeToString(ed25519.Sign(f.m["carol"].Key, LoginMessage(u.Host, ch.Nonce))))
	req, _ := http.NewRequest("POST", f.srv.URL+"/api/login", strings.NewReader(body))
	req.Header.Set("Origin", "https://"+u.Host)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ck := resp.Cookies()
	if resp.StatusCode != http.StatusOK || len(ck) != 1 || !ck[0].Secure || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode || ck[0].MaxAge != 600 {
		t.Fatalf("login under TLS: %d %+v", resp.StatusCode, ck)
	}
	f.c.opt.Secure = false

	// The session expires.
	f.mu.Lock()
	f.now = time.Now().Add(11 * time.Minute)
	f.mu.Unlock()
	if _, err := alice.Propose(ctx, Proposal{Action: "revoke", Approval: "LA-2026-0017", Reason: "too late"}); status(err) != http.StatusUnauthorized {
		t.Fatalf("proposal on an expired session: %v", err)
	}
}

// TestUnverifiedFleetPolicyNeverBuiltOn: a device certificate publishes an
// unsigned retained policy with a catch-all approval; the console shows it
// unverified and refuses to build a proposal on it. A forged device state
// claiming serial 2⁶⁴−2 does not move the next serial.
func TestUnverifiedFleetPolicyNeverBuiltOn(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.c.Ingest(contract.Prefix+"r9/state", mustJSON(t, contract.State{Device: "r9", Online: true, TS: time.Now(),
		Policy: &contract.PolicyState{Serial: 1<<64 - 2}}))
	p, err := f.client("alice").Propose(ctx, Proposal{Action: "revoke", Approval: "LA-2026-0018", Reason: "serial check"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Serial != 43 {
		t.Fatalf("next serial %d, want 43 (from the verified policy only)", p.Serial)
	}
	doc := bytes.Replace(examplePolicy(t), []byte("serial: 42"), []byte("serial: 900"), 1)
	doc = append(doc, []byte("  - id: CATCH-ALL\n    holder: attacker\n    remote: [0.0.0.0/0, ::/0]\n")...)
	unsigned, err := dsse.Sign(policy.PayloadType, doc) // no signature
	if err != nil {
		unsigned = []byte(`{"payloadType":"` + policy.PayloadType + `","payload":"` + base64.StdEncoding.EncodeToString(doc) + `","signatures":[]}`)
	}
	f.publish(contract.PolicyTopic, unsigned)
	f.waitFor("unverified policy shown", func() bool { pv, ok := f.c.Policy(); return ok && !pv.Verified && pv.Problem != "" })
	if _, err := f.client("bob").Propose(ctx, Proposal{Action: "revoke", Approval: "LA-2026-0017", Reason: "harmless"}); status(err) != http.StatusBadRequest ||
		!strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("a proposal on the unverified policy: %v", err)
	}
	// The earlier proposal, built on the verified serial 42, is still good:
	// signed by two, it replaces the unsigned one on the broker, and the
	// catch-all is in no signed policy.
	f.client("alice").Sign(ctx, p.ID, nil)
	if _, err := f.client("bob").Sign(ctx, p.ID, nil); err != nil {
		t.Fatal(err)
	}
	f.waitFor("signed policy published", func() bool { return len(f.messages(contract.PolicyTopic)) == 3 })
	ring := dsse.NewKeyring(f.m["alice"].Public(), f.m["bob"].Public())
	signed := 0
	for _, m := range f.messages(contract.PolicyTopic) {
		v, err := ring.Verify(m, policy.PayloadType, 2)
		if err != nil {
			continue
		}
		signed++
		if bytes.Contains(v.Payload, []byte("CATCH-ALL")) {
			t.Fatal("the catch-all reached a signed policy")
		}
	}
	if signed != 1 {
		t.Fatalf("%d policies signed by the members, want 1", signed)
	}
	f.waitFor("verified serial 43 shown", func() bool { pv, _ := f.c.Policy(); return pv.Verified && pv.Serial == 43 })
}

// TestAuditSurvivesRestart: logins, the proposal, each signature and the
// publication are in the store with the operators and the signed bytes,
// and still there after the console restarts; a pending proposal too.
func TestAuditSurvivesRestart(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	alice := f.client("alice")
	p, err := alice.Propose(ctx, Proposal{Action: "revoke", Approval: "LA-2026-0018", Reason: "audit check"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Sign(ctx, p.ID, nil); err != nil {
		t.Fatal(err)
	}
	f.stop()
	f.start("")
	bob := f.client("bob")
	if _, err := bob.Sign(ctx, p.ID, nil); err != nil {
		t.Fatalf("the pending proposal did not survive the restart: %v", err)
	}
	recs, err := bob.Audit(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, r := range recs {
		kinds = append(kinds, r.Kind+":"+r.Operator)
		if len(r.Signed) == 0 {
			t.Errorf("audit %s carries no signed bytes", r.Kind)
		}
	}
	if got := strings.Join(kinds, " "); got != "proposal:alice signature:alice signature:bob publish:alice" {
		t.Fatalf("audit of %s: %s", p.ID, got)
	}
	all, _ := bob.Audit(ctx, "")
	logins := 0
	for _, r := range all {
		if r.Kind == "login" {
			logins++
		}
	}
	if logins != 2 {
		t.Fatalf("%d logins in the audit, want 2", logins)
	}
	var csv []byte
	if err := bob.do(ctx, "GET", "/api/audit?format=csv", nil, &csv); err != nil || !bytes.Contains(csv, []byte("publish,alice")) {
		t.Fatalf("CSV export: %v\n%s", err, csv)
	}
	// The published action, with its signers, survives a restart too.
	f.stop()
	f.start("")
	acts := f.c.Actions()
	if len(acts) != 1 || acts[0].ID != p.ID || acts[0].Kind != "revoke" || acts[0].Serial != 43 || strings.Join(acts[0].By, ",") != "alice,bob" {
		t.Fatalf("actions after a restart: %+v", acts)
	}
}

// TestConsoleHoldsNoPrivateKey: nothing in the console's options can hold
// a private key, its state directory holds none of the members' keys, and
// nothing it serves does.
func TestConsoleHoldsNoPrivateKey(t *testing.T) {
	var walk func(reflect.Type, string)
	priv := reflect.TypeOf(ed25519.PrivateKey(nil))
	walk = func(ty reflect.Type, path string) {
		if ty == priv {
			t.Errorf("console option %s holds a private key", path)
		}
		switch ty.Kind() {
		case reflect.Struct:
			for i := range ty.NumField() {
				walk(ty.Field(i).Type, path+"."+ty.Field(i).Name)
			}
		case reflect.Pointer, reflect.Slice:
			walk(ty.Elem(), path+"[]")
		}
	}
	walk(reflect.TypeOf(Options{}), "Options")

	f := newFixture(t)
	cl := f.client("alice")
	var served []byte
	for _, p := range []string{"/", "/static/app.js", "/api/state", "/api/pending", "/api/audit"} {
		var b []byte
		if err := cl.do(context.Background(), "GET", p, nil, &b); err != nil {
			t.Fatal(err)
		}
		served = append(served, b...)
	}
	var stored []byte
	filepath.Walk(filepath.Join(f.dir, "state"), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			stored = append(stored, b...)
		}
		return nil
	})
	if len(stored) == 0 {
		t.Fatal("the console stored nothing: the check read nothing")
	}
	for id, m := range f.m {
		seed := m.Key.Seed()
		for _, enc := range []string{hex.EncodeToString(seed), base64.StdEncoding.EncodeToString(seed), base64.StdEncoding.EncodeToString(m.Key)} {
			if bytes.Contains(served, []byte(enc)) || bytes.Contains(stored, []byte(enc)) {
				t.Fatalf("%s's private key is in what the console serves or stores", id)
			}
		}
	}
}

// TestConsoleFailsOverBetweenBrokers: with the first broker of its list
// down, the console connects to the next one and follows the fleet there.
func TestConsoleFailsOverBetweenBrokers(t *testing.T) {
	pki := brokertest.NewPKI(t)
	br := brokertest.Start(t, brokertest.KindMochi, pki)
	cert, key := pki.Client(t, "console")
	dead := br.URL()[:strings.LastIndex(br.URL(), ":")] + ":1" // nothing listens on port 1
	c, err := New(Options{Broker: dead, Brokers: []string{br.URL()}, TLS: TLSFiles{CA: pki.CA, Cert: cert, Key: key},
		Trust: []ed25519.PublicKey{policytest.Key(t).Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if up, _ := c.Connected(); up {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the console never reached the second broker (first %s)", dead)
		}
	}
}
