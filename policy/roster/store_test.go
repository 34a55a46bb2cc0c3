package roster_test

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/policytest"
	"linkguard.dev/linkguard/policy/roster"
	"linkguard.dev/linkguard/policy/roster/rostertest"
)

func TestStore(t *testing.T) {
	a, b, c := policytest.Key(t), policytest.Key(t), policytest.Key(t)
	anchors := policytest.Keyring(a, b, c)
	grid := rostertest.NewMember(t, "grid-1", roster.Grid)
	committee := []rostertest.Member{{ID: "a", Roles: []roster.Role{roster.Committee}, Key: a},
		{ID: "b", Roles: []roster.Role{roster.Committee}, Key: b}, {ID: "c", Roles: []roster.Role{roster.Committee}, Key: c}}
	spec := func(serial uint64) rostertest.Spec {
		return rostertest.Spec{Serial: serial, Members: append([]rostertest.Member{grid}, committee...)}
	}
	signed := func(s rostertest.Spec, keys ...ed25519.PrivateKey) []byte {
		return rostertest.Sign(t, rostertest.YAML(s), keys...)
	}
	now := rostertest.Issued.Add(24 * time.Hour)
	clock := func() time.Time { return now }
	state := t.TempDir()
	var outcomes []roster.Outcome
	opts := roster.Options{Anchors: anchors, Floor: roster.Thresholds{Committee: 2, Grid: 1}, StateDir: state, Now: clock,
		OnOutcome: func(o roster.Outcome) { outcomes = append(outcomes, o) }}
	st, err := roster.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	var swaps []uint64
	st.Subscribe(func(c *roster.Current) { swaps = append(swaps, c.Serial()) })
	if _, err := st.Restore(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Restore with an empty state dir: %v", err)
	}
	if _, err := st.Apply(signed(spec(5), a), "test"); !errors.Is(err, dsse.ErrThreshold) || st.Current() != nil {
		t.Fatalf("one committee signature under a floor of 2: %v", err)
	}
	env5 := signed(spec(5), a, b)
	cur, err := st.Apply(env5, "test")
	if err != nil {
		t.Fatal(err)
	}
	if cur.Thresholds.Protected != roster.MinProtected || cur.Keyring().Len() != 4 || cur.Roster.ByKey(dsse.KeyID(grid.Public())).ID != "grid-1" {
		t.Fatalf("current %+v", cur)
	}

	refusals := []struct {
		name string
		env  []byte
		want error
	}{
		{"rollback", signed(spec(4), a, b), roster.ErrReplay},
		{"same serial, other roster", signed(rostertest.Spec{Serial: 5, Members: committee}, a, b), roster.ErrReplay},
		{"expired", signed(rostertest.Spec{Serial: 6, Expires: now.Add(-time.Hour), Members: committee}, a, b), roster.ErrExpired},
		{"issued in the future", signed(rostertest.Spec{Serial: 6, Issued: now.Add(time.Hour), Members: committee}, a, b), roster.ErrIssued},
		{"below its own threshold", signed(rostertest.Spec{Serial: 6, Members: committee, Thresholds: map[roster.Class]int{roster.ClassCommittee: 3}}, a, b), roster.ErrThreshold},
		{"stranger's signatures", signed(spec(6), policytest.Key(t), policytest.Key(t)), dsse.ErrUnknownKey},
		{"a policy, not a roster", policytest.Sign(t, rostertest.YAML(spec(6)), a, b), dsse.ErrPayloadType},
		{"not a roster", rostertest.Sign(t, []byte("serial: 6\n"), a, b), roster.ErrInvalid},
	}
	for _, r := range refusals {
		n := len(outcomes)
		if _, err := st.Apply(r.env, "test"); !errors.Is(err, r.want) {
			t.Errorf("%s: %v, want %v", r.name, err, r.want)
		}
		if st.Current().Serial() != 5 {
			t.Fatalf("%s: serial %d in force, want 5 kept", r.name, st.Current().Serial())
		}
		if len(outcomes) != n+1 || outcomes[n].Applied || outcomes[n].Err == nil {
			t.Errorf("%s: outcome %+v", r.name, outcomes[n:])
		}
	}
	if _, err := st.Apply(env5, "mqtt"); !errors.Is(err, roster.ErrUnchanged) {
		t.Fatalf("same envelope again: %v", err)
	}
	if _, err := st.Apply(signed(spec(5), c, b), "mqtt"); !errors.Is(err, roster.ErrUnchanged) {
		t.Fatalf("re-signed copy of the roster in force: %v", err)
	}

	// A roster that raises the committee threshold binds its successors.
	raised := rostertest.Spec{Serial: 7, Members: committee, Thresholds: map[roster.Class]int{roster.ClassCommittee: 3}}
	if _, err := st.Apply(signed(raised, a, b, c), "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Apply(signed(spec(8), a, b), "test"); !errors.Is(err, dsse.ErrThreshold) {
		t.Fatalf("two signatures after the threshold was raised to 3: %v", err)
	}
	if len(swaps) != 2 || swaps[0] != 5 || swaps[1] != 7 {
		t.Fatalf("subscriber saw %v, want [5 7]", swaps)
	}

	// A restart restores the last good roster, even expired, and a
	// rollback is still refused after it.
	now = rostertest.Issued.AddDate(2, 0, 0)
	st2, _ := roster.New(opts)
	got, err := st2.Restore()
	if err != nil || got.Serial() != 7 || !got.Roster.Expired(now) || got.Source != "last-known-good" {
		t.Fatalf("Restore of an expired last-good roster = %v, %v", got.Serial(), err)
	}
	old := rostertest.Spec{Serial: 6, Issued: now.Add(-time.Hour), Members: committee}
	if _, err := st2.Apply(signed(old, a, b, c), "test"); !errors.Is(err, roster.ErrReplay) {
		t.Fatalf("rollback after a restart: %v", err)
	}
	// The last good roster must still verify against the anchors.
	st3, _ := roster.New(roster.Options{Anchors: policytest.Keyring(policytest.Key(t)), StateDir: state, Now: clock})
	if _, err := st3.Restore(); err == nil {
		t.Fatal("Restore accepted a last-good roster no anchor signed")
	}
	if fi, err := os.Stat(filepath.Join(state, "roster", "last-good.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("last-known-good file: %v", err)
	}
}

func TestStoreNeedsAnchors(t *testing.T) {
	if _, err := roster.New(roster.Options{}); !errors.Is(err, dsse.ErrEmptyKeyring) {
		t.Fatalf("New without anchors: %v", err)
	}
}

// A roster envelope over MaxEnvelope is refused before it is parsed.
func TestEnvelopeCap(t *testing.T) {
	a := policytest.Key(t)
	huge := make([]byte, roster.MaxEnvelope+1)
	if _, err := roster.Verify(huge, policytest.Keyring(a), 1, rostertest.Issued); !errors.Is(err, dsse.ErrTooLarge) {
		t.Fatalf("oversized envelope: %v", err)
	}
}
