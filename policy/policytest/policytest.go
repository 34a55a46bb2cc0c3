// Package policytest builds policies for tests and benchmarks: national-size
// synthetic policies, and signed envelopes with throwaway keys.
//
// Production code never imports it.
package policytest

import (
	"crypto/ed25519"
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
)

// Domestic is the domestic space of synthetic policies.
var Domestic = []netip.Prefix{netip.MustParsePrefix("103.1.0.0/16"), netip.MustParsePrefix("2001:db8:100::/40")}

// Synthetic returns a valid policy with n remote prefixes spread over
// approvals of 100 prefixes each, about one in eight of them IPv6, drawn from
// a fixed seed so runs compare. Every approval allows tcp/443 and udp/5060.
func Synthetic(n int, seed uint64) *policy.Policy {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	issued := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	p := &policy.Policy{Serial: 1, Issued: issued, Expires: issued.AddDate(1, 0, 0), Domestic: Domestic}
	svc := []policy.Service{{Proto: policy.ProtoTCP, PortLo: 443, PortHi: 443}, {Proto: policy.ProtoUDP, PortLo: 5060, PortHi: 5060}}
	var a *policy.Approval
	for i := range n {
		if i%100 == 0 {
			p.Approvals = append(p.Approvals, policy.Approval{ID: fmt.Sprintf("SYN-%06d", i/100), Holder: "synthetic", Services: svc})
			a = &p.Approvals[len(p.Approvals)-1]
		}
		a.Remote = append(a.Remote, RandomPrefix(r))
	}
	return p
}

// RandomPrefix returns a random global-looking prefix outside Domestic.
func RandomPrefix(r *rand.Rand) netip.Prefix {
	for {
		var pfx netip.Prefix
		if r.IntN(8) == 0 {
			var b [16]byte
			b[0], b[1] = 0x20, 0x01+byte(r.IntN(8))
			for i := 2; i < 8; i++ {
				b[i] = byte(r.Uint32())
			}
			pfx = netip.PrefixFrom(netip.AddrFrom16(b), 32+r.IntN(33)).Masked()
		} else {
			var b [4]byte
			b[0] = byte(1 + r.IntN(222))
			b[1], b[2], b[3] = byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())
			pfx = netip.PrefixFrom(netip.AddrFrom4(b), 8+r.IntN(17)).Masked()
		}
		if !overlapsDomestic(pfx) {
			return pfx
		}
	}
}

func overlapsDomestic(p netip.Prefix) bool {
	for _, d := range Domestic {
		if d.Overlaps(p) {
			return true
		}
	}
	return false
}

// YAML renders a policy in format v1.
func YAML(p *policy.Policy) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "serial: %d\nissued: %s\nexpires: %s\ndefault: %s\n", p.Serial,
		p.Issued.Format(time.RFC3339), p.Expires.Format(time.RFC3339), p.Default)
	b.WriteString("domestic: [" + join(p.Domestic) + "]\napprovals:\n")
	for _, a := range p.Approvals {
		fmt.Fprintf(&b, "  - id: %s\n    holder: %q\n    remote: [%s]\n", a.ID, a.Holder, join(a.Remote))
		if len(a.Sites) > 0 {
			b.WriteString("    sites: [" + strings.Join(a.Sites, ", ") + "]\n")
		}
		if len(a.Services) > 0 {
			s := make([]string, len(a.Services))
			for i, v := range a.Services {
				s[i] = v.String()
			}
			b.WriteString("    services: [" + strings.Join(s, ", ") + "]\n")
		}
		if !a.ValidFrom.IsZero() {
			b.WriteString("    valid_from: " + a.ValidFrom.Format(time.RFC3339) + "\n")
		}
		if !a.ValidUntil.IsZero() {
			b.WriteString("    valid_until: " + a.ValidUntil.Format(time.RFC3339) + "\n")
		}
	}
	return []byte(b.String())
}

func join(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// Key returns a fresh ed25519 key.
func Key(tb testing.TB) ed25519.PrivateKey {
	tb.Helper()
	_, k, err := ed25519.GenerateKey(crand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// Sign signs a policy payload with the keys.
func Sign(tb testing.TB, payload []byte, keys ...ed25519.PrivateKey) []byte {
	tb.Helper()
	env, err := dsse.Sign(policy.PayloadType, payload, keys...)
	if err != nil {
		tb.Fatal(err)
	}
	return env
}

// Keyring trusts the public halves of keys.
func Keyring(keys ...ed25519.PrivateKey) *dsse.Keyring {
	r := dsse.NewKeyring()
	for _, k := range keys {
		r.Add(k.Public().(ed25519.PublicKey), "")
	}
	return r
}
