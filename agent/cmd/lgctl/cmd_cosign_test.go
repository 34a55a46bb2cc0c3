package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/feeds"
	"linkguard.dev/linkguard/agent/mqttlink"
	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/firmware/update"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/roster"
)

// TestCommandSignedApart: two grid operators on their own machines sign
// one relay.set of a protected circuit with cmd sign then cmd cosign; cmd
// status judges it against the roster (exit 0 only once k grid operators
// signed); a device holding the roster takes the result.
func TestCommandSignedApart(t *testing.T) {
	chair := newMember(t, "chair")
	g1, g2, tech := newMember(t, "grid-1"), newMember(t, "grid-2"), newMember(t, "tech")
	roles := map[string]string{"chair": "committee", "grid-1": "grid", "grid-2": "grid", "tech": "technician"}
	yaml := filepath.Join(chair.dir, "roster.yaml")
	if err := os.WriteFile(yaml, []byte(rosterText(t, 1, "{protected: 2}", roles, chair, g1, g2, tech)), 0o644); err != nil {
		t.Fatal(err)
	}
	rosterEnv := filepath.Join(chair.dir, "roster.signed.json")
	if _, _, err := run("roster", "sign", "--key", chair.key, yaml, "-o", rosterEnv); err != nil {
		t.Fatal(err)
	}

	env := filepath.Join(g1.dir, "hospital-off.json")
	sign := []string{"cmd", "sign", "--key", g1.key, "--target", "dev-1", "-o", env,
		"relay.set", "feed=tachileik-1", "circuit=hospital", "state=off", "override=true", "reason=transformer fire"}
	if _, _, err := run(sign...); err != nil {
		t.Fatalf("cmd sign: %v", err)
	}
	if _, _, err := run(sign...); err == nil || !strings.Contains(err.Error(), "without --force") {
		t.Fatalf("cmd sign over an existing envelope: %v", err)
	}
	status := func(path string, extra ...string) (string, error) {
		args := append([]string{"cmd", "status", "--roster", rosterEnv, "--trust", chair.pub}, extra...)
		out, _, err := run(append(args, path)...)
		return out, err
	}
	out, err := status(env, "--protected")
	if !errors.Is(err, errSilent) || !strings.Contains(out, "protected needs 2 grid signature(s)") ||
		!strings.Contains(out, "missing:\n  grid-2") || !strings.Contains(out, "1 of 2 needed: NOT met") {
		t.Fatalf("status of a one-signature hospital command: %v\n%s", err, out)
	}
	if out, err := status(env); err != nil || !strings.Contains(out, "grid needs 1 grid") {
		t.Fatalf("status as an ordinary relay.set: %v\n%s", err, out)
	}

	// The technician's signature is added but does not count.
	if _, _, err := run("cmd", "cosign", "--key", tech.key, env); err != nil {
		t.Fatal(err)
	}
	if out, err := status(env, "--protected"); !errors.Is(err, errSilent) || !strings.Contains(out, "not counted: tech (technician) does not hold the role grid") {
		t.Fatalf("status with a technician's signature: %v\n%s", err, out)
	}
	g2env := hand(t, g2, env)
	if _, _, err := run("cmd", "cosign", "--key", g2.key, g2env); err != nil {
		t.Fatalf("cosign by grid-2: %v", err)
	}
	if _, _, err := run("cmd", "cosign", "--key", g2.key, g2env); err == nil || !strings.Contains(err.Error(), "already signed") {
		t.Fatalf("grid-2 cosigns again: %v", err)
	}
	if out, err := status(g2env, "--protected"); err != nil || !strings.Contains(out, "2 of 2 needed: met") {
		t.Fatalf("status with two grid signatures: %v\n%s", err, out)
	}

	// The device: the roster in force, the verifier, the protected class.
	anchors, _ := loadKeyFiles([]string{chair.pub})
	st, _ := roster.New(roster.Options{Anchors: anchors})
	rdata, _ := os.ReadFile(rosterEnv)
	if _, err := st.Apply(rdata, "file"); err != nil {
		t.Fatal(err)
	}
	seen, _ := command.OpenSeen("", time.Now())
	v := &command.Verifier{Roster: st, Device: "dev-1", Site: "s1", Seen: seen}
	data, _ := os.ReadFile(g2env)
	_, c, err := v.Verify(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Require(roster.ClassProtected); err != nil || strings.Join(c.SignedBy(roster.Grid), ",") != "grid-1,grid-2" {
		t.Fatalf("device: %v, grid signers %v", err, c.SignedBy(roster.Grid))
	}
}

func TestCommandCosignRefusals(t *testing.T) {
	g := newMember(t, "grid-1")
	key, _ := dsse.LoadPrivateKey(g.key)
	write := func(name string, p command.Payload) string {
		env, err := command.Sign(p, key)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(g.dir, name)
		os.WriteFile(path, env, 0o644)
		return path
	}
	past := time.Now().Add(-time.Hour)
	old := write("old.json", command.Payload{ID: "o", Target: "dev-1", Issued: past, Expires: past.Add(time.Minute), Type: command.Ping})
	other := newMember(t, "grid-2")
	if _, _, err := run("cmd", "cosign", "--key", other.key, old); err == nil || !strings.Contains(err.Error(), "expired at") {
		t.Fatalf("cosign of an expired command: %v", err)
	}
	if _, _, err := run("cmd", "send", "--broker", "mqtts://127.0.0.1:1", old); err == nil || !strings.Contains(err.Error(), "expired at") {
		t.Fatalf("send of an expired command: %v", err)
	}
	bad := filepath.Join(g.dir, "bad.json")
	env, _ := dsse.Sign(command.PayloadType, []byte(`{"id":"x","colour":"red"}`), key)
	os.WriteFile(bad, env, 0o644)
	if _, _, err := run("cmd", "cosign", "--key", other.key, bad); !errors.Is(err, command.ErrMalformed) {
		t.Fatalf("cosign of a malformed command: %v", err)
	}
	if _, _, err := run("cmd", "sign", "--key", g.key, "--target", "dev-1", "--valid", "48h", "-o", "-", "ping"); err == nil {
		t.Fatal("cmd sign accepted a 48h command")
	}
}

// TestCommandSend: an envelope signed apart is sent to a live device and
// its result printed. The device here still judges by its configured
// operator keys (no roster): each key counts as one operator.
func TestCommandSend(t *testing.T) {
	pki := brokertest.NewPKI(t)
	b := brokertest.Mochi(t, pki)
	o1, o2 := newMember(t, "ops-1"), newMember(t, "ops-2")
	ring, err := dsse.LoadKeyring(o1.pub, o2.pub)
	if err != nil {
		t.Fatal(err)
	}
	startDevice(t, pki, b, ring, "dev-1", "s1")
	cert, key := pki.Client(t, "operator")
	conn := []string{"--broker", b.URL(), "--ca", pki.CA, "--tls-cert", cert, "--tls-key", key}

	env := filepath.Join(o1.dir, "ping.json")
	if _, _, err := run("cmd", "sign", "--key", o1.key, "--target", "dev-1", "-o", env, "ping"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run("cmd", "cosign", "--key", o2.key, env); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(append(append([]string{"cmd", "send"}, conn...), env)...)
	if err != nil || !strings.Contains(out, "dev-1") || !strings.Contains(out, " ok ") {
		t.Fatalf("cmd send: %v\n%s", err, out)
	}
	// The same envelope again is a replay.
	out, _, err = run(append(append([]string{"cmd", "send"}, conn...), env)...)
	if !errors.Is(err, errSilent) || !strings.Contains(out, "REFUSED replay") {
		t.Fatalf("cmd send again: %v\n%s", err, out)
	}
}

// startDevice runs a device's broker link until the test ends.
func startDevice(t *testing.T, pki *brokertest.PKI, b brokertest.Broker, ring *dsse.Keyring, id, site string) {
	t.Helper()
	devCert, devKey := pki.Client(t, id)
	signer, err := contract.LoadSigner(devCert, devKey)
	if err != nil {
		t.Fatal(err)
	}
	l, err := mqttlink.New(mqttlink.Options{
		Device: id, Site: site, Kind: "router", Version: "test", URL: b.URL(), CA: pki.CA, Cert: devCert, Key: devKey, Signer: signer,
		StateDir: t.TempDir(), Operators: ring, TelemetryEvery: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Up once its online state is on the broker: the link subscribes to
	// its command topics before it publishes that, so a command sent from
	// then on is not lost (on a loaded machine the connect takes seconds).
	online := make(chan struct{}, 1)
	if in, ok := b.(brokertest.Inline); ok {
		unsub, err := in.Subscribe(contract.TopicsFor(id, site).State, func(_ string, p []byte, _ bool) {
			if bytes.Contains(p, []byte(`"online":true`)) {
				select {
				case online <- struct{}{}:
				default:
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		defer unsub()
	} else {
		online <- struct{}{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-online:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not come online", id)
	}
}

// TestCmdTypes: cmd --help lists every command type with its arguments and
// role; an unknown type is refused before anything is signed or sent.
func TestCmdTypes(t *testing.T) {
	dir := t.TempDir()
	key, _, err := dsse.GenerateKeyFiles(dir, "ops")
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range [][]string{{"cmd", "--help"}, {"cmd", "sign", "--help"}} {
		out, _, err := run(sub...)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"relay.set        feed=ID circuit=ID state=on|off|auto", "role: grid, 1 signature(s); on a protected circuit 2 grid",
			"update.fetch", "role: release", "log.level        level=debug", "role: technician"} {
			if !strings.Contains(out, want) {
				t.Errorf("%v lacks %q:\n%s", sub, want, out)
			}
		}
	}
	env := filepath.Join(dir, "revoke.json")
	for _, args := range [][]string{
		// An unreachable broker: the refusal must come before any connection.
		{"cmd", "--key", key, "--broker", "tcp://127.0.0.1:1", "--target", "all", "link.revoke", "id=LA-1"},
		{"cmd", "sign", "--key", key, "--target", "all", "-o", env, "link.revoke", "id=LA-1"},
	} {
		_, _, err := run(args...)
		if err == nil || !strings.Contains(err.Error(), `unknown command type "link.revoke"`) || !strings.Contains(err.Error(), "throttle.clear   feed=ID") {
			t.Errorf("%v: %v", args[:2], err)
		}
	}
	if _, err := os.Stat(env); err == nil {
		t.Error("cmd sign wrote an envelope of an unknown type")
	}
}

// TestCmdTypesKnown: every listed type has a class (so a role signs it),
// and its arguments are the JSON fields its handler decodes.
func TestCmdTypesKnown(t *testing.T) {
	handlers := map[string]any{
		command.ThrottleSet: feeds.ThrottleOrder{}, command.ThrottleClear: feeds.ClearOrder{},
		command.RelaySet: feeds.RelayOrder{}, command.UpdateFetch: update.FetchArgs{},
	}
	for _, ct := range cmdTypes {
		if _, ok := command.ClassOf(ct.name); !ok {
			t.Errorf("%s has no class: no role may sign it", ct.name)
		}
		v, ok := handlers[ct.name]
		if !ok {
			continue
		}
		var want []string
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			want = append(want, name)
		}
		var got []string
		for _, a := range strings.Fields(ct.args) {
			name, _, _ := strings.Cut(strings.Trim(a, "[]"), "=")
			got = append(got, name)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s lists arguments %v, its handler reads %v", ct.name, got, want)
		}
	}
}

// TestCmdTargetAllStopsEarly: --target all and site:NAME stop waiting once
// every device online (at that site) in the retained states has answered.
func TestCmdTargetAllStopsEarly(t *testing.T) {
	pki := brokertest.NewPKI(t)
	b := brokertest.Mochi(t, pki)
	o := newMember(t, "ops-1")
	ring, err := dsse.LoadKeyring(o.pub)
	if err != nil {
		t.Fatal(err)
	}
	startDevice(t, pki, b, ring, "dev-1", "s1")
	startDevice(t, pki, b, ring, "dev-2", "s2")
	cert, key := pki.Client(t, "operator")
	conn := []string{"--broker", b.URL(), "--ca", pki.CA, "--tls-cert", cert, "--tls-key", key}
	// Wait for both devices' states to be retained.
	deadline := time.Now().Add(45 * time.Second) // a loaded CI machine is slow to bring two devices up
	for {
		out, _, _ := run(append([]string{"cmd", "--key", o.key, "--target", "all", "--timeout", "2s", "ping"}, conn...)...)
		if strings.Contains(out, "2 of 2 online answered") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the devices never came online:\n%s", out)
		}
	}
	for _, tc := range []struct {
		target string
		want   []string
	}{
		{"all", []string{"(2 devices online)", "dev-1", "dev-2", "answered: 2 device(s); 2 of 2 online answered"}},
		{"site:s2", []string{"(1 devices online)", "dev-2", "answered: 1 device(s); 1 of 1 online answered"}},
	} {
		start := time.Now()
		out, _, err := run(append([]string{"cmd", "--key", o.key, "--target", tc.target, "--timeout", "30s", "ping"}, conn...)...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", tc.target, err, out)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("%s: waited %v of a 30s timeout with every device answered", tc.target, took)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: lacks %q:\n%s", tc.target, w, out)
			}
		}
	}
}
