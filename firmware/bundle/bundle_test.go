package bundle_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/firmware/bundle"
	"linkguard.dev/linkguard/firmware/bundle/bundletest"
	"linkguard.dev/linkguard/policy/dsse"
)

var _ bundle.Keyring = (*dsse.Keyring)(nil)

func small(t testing.TB, rel bundletest.Release) []byte {
	return rel.Build(t, bundletest.Spec{
		Version: "1.2.0",
		Binary:  "#!/bin/sh\necho agent\n",
		Extra:   map[string]string{"config/default.yaml": "device: {}\n", "init/linkguard": "#!/bin/sh /etc/rc.common\n"},
	})
}

func pol(rel bundletest.Release) bundle.Policy {
	return bundle.Policy{Keys: rel.Ring, Arch: "amd64", Installed: "1.1.0"}
}

func TestRoundTrip(t *testing.T) {
	rel := bundletest.NewRelease(t)
	b := small(t, rel)
	r, err := bundle.NewReader(bytes.NewReader(b), pol(rel))
	if err != nil {
		t.Fatal(err)
	}
	m := r.Manifest()
	if m.Version != "1.2.0" || m.Arch != "amd64" || len(m.Payloads) != 3 {
		t.Fatalf("manifest %+v", m)
	}
	got := map[string]string{}
	for {
		p, rd, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rd)
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		got[p.Name] = string(data)
	}
	if got["linkguard"] != "#!/bin/sh\necho agent\n" || got["config/default.yaml"] != "device: {}\n" {
		t.Fatalf("payloads %q", got)
	}
}

// TestEveryByteFlipped flips one bit of every byte of a small bundle, and
// then every byte to its complement: each must be refused.
func TestEveryByteFlipped(t *testing.T) {
	rel := bundletest.NewRelease(t)
	b := small(t, rel)
	if _, err := bundle.Verify(bytes.NewReader(b), pol(rel)); err != nil {
		t.Fatalf("untampered: %v", err)
	}
	kinds := map[string]int{}
	for _, mask := range []byte{0x01, 0xff} {
		for i := range b {
			c := bytes.Clone(b)
			c[i] ^= mask
			_, err := bundle.Verify(bytes.NewReader(c), pol(rel))
			if err == nil {
				t.Fatalf("byte %d ^ %#x accepted (%q)", i, mask, b[max(0, i-10):min(len(b), i+10)])
			}
			for _, s := range []error{bundle.ErrFormat, bundle.ErrSignature, bundle.ErrDigest, bundle.ErrTooLarge} {
				if errors.Is(err, s) {
					kinds[s.Error()]++
				}
			}
		}
	}
	t.Logf("%d bytes x 2 flips refused: %v", len(b), kinds)
	if kinds[bundle.ErrDigest.Error()] == 0 || kinds[bundle.ErrSignature.Error()] == 0 || kinds[bundle.ErrFormat.Error()] == 0 {
		t.Fatalf("expected digest, signature and format failures: %v", kinds)
	}
}

func TestTruncatedAndTrailing(t *testing.T) {
	rel := bundletest.NewRelease(t)
	b := small(t, rel)
	for n := 0; n < len(b); n += 7 {
		if _, err := bundle.Verify(bytes.NewReader(b[:n]), pol(rel)); err == nil {
			t.Fatalf("truncated to %d accepted", n)
		}
	}
	if _, err := bundle.Verify(bytes.NewReader(append(bytes.Clone(b), 0)), pol(rel)); !errors.Is(err, bundle.ErrFormat) {
		t.Fatalf("trailing byte: %v", err)
	}
}

func TestPolicy(t *testing.T) {
	rel := bundletest.NewRelease(t)
	other := bundletest.NewRelease(t)
	b := func(s bundletest.Spec) []byte { return rel.Build(t, s) }
	tests := []struct {
		name   string
		bundle []byte
		policy func(*bundle.Policy)
		want   error
	}{
		{"upgrade", b(bundletest.Spec{Version: "1.2.0"}), nil, nil},
		{"first install", b(bundletest.Spec{Version: "0.1.0"}), func(p *bundle.Policy) { p.Installed = "" }, nil},
		{"reinstall same version", b(bundletest.Spec{Version: "1.1.0"}), nil, nil},
		{"wrong key", other.Build(t, bundletest.Spec{Version: "1.2.0"}), nil, bundle.ErrSignature},
		{"no keys", b(bundletest.Spec{Version: "1.2.0"}), func(p *bundle.Policy) { p.Keys = nil }, bundle.ErrSignature},
		{"threshold 2 with one release key", b(bundletest.Spec{Version: "1.2.0"}), func(p *bundle.Policy) { p.Threshold = 2 }, bundle.ErrSignature},
		{"wrong arch", b(bundletest.Spec{Version: "1.2.0", Arch: "arm"}), nil, bundle.ErrArch},
		{"hardware too old", b(bundletest.Spec{Version: "1.2.0", MinHardware: 3}), func(p *bundle.Policy) { p.Hardware = 2 }, bundle.ErrHardware},
		{"hardware new enough", b(bundletest.Spec{Version: "1.2.0", MinHardware: 3}), func(p *bundle.Policy) { p.Hardware = 3 }, nil},
		{"downgrade refused", b(bundletest.Spec{Version: "1.0.9"}), nil, bundle.ErrDowngrade},
		{"prerelease is older", b(bundletest.Spec{Version: "1.1.0-rc1"}), nil, bundle.ErrDowngrade},
		{"a signed downgrade reason is no ticket", b(bundletest.Spec{Version: "1.0.9", DowngradeReason: "CVE fix regression"}), nil, bundle.ErrDowngrade},
		{"downgrade with a ticket", b(bundletest.Spec{Version: "1.0.9"}), func(p *bundle.Policy) {
			p.Device, p.Ticket = "rtr-1", rel.Ticket(t, bundle.Ticket{Version: "1.0.9", Devices: []string{"rtr-1"}, Reason: "1.1.0 breaks RS-485",
				Issued: time.Now().Add(-time.Hour), Expires: time.Now().Add(time.Hour)})
		}, nil},
		{"compatible from too new", b(bundletest.Spec{Version: "2.0.0", CompatibleFrom: "1.5.0"}), nil, bundle.ErrIncompatible},
		{"compatible from met", b(bundletest.Spec{Version: "2.0.0", CompatibleFrom: "1.1.0"}), nil, nil},
		{"payload size cap", b(bundletest.Spec{Version: "1.2.0", Binary: strings.Repeat("x", 2000)}), func(p *bundle.Policy) { p.MaxSize = 1000 }, bundle.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pol(rel)
			if tt.policy != nil {
				tt.policy(&p)
			}
			_, err := bundle.Verify(bytes.NewReader(tt.bundle), p)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestOtherPayloadType: a document signed by the same key for another
// purpose (a policy) in a bundle's place is refused.
func TestOtherPayloadType(t *testing.T) {
	rel := bundletest.NewRelease(t)
	env, err := dsse.Sign("application/vnd.linkguard.policy+yaml", []byte(`{"format":1}`), rel.Key)
	if err != nil {
		t.Fatal(err)
	}
	compact := bytes.Join(bytes.Fields(env), nil)
	var b bytes.Buffer
	b.WriteString(bundle.Magic)
	binary.Write(&b, binary.BigEndian, uint32(len(compact)))
	b.Write(compact)
	if _, err := bundle.Verify(&b, pol(rel)); !errors.Is(err, bundle.ErrSignature) {
		t.Fatalf("policy envelope as bundle: %v", err)
	}
}

func TestBadManifests(t *testing.T) {
	rel := bundletest.NewRelease(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	os.WriteFile(f, []byte("x"), 0o644)
	m := bundle.Manifest{Version: "1.0.0", Arch: "arm", Created: time.Now()}
	for name, files := range map[string][]bundle.File{
		"no binary":       {{Name: "config/x", Path: f, Mode: 0o644}},
		"binary not exec": {{Name: "linkguard", Path: f, Mode: 0o644}},
		"dotdot":          {{Name: "linkguard", Path: f, Mode: 0o755}, {Name: "../etc/passwd", Path: f, Mode: 0o644}},
		"absolute":        {{Name: "linkguard", Path: f, Mode: 0o755}, {Name: "/etc/passwd", Path: f, Mode: 0o644}},
		"dir clash":       {{Name: "linkguard", Path: f, Mode: 0o755}, {Name: "linkguard/x", Path: f, Mode: 0o644}},
		"duplicate":       {{Name: "linkguard", Path: f, Mode: 0o755}, {Name: "linkguard", Path: f, Mode: 0o755}},
		"setuid":          {{Name: "linkguard", Path: f, Mode: 0o755 | os.ModeSetuid}, {Name: "x", Path: f, Mode: 0o4755}},
		"missing file":    {{Name: "linkguard", Path: filepath.Join(dir, "nope"), Mode: 0o755}},
	} {
		if _, err := bundle.BuildBytes(m, files, rel.Key); err == nil {
			t.Errorf("%s: built", name)
		}
	}
	if _, err := bundle.BuildBytes(bundle.Manifest{Version: "1.0", Arch: "arm", Created: time.Now()}, []bundle.File{{Name: "linkguard", Path: f, Mode: 0o755}}, rel.Key); err == nil {
		t.Error("bad version built")
	}
}

func TestVersionCompare(t *testing.T) {
	order := []string{"0.9.9", "1.0.0-alpha", "1.0.0-beta", "1.0.0", "v1.0.1", "1.2.0", "1.10.0", "2.0.0"}
	for i := range order {
		for j := range order {
			a, err1 := bundle.ParseVersion(order[i])
			b, err2 := bundle.ParseVersion(order[j])
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := a.Compare(b); got != want {
				t.Errorf("%s vs %s = %d, want %d", order[i], order[j], got, want)
			}
		}
	}
	for _, bad := range []string{"", "1", "1.2", "1.2.3.4", "01.2.3", "1.2.x", "1.2.3-", "1.2.3-a b", "1.2.3+meta"} {
		if _, err := bundle.ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) accepted", bad)
		}
	}
}

func FuzzReader(f *testing.F) {
	rel := bundletest.NewRelease(f)
	good := small(f, rel)
	f.Add(good)
	f.Add(good[:40])
	f.Add([]byte(bundle.Magic + "\x00\x00\x00\x02{}"))
	f.Add([]byte("LGB1\xff\xff\xff\xff"))
	f.Add(reframe(f, good, func(e *canonical) { e.Signatures[0].KeyID = "" }))
	f.Add(reframe(f, good, func(e *canonical) { e.Signatures = append(e.Signatures, e.Signatures[0]) }))
	f.Add(reframe(f, good, func(e *canonical) {
		for len(e.Signatures) <= dsse.MaxSignatures {
			e.Signatures = append(e.Signatures, e.Signatures[0])
		}
	}))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := pol(rel)
		p.MaxSize, p.MaxAll = 1<<16, 1<<16
		m, err := bundle.Verify(bytes.NewReader(data), p)
		if err != nil {
			return
		}
		// Whatever verifies must be exactly what the release key signed.
		if !bytes.Equal(data, good) {
			t.Fatalf("a different bundle verified: %+v", m)
		}
	})
}

// reframe returns b with its manifest envelope rewritten by f, in canonical
// form, so that only what f changes is wrong with it.
func reframe(t testing.TB, b []byte, f func(e *canonical)) []byte {
	t.Helper()
	n := binary.BigEndian.Uint32(b[4:8])
	var e canonical
	if err := json.Unmarshal(b[8:8+n], &e); err != nil {
		t.Fatal(err)
	}
	f(&e)
	return bundletest.Frame(t, e, b[8+n:])
}

// canonical is a manifest envelope as a bundle spells it.
type canonical = bundletest.Envelope

func TestEnvelopeBounds(t *testing.T) {
	rel := bundletest.NewRelease(t)
	b := small(t, rel)
	if _, err := bundle.Verify(bytes.NewReader(reframe(t, b, func(*canonical) {})), pol(rel)); err != nil {
		t.Fatalf("reframed untouched: %v", err)
	}
	over := bytes.Clone(b)
	binary.BigEndian.PutUint32(over[4:8], bundle.MaxEnvelope+1)
	huge := bytes.Clone(b)
	binary.BigEndian.PutUint32(huge[4:8], 0xffffffff) // negative as a 32-bit int
	tests := []struct {
		name string
		b    []byte
		want []error
	}{
		{"length over the cap", over, []error{bundle.ErrTooLarge}},
		{"length 4 GiB", huge, []error{bundle.ErrTooLarge}},
		{"envelope over the cap", reframe(t, b, func(e *canonical) {
			e.PayloadType += strings.Repeat(" ", bundle.MaxEnvelope)
		}), []error{bundle.ErrTooLarge}},
		{"too many signatures", reframe(t, b, func(e *canonical) {
			for len(e.Signatures) <= dsse.MaxSignatures {
				e.Signatures = append(e.Signatures, e.Signatures[0])
			}
		}), []error{bundle.ErrFormat, dsse.ErrTooManySignatures}},
		{"repeated signature", reframe(t, b, func(e *canonical) {
			e.Signatures = append(e.Signatures, e.Signatures[0])
		}), []error{bundle.ErrSignature}},
		{"empty keyid", reframe(t, b, func(e *canonical) { e.Signatures[0].KeyID = "" }), []error{bundle.ErrSignature, dsse.ErrNoKeyID}},
		{"unknown keyid", reframe(t, b, func(e *canonical) { e.Signatures[0].KeyID = strings.Repeat("0", 64) }), []error{bundle.ErrSignature, dsse.ErrUnknownKey}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := bundle.Verify(bytes.NewReader(tt.b), pol(rel))
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("Verify = %v, want %v in it", err, w)
				}
			}
		})
	}
}

// TestManifestCap: the largest manifest the format allows, signed by as
// many keys as dsse accepts, fits MaxEnvelope twice over.
func TestManifestCap(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	files := []bundle.File{{Name: bundle.BinaryName, Path: f, Mode: 0o755}}
	for i := 1; i < bundle.MaxPayloads; i++ {
		files = append(files, bundle.File{Name: fmt.Sprintf("%03d", i) + strings.Repeat("n", 125), Path: f, Mode: 0o644})
	}
	keys := make([]ed25519.PrivateKey, dsse.MaxSignatures)
	ring := dsse.NewKeyring()
	for i := range keys {
		keys[i] = bundletest.NewRelease(t).Key
		ring.Add(keys[i].Public().(ed25519.PublicKey), "")
	}
	m := bundle.Manifest{Version: "10.20.30-rc.12345", Arch: "mipsle", Created: time.Now(), CompatibleFrom: "10.20.0"}
	b, err := bundle.BuildBytes(m, files, keys...)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.BigEndian.Uint32(b[4:8])
	t.Logf("largest manifest envelope: %d bytes, cap %d", n, bundle.MaxEnvelope)
	if 2*n > bundle.MaxEnvelope {
		t.Errorf("largest manifest envelope is %d bytes: less than 2x headroom under MaxEnvelope %d", n, bundle.MaxEnvelope)
	}
	if _, err := bundle.Verify(bytes.NewReader(b), bundle.Policy{Keys: ring, Threshold: len(keys), Arch: "mipsle"}); err != nil {
		t.Fatal(err)
	}
	// And one over the cap is refused at build time, not on the device.
	m.DowngradeReason = strings.Repeat("r", bundle.MaxEnvelope)
	if _, err := bundle.BuildBytes(m, files, keys...); !errors.Is(err, bundle.ErrTooLarge) {
		t.Fatalf("oversized manifest built: %v", err)
	}
}
