package bundle_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/firmware/bundle"
	"linkguard.dev/linkguard/firmware/bundle/bundletest"
	"linkguard.dev/linkguard/policy/dsse"
)

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func ticket(version string, devices ...string) bundle.Ticket {
	return bundle.Ticket{Version: version, Devices: devices, Reason: "1.1.0 breaks RS-485 on rev 2",
		Issued: now.Add(-time.Hour), Expires: now.Add(72 * time.Hour)}
}

func TestDowngradeTicket(t *testing.T) {
	a, b, c := bundletest.NewRelease(t), bundletest.NewRelease(t), bundletest.NewRelease(t)
	old := a.Build(t, bundletest.Spec{Version: "1.0.9"})
	oldAB := b.Cosign(t, old)
	site := ticket("1.0.9")
	site.Site = "s1"
	expired := ticket("1.0.9", "rtr-1")
	expired.Issued, expired.Expires = now.Add(-96*time.Hour), now.Add(-time.Minute)
	future := ticket("1.0.9", "rtr-1")
	future.Issued, future.Expires = now.Add(time.Hour), now.Add(48*time.Hour)
	// A ticket valid for a year, signed by hand: SignTicket refuses it.
	longPayload, _ := json.Marshal(bundle.Ticket{Format: 1, Version: "1.0.9", Devices: []string{"rtr-1"}, Reason: "forever",
		Issued: now.Add(-time.Hour), Expires: now.AddDate(1, 0, 0)})
	long, _ := dsse.Sign(bundle.TicketPayloadType, longPayload, a.Key)
	asManifest, _ := dsse.Sign(bundle.PayloadType, mustJSON(t, ticket("1.0.9", "rtr-1")), a.Key)

	tests := []struct {
		name      string
		bundle    []byte
		ring      []bundletest.Release
		threshold int
		ticket    []byte
		device    string
		want      error // nil: installs
		says      string
	}{
		{"ticket for this device and version", old, nil, 0, a.Ticket(t, ticket("1.0.9", "rtr-9", "rtr-1")), "rtr-1", nil, ""},
		{"ticket for the site", old, nil, 0, a.Ticket(t, site), "rtr-1", nil, ""},
		{"v-prefixed version is the same version", old, nil, 0, a.Ticket(t, ticket("v1.0.9", "rtr-1")), "rtr-1", nil, ""},
		{"no ticket", old, nil, 0, nil, "rtr-1", bundle.ErrDowngrade, "needs a ticket"},
		{"ticket for another version", old, nil, 0, a.Ticket(t, ticket("1.0.8", "rtr-1")), "rtr-1", bundle.ErrTicket, "for version 1.0.8, not 1.0.9"},
		{"ticket for another device", old, nil, 0, a.Ticket(t, ticket("1.0.9", "rtr-2")), "rtr-1", bundle.ErrTicket, `not device "rtr-1"`},
		{"ticket for another site", old, nil, 0, a.Ticket(t, bundle.Ticket{Version: "1.0.9", Site: "s2", Reason: "r", Issued: now, Expires: now.Add(time.Hour)}), "rtr-1", bundle.ErrTicket, `site "s2"`},
		{"device without an id", old, nil, 0, a.Ticket(t, ticket("1.0.9", "rtr-1")), "", bundle.ErrTicket, "not device"},
		{"expired ticket", old, nil, 0, a.Ticket(t, expired), "rtr-1", bundle.ErrTicket, "expired at"},
		{"ticket issued in the future", old, nil, 0, a.Ticket(t, future), "rtr-1", bundle.ErrTicket, "in the future"},
		{"ticket valid for a year", old, nil, 0, long, "rtr-1", bundle.ErrTicket, "at most"},
		{"ticket by another key", old, nil, 0, c.Ticket(t, ticket("1.0.9", "rtr-1")), "rtr-1", bundle.ErrTicket, "untrusted key"},
		{"manifest signature as a ticket", old, nil, 0, asManifest, "rtr-1", bundle.ErrTicket, "wrong payload type"},
		{"bundle in the ticket's place", old, nil, 0, old, "rtr-1", bundle.ErrTicket, "malformed"},
		{"k=2: ticket with one signature", oldAB, []bundletest.Release{a, b, c}, 2, a.Ticket(t, ticket("1.0.9", "rtr-1")), "rtr-1", bundle.ErrTicket, "1 of 2"},
		{"k=2: ticket with two signatures", oldAB, []bundletest.Release{a, b, c}, 2, a.Ticket(t, ticket("1.0.9", "rtr-1"), c), "rtr-1", nil, ""},
		{"an upgrade ignores the ticket", a.Build(t, bundletest.Spec{Version: "1.2.0"}), nil, 0, []byte("junk"), "rtr-1", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ring := tt.ring
			if ring == nil {
				ring = []bundletest.Release{a, b}
			}
			p := bundle.Policy{Keys: bundletest.Ring(ring...), Threshold: tt.threshold, Arch: "amd64", Installed: "1.1.0",
				Device: tt.device, Site: "s1", Ticket: tt.ticket, Now: now}
			_, err := bundle.Verify(bytes.NewReader(tt.bundle), p)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !errors.Is(err, bundle.ErrDowngrade) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("Verify = %v, want %v saying %q", err, tt.want, tt.says)
			}
		})
	}
}

func TestSignTicketRefuses(t *testing.T) {
	a := bundletest.NewRelease(t)
	many := make([]string, bundle.MaxTicketDevices+1)
	for i := range many {
		many[i] = fmt.Sprintf("rtr-%d", i)
	}
	for name, tk := range map[string]bundle.Ticket{
		"no devices, no site":   {Version: "1.0.9", Reason: "r", Issued: now, Expires: now.Add(time.Hour)},
		"devices and a site":    {Version: "1.0.9", Devices: []string{"rtr-1"}, Site: "s1", Reason: "r", Issued: now, Expires: now.Add(time.Hour)},
		"bad version":           {Version: "1.0", Devices: []string{"rtr-1"}, Reason: "r", Issued: now, Expires: now.Add(time.Hour)},
		"no reason":             {Version: "1.0.9", Devices: []string{"rtr-1"}, Issued: now, Expires: now.Add(time.Hour)},
		"no expiry":             {Version: "1.0.9", Devices: []string{"rtr-1"}, Reason: "r", Issued: now},
		"expires before issued": {Version: "1.0.9", Devices: []string{"rtr-1"}, Reason: "r", Issued: now, Expires: now.Add(-time.Hour)},
		"valid too long":        {Version: "1.0.9", Devices: []string{"rtr-1"}, Reason: "r", Issued: now, Expires: now.Add(bundle.MaxTicketValidity + time.Hour)},
		"device twice":          {Version: "1.0.9", Devices: []string{"rtr-1", "rtr-1"}, Reason: "r", Issued: now, Expires: now.Add(time.Hour)},
		"device wildcard":       {Version: "1.0.9", Devices: []string{"*"}, Reason: "r", Issued: now, Expires: now.Add(time.Hour)},
		"too many devices":      {Version: "1.0.9", Devices: many, Reason: "r", Issued: now, Expires: now.Add(time.Hour)},
	} {
		if _, err := bundle.SignTicket(tk, a.Key); !errors.Is(err, bundle.ErrTicket) {
			t.Errorf("%s: SignTicket = %v", name, err)
		}
	}
}

func TestCosignTicket(t *testing.T) {
	a, b := bundletest.NewRelease(t), bundletest.NewRelease(t)
	env := a.Ticket(t, ticket("1.0.9", "rtr-1"))
	ring := bundletest.Ring(a, b)
	if _, err := bundle.VerifyTicket(env, ring, 2); !errors.Is(err, bundle.ErrTicket) {
		t.Fatalf("one signature at threshold 2: %v", err)
	}
	_, env2, err := bundle.CosignTicket(env, b.Key, now)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := bundle.VerifyTicket(env2, ring, 2)
	if err != nil || tk.Version != "1.0.9" {
		t.Fatalf("two signatures: %+v %v", tk, err)
	}
	if _, _, err := bundle.CosignTicket(env2, a.Key, now); !errors.Is(err, dsse.ErrAlreadySigned) {
		t.Fatalf("cosign twice: %v", err)
	}
	if _, _, err := bundle.CosignTicket(env, b.Key, now.Add(96*time.Hour)); !errors.Is(err, bundle.ErrTicket) {
		t.Fatalf("cosign an expired ticket: %v", err)
	}
}

func TestCosignBundle(t *testing.T) {
	a, b, c := bundletest.NewRelease(t), bundletest.NewRelease(t), bundletest.NewRelease(t)
	one := small(t, a)
	two := b.Cosign(t, one)
	ring := bundletest.Ring(a, b, c)
	pol := func(th int) bundle.Policy {
		return bundle.Policy{Keys: ring, Threshold: th, Arch: "amd64", Installed: "1.1.0"}
	}
	if _, err := bundle.Verify(bytes.NewReader(one), pol(2)); !errors.Is(err, bundle.ErrSignature) || !strings.Contains(err.Error(), "1 of 2") {
		t.Fatalf("one signature, k=2: %v", err)
	}
	if _, err := bundle.Verify(bytes.NewReader(two), pol(2)); err != nil {
		t.Fatalf("two signatures gathered apart, k=2: %v", err)
	}
	if _, err := bundle.Verify(bytes.NewReader(two), pol(3)); !errors.Is(err, bundle.ErrSignature) {
		t.Fatalf("two signatures, k=3: %v", err)
	}
	three := c.Cosign(t, two)
	if _, err := bundle.Verify(bytes.NewReader(three), pol(3)); err != nil {
		t.Fatalf("three signatures, k=3: %v", err)
	}
	// The payloads and the manifest are the same bytes.
	n1, n3 := binary.BigEndian.Uint32(one[4:8]), binary.BigEndian.Uint32(three[4:8])
	if !bytes.Equal(one[8+n1:], three[8+n3:]) {
		t.Fatal("cosign changed the payloads")
	}
	var e1, e3 canonical
	json.Unmarshal(one[8:8+n1], &e1)
	json.Unmarshal(three[8:8+n3], &e3)
	if !bytes.Equal(e1.Payload, e3.Payload) || len(e3.Signatures) != 3 || !bytes.Equal(e1.Signatures[0].Sig, e3.Signatures[0].Sig) {
		t.Fatal("cosign changed the manifest or the first signature")
	}
	// A device must trust every key that signed: one that trusts only a
	// refuses what b also signed, so devices learn b's key before b signs.
	if _, err := bundle.Verify(bytes.NewReader(two), bundle.Policy{Keys: bundletest.Ring(a), Arch: "amd64"}); !errors.Is(err, bundle.ErrSignature) {
		t.Fatalf("a signature by a key the device does not trust: %v", err)
	}

	tampered := bytes.Clone(one)
	tampered[len(tampered)-2] ^= 1
	for _, tt := range []struct {
		name string
		in   []byte
		key  ed25519.PrivateKey
		want error
	}{
		{"already signed", two, b.Key, bundle.ErrAlreadySigned},
		{"payload tampered", tampered, b.Key, bundle.ErrDigest},
		{"truncated", one[:len(one)-5], b.Key, bundle.ErrFormat},
		{"trailing data", append(bytes.Clone(one), 'x'), b.Key, bundle.ErrFormat},
		{"not a bundle", []byte("{}"), b.Key, bundle.ErrFormat},
		{"at the signature cap", reframe(t, one, func(e *canonical) {
			for len(e.Signatures) < dsse.MaxSignatures {
				e.Signatures = append(e.Signatures, e.Signatures[0])
				e.Signatures[len(e.Signatures)-1].KeyID = fmt.Sprintf("%064d", len(e.Signatures))
			}
		}), b.Key, bundle.ErrFormat},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if _, _, err := bundle.Cosign(&out, bytes.NewReader(tt.in), tt.key); !errors.Is(err, tt.want) {
				t.Fatalf("Cosign = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestTicketCap: the largest ticket the format allows, signed by as many
// keys as dsse accepts, fits MaxTicket twice over.
func TestTicketCap(t *testing.T) {
	keys := make([]ed25519.PrivateKey, dsse.MaxSignatures)
	for i := range keys {
		keys[i] = bundletest.NewRelease(t).Key
	}
	devices := make([]string, bundle.MaxTicketDevices)
	for i := range devices {
		devices[i] = fmt.Sprintf("%03d", i) + strings.Repeat("d", 61)
	}
	env, err := bundle.SignTicket(bundle.Ticket{Version: "10.20.30-rc.12345", Devices: devices, Reason: strings.Repeat("r", 1024),
		Issued: now, Expires: now.Add(bundle.MaxTicketValidity)}, keys...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("largest ticket envelope: %d bytes, cap %d", len(env), bundle.MaxTicket)
	if 2*len(env) > bundle.MaxTicket {
		t.Errorf("largest ticket is %d bytes: less than 2x headroom under MaxTicket %d", len(env), bundle.MaxTicket)
	}
}

func FuzzVerifyTicket(f *testing.F) {
	a := bundletest.NewRelease(f)
	good := a.Ticket(f, ticket("1.0.9", "rtr-1"))
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"payloadType":"` + bundle.TicketPayloadType + `","payload":"e30=","signatures":[]}`))
	ring := bundletest.Ring(a)
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, err := bundle.VerifyTicket(data, ring, 1)
		if err != nil {
			if !errors.Is(err, bundle.ErrTicket) {
				t.Fatalf("error without ErrTicket: %v", err)
			}
			return
		}
		if tk.Expires.Sub(tk.Issued) > bundle.MaxTicketValidity || (len(tk.Devices) == 0) == (tk.Site == "") {
			t.Fatalf("accepted an invalid ticket %+v", tk)
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
