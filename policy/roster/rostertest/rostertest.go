// Package rostertest builds rosters for tests: members with throwaway keys,
// the YAML of a roster naming them, and envelopes signed by committee keys.
//
// Production code never imports it.
package rostertest

import (
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/policytest"
	"linkguard.dev/linkguard/policy/roster"
)

// Issued is when rosters built here are issued; they expire a year later.
var Issued = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// Member is an operator with the private half of its key.
type Member struct {
	ID    string
	Roles []roster.Role
	Key   ed25519.PrivateKey
	More  []ed25519.PrivateKey // further keys of the same operator
}

// NewMember makes an operator with a fresh key.
func NewMember(tb testing.TB, id string, roles ...roster.Role) Member {
	return Member{ID: id, Roles: roles, Key: policytest.Key(tb)}
}

// Public is the member's public key.
func (m Member) Public() ed25519.PublicKey { return m.Key.Public().(ed25519.PublicKey) }

// Spec describes a roster to render.
type Spec struct {
	Serial     uint64 // 0: 1
	Issued     time.Time
	Expires    time.Time // zero: Issued plus a year
	Thresholds map[roster.Class]int
	Members    []Member
}

// YAML renders the roster.
func YAML(s Spec) []byte {
	if s.Serial == 0 {
		s.Serial = 1
	}
	if s.Issued.IsZero() {
		s.Issued = Issued
	}
	if s.Expires.IsZero() {
		s.Expires = s.Issued.AddDate(1, 0, 0)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "serial: %d\nissued: %s\nexpires: %s\n", s.Serial, s.Issued.Format(time.RFC3339), s.Expires.Format(time.RFC3339))
	if len(s.Thresholds) > 0 {
		b.WriteString("thresholds:\n")
		for _, c := range roster.Classes {
			if n, ok := s.Thresholds[c]; ok {
				fmt.Fprintf(&b, "  %s: %d\n", c, n)
			}
		}
	}
	b.WriteString("operators:\n")
	for _, m := range s.Members {
		roles := make([]string, len(m.Roles))
		for i, r := range m.Roles {
			roles[i] = string(r)
		}
		keys := []string{roster.FormatKey(m.Public())}
		for _, k := range m.More {
			keys = append(keys, roster.FormatKey(k.Public().(ed25519.PublicKey)))
		}
		fmt.Fprintf(&b, "  - id: %s\n    name: %q\n    roles: [%s]\n    keys: [%s]\n",
			m.ID, "Operator "+m.ID, strings.Join(roles, ", "), strings.Join(keys, ", "))
	}
	return []byte(b.String())
}

// Sign signs a roster payload with the committee keys.
func Sign(tb testing.TB, payload []byte, keys ...ed25519.PrivateKey) []byte {
	tb.Helper()
	env, err := dsse.Sign(roster.PayloadType, payload, keys...)
	if err != nil {
		tb.Fatal(err)
	}
	return env
}

// Parse parses a roster rendered by YAML, failing the test on error.
func Parse(tb testing.TB, payload []byte) *roster.Roster {
	tb.Helper()
	r, err := roster.Parse(payload)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// InForce returns a store holding the roster spec describes, signed by a
// fresh committee key that is its only anchor, with the thresholds raised to
// floor. Its clock stands at the roster's issue time.
func InForce(tb testing.TB, spec Spec, floor roster.Thresholds) *roster.Store {
	tb.Helper()
	if spec.Issued.IsZero() {
		spec.Issued = Issued
	}
	committee := policytest.Key(tb)
	st, err := roster.New(roster.Options{Anchors: policytest.Keyring(committee), Floor: floor,
		Now: func() time.Time { return spec.Issued }})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := st.Apply(Sign(tb, YAML(spec), committee), "test"); err != nil {
		tb.Fatal(err)
	}
	return st
}
