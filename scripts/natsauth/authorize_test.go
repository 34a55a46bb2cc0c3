package natsauth_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/scripts/natsauth"
)

// TestAuthorize judges requests as the servers send them, with a fleet CA
// and an operator CA apart, as shipped: a certificate is an operator's only
// when the operator CA signed it and the configuration names it, so the
// fleet CA (on technicians' laptops) cannot mint an operator.
func TestAuthorize(t *testing.T) {
	fleet, ops := brokertest.NewPKI(t), brokertest.NewPKI(t)
	dir := t.TempDir()
	sites := filepath.Join(dir, "sites")
	os.WriteFile(sites, []byte("r1 s1\n"), 0o644)
	issuer, _ := nkeys.CreateAccount()
	az := &natsauth.Authorizer{Issuer: issuer, Account: "FLEET", FleetCA: readCert(t, fleet.CA), OperatorCA: readCert(t, ops.CA),
		Operators: map[string]jwt.Permissions{"console@ops": natsauth.Roles["console"]},
		Sites:     sites, CRL: fleet.CRL(t), MaxAge: time.Hour}
	req := func(p *brokertest.PKI, name, clientID string) *jwt.AuthorizationRequest {
		cert, _ := p.Client(t, name)
		leaf, _ := os.ReadFile(cert)
		ca, _ := os.ReadFile(p.CA)
		kp, _ := nkeys.CreateUser()
		pub, _ := kp.PublicKey()
		return &jwt.AuthorizationRequest{UserNkey: pub,
			ClientInformation: jwt.ClientInformation{Type: "mqtt", MQTT: clientID},
			TLS:               &jwt.ClientTLS{VerifiedChains: []jwt.StringList{{string(leaf), string(ca)}}}}
	}
	now := time.Now()
	for _, c := range []struct {
		name   string
		req    *jwt.AuthorizationRequest
		kind   string // admitted as, or "" for refused
		reason string
	}{
		{"device under its name", req(fleet, "r1", "r1"), "device", ""},
		{"device under another id", req(fleet, "r1", "r2"), "", "client id is its certificate's name"},
		{"operator", req(ops, "console@ops", "console@ops-2"), "operator", ""},
		{"operator under a device's id", req(ops, "console@ops", "r1"), "", "a device's"},
		{"operator name minted by the fleet CA", req(fleet, "console@ops", "console@ops"), "", "not in the fleet CA's site map"},
		{"device name from the operator CA", req(ops, "r1", "r1"), "", "neither a listed operator's nor a device's"},
		{"operator CA, not named", req(ops, "mallory@ops", "mallory@ops"), "", "neither a listed operator's nor a device's"},
		{"no certificate", &jwt.AuthorizationRequest{ClientInformation: jwt.ClientInformation{Type: "mqtt", MQTT: "r1"}}, "", "no verified client certificate"},
		{"not MQTT", &jwt.AuthorizationRequest{ClientInformation: jwt.ClientInformation{Type: "nats"}}, "", "not an MQTT connection"},
	} {
		d := az.Authorize(c.req, now)
		switch {
		case c.kind != "" && (d.Refused != "" || d.Kind != c.kind || d.User == nil):
			t.Errorf("%s: refused %q (kind %q), want admitted as %s", c.name, d.Refused, d.Kind, c.kind)
		case c.kind == "" && !strings.Contains(d.Refused, c.reason):
			t.Errorf("%s: decision %+v, want refused saying %q", c.name, d, c.reason)
		}
		if d.User != nil {
			if d.User.Audience != "FLEET" || d.User.Expires > now.Add(time.Hour).Unix() {
				t.Errorf("%s: user claims audience %q, expires %d", c.name, d.User.Audience, d.User.Expires)
			}
		}
	}

	// A device's rights are a device's, whatever it asks.
	d := az.Authorize(req(fleet, "r1", "r1"), now)
	pub, sub := d.User.Permissions.Pub.Allow, d.User.Permissions.Sub.Allow
	for _, s := range []string{"linkguard.v1.r1.events", "linkguard.v1.r1.state"} {
		if !pub.Contains(s) {
			t.Errorf("r1 may not publish %s", s)
		}
	}
	for _, s := range []string{"linkguard.v1.r2.events", "linkguard.v1.policy", "linkguard.v1.all.cmd", "linkguard.v1.r1.cmd", "linkguard.v1.>"} {
		if pub.Contains(s) {
			t.Errorf("r1 may publish %s", s)
		}
	}
	for _, s := range []string{"linkguard.v1.r1.cmd", "linkguard.v1.site.s1.cmd", "linkguard.v1.all.cmd", "linkguard.v1.policy"} {
		if !sub.Contains(s) {
			t.Errorf("r1 may not read %s", s)
		}
	}
	if sub.Contains("linkguard.v1.r2.cmd") || sub.Contains("linkguard.v1.>") {
		t.Errorf("r1 may read others' commands: %v", sub)
	}

	// The answer the server gets is signed by the issuer, for its request.
	rc := jwt.NewAuthorizationRequestClaims(req(fleet, "r1", "r1").UserNkey)
	rc.AuthorizationRequest = *req(fleet, "r1", "r2")
	rc.Server.ID = "NSERVER"
	srv, _ := nkeys.CreateServer()
	tok, err := rc.Encode(srv)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := az.Respond([]byte(tok), now)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := jwt.DecodeAuthorizationResponseClaims(string(out))
	if err != nil {
		t.Fatal(err)
	}
	ipub, _ := issuer.PublicKey()
	if resp.Issuer != ipub || resp.Audience != "NSERVER" || resp.Jwt != "" || !strings.Contains(resp.Error, "client id") {
		t.Errorf("response %+v", resp)
	}
	if _, _, err := az.Respond([]byte("not a jwt"), now); err == nil {
		t.Error("a malformed request was answered")
	}
}

// FuzzRespond: whatever a request token holds, Respond neither panics nor
// admits a client without a verified certificate chain of the fleet.
func FuzzRespond(f *testing.F) {
	fleet := brokertest.NewPKI(f)
	dir := f.TempDir()
	sites := filepath.Join(dir, "sites")
	os.WriteFile(sites, []byte("r1 s1\n"), 0o644)
	issuer, _ := nkeys.CreateAccount()
	az := &natsauth.Authorizer{Issuer: issuer, Account: "FLEET", FleetCA: readCert(f, fleet.CA), Sites: sites, CRL: fleet.CRL(f)}
	srv, _ := nkeys.CreateServer()
	user, _ := nkeys.CreateUser()
	upub, _ := user.PublicKey()
	rc := jwt.NewAuthorizationRequestClaims(upub)
	rc.ClientInformation = jwt.ClientInformation{Type: "mqtt", MQTT: "r1"}
	rc.TLS = &jwt.ClientTLS{VerifiedChains: []jwt.StringList{{"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}}}
	tok, _ := rc.Encode(srv)
	f.Add([]byte(tok))
	f.Add([]byte("eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.AAAA"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, d, err := az.Respond(b, time.Now())
		if err != nil {
			return
		}
		if d.User != nil {
			t.Fatalf("admitted %+v from a fuzzed request", d)
		}
		if _, err := jwt.DecodeAuthorizationResponseClaims(string(out)); err != nil {
			t.Fatalf("answer does not decode: %v", err)
		}
	})
}
