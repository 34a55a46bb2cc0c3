package command

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/policytest"
	"linkguard.dev/linkguard/policy/roster"
	"linkguard.dev/linkguard/policy/roster/rostertest"
)

// crew is a roster's members by id.
type crew map[string]rostertest.Member

func newCrew(t *testing.T) crew {
	c := crew{}
	for _, m := range []rostertest.Member{
		rostertest.NewMember(t, "grid-1", roster.Grid),
		rostertest.NewMember(t, "grid-2", roster.Grid),
		rostertest.NewMember(t, "tech", roster.Technician),
		rostertest.NewMember(t, "rel-1", roster.Release),
		rostertest.NewMember(t, "rel-2", roster.Release),
		rostertest.NewMember(t, "viewer", roster.Viewer),
		rostertest.NewMember(t, "chair", roster.Committee),
	} {
		c[m.ID] = m
	}
	two := rostertest.NewMember(t, "rel-3", roster.Release)
	two.More = []ed25519.PrivateKey{policytest.Key(t)}
	c[two.ID] = two
	return c
}

func (c crew) spec() rostertest.Spec {
	s := rostertest.Spec{Serial: 4, Issued: t0.Add(-24 * time.Hour), Thresholds: map[roster.Class]int{roster.ClassRelease: 2}}
	for _, id := range []string{"grid-1", "grid-2", "tech", "rel-1", "rel-2", "rel-3", "viewer", "chair"} {
		s.Members = append(s.Members, c[id])
	}
	return s
}

func (c crew) keys(ids ...string) []ed25519.PrivateKey {
	var out []ed25519.PrivateKey
	for _, id := range ids {
		out = append(out, c[id].Key)
	}
	return out
}

func rosterVerifier(t *testing.T, src RosterSource, floor roster.Thresholds) *Verifier {
	seen, _ := OpenSeen("", t0)
	return &Verifier{Roster: src, Floor: floor, Device: "dev-1", Site: "tachileik", Seen: seen, Now: func() time.Time { return t0 }}
}

func typed(id, typ string) Payload {
	return Payload{ID: id, Target: "dev-1", Issued: t0, Expires: t0.Add(time.Minute), Type: typ}
}

func signBy(t *testing.T, p Payload, keys ...ed25519.PrivateKey) []byte {
	t.Helper()
	env, err := Sign(p, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestVerifyRoles(t *testing.T) {
	c := newCrew(t)
	st := rostertest.InForce(t, c.spec(), roster.Thresholds{})
	v := rosterVerifier(t, st, roster.Thresholds{})
	stranger := policytest.Key(t)
	tests := []struct {
		name    string
		typ     string
		keys    []ed25519.PrivateKey
		want    error
		signers string
	}{
		{"grid throttles", ThrottleSet, c.keys("grid-1"), nil, "grid-1"},
		{"technician pings", Ping, c.keys("tech"), nil, "tech"},
		{"technician throttles", ThrottleSet, c.keys("tech"), ErrRole, ""},
		{"viewer throttles", ThrottleSet, c.keys("viewer"), ErrRole, ""},
		{"viewer pings", Ping, c.keys("viewer"), ErrRole, ""},
		{"committee member relays", RelaySet, c.keys("chair"), ErrRole, ""},
		{"grid pings", Ping, c.keys("grid-1"), ErrRole, ""},
		{"key outside the roster", ThrottleSet, []ed25519.PrivateKey{stranger}, ErrUntrusted, ""},
		{"stranger beside grid", ThrottleSet, []ed25519.PrivateKey{stranger, c["grid-1"].Key}, nil, "grid-1"},
		{"one release key", UpdateFetch, c.keys("rel-1"), ErrBelowThreshold, ""},
		{"one operator's two keys", UpdateFetch, []ed25519.PrivateKey{c["rel-3"].Key, c["rel-3"].More[0]}, ErrBelowThreshold, ""},
		{"release with a grid key", UpdateFetch, c.keys("rel-1", "grid-1"), ErrBelowThreshold, ""},
		{"two release operators", UpdateFetch, c.keys("rel-1", "rel-2"), nil, "rel-1,rel-2"},
		{"type no role signs", "frobnicate", c.keys("grid-1", "tech", "rel-1", "chair"), ErrRole, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, cmd, err := v.Verify(signBy(t, typed("r"+string(rune('a'+i)), tt.typ), tt.keys...))
			if tt.want != nil {
				if !errors.Is(err, tt.want) || cmd != nil {
					t.Fatalf("Verify = %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(cmd.Signers, ","); got != tt.signers || cmd.Roster != 4 {
				t.Fatalf("signers %q roster %d, want %q from roster 4", got, cmd.Roster, tt.signers)
			}
		})
	}
}

// A command refused for too few signatures is not remembered: the same
// command, cosigned, goes through.
func TestBelowThresholdLeavesTheIDFree(t *testing.T) {
	c := newCrew(t)
	v := rosterVerifier(t, rostertest.InForce(t, c.spec(), roster.Thresholds{}), roster.Thresholds{})
	p := typed("fw-1", UpdateFetch)
	_, _, err := v.Verify(signBy(t, p, c.keys("rel-1")...))
	if ReasonOf(err) != ReasonBelowThreshold || !strings.Contains(err.Error(), "needs 2 release signatures, it has 1 (rel-1)") {
		t.Fatalf("one signature: %v", err)
	}
	if _, _, err := v.Verify(signBy(t, p, c.keys("rel-1", "rel-2")...)); err != nil {
		t.Fatalf("cosigned: %v", err)
	}
	if _, _, err := v.Verify(signBy(t, p, c.keys("rel-1", "rel-2")...)); !errors.Is(err, ErrReplay) {
		t.Fatalf("again: %v", err)
	}
}

// The device's floor raises a roster's thresholds.
func TestFloor(t *testing.T) {
	c := newCrew(t)
	v := rosterVerifier(t, rostertest.InForce(t, c.spec(), roster.Thresholds{}), roster.Thresholds{Grid: 2})
	if _, _, err := v.Verify(signBy(t, typed("f1", ThrottleSet), c.keys("grid-1")...)); !errors.Is(err, ErrBelowThreshold) {
		t.Fatalf("one grid signature under a floor of 2: %v", err)
	}
	if _, _, err := v.Verify(signBy(t, typed("f1", ThrottleSet), c.keys("grid-1", "grid-2")...)); err != nil {
		t.Fatal(err)
	}
}

func TestRosterExpiredRefusesAll(t *testing.T) {
	c := newCrew(t)
	s := c.spec()
	s.Expires = t0.Add(time.Hour)
	v := rosterVerifier(t, rostertest.InForce(t, s, roster.Thresholds{}), roster.Thresholds{})
	later := t0.Add(2 * time.Hour)
	v.Now = func() time.Time { return later }
	p := Payload{ID: "late", Target: "dev-1", Issued: later, Expires: later.Add(time.Minute), Type: Ping}
	if _, _, err := v.Verify(signBy(t, p, c.keys("tech")...)); !errors.Is(err, ErrRosterExpired) {
		t.Fatalf("command under an expired roster: %v", err)
	}
}

// Until a roster arrives the configured operator keys stand in for it,
// under the same thresholds; after, they no longer count.
func TestConfiguredKeysUntilARoster(t *testing.T) {
	c := newCrew(t)
	old := policytest.Key(t)
	var src holder
	v := rosterVerifier(t, &src, roster.Thresholds{})
	v.Keys = dsse.NewKeyring(old.Public().(ed25519.PublicKey))
	_, cmd, err := v.Verify(signBy(t, typed("k1", ThrottleSet), old))
	if err != nil || cmd.Roster != 0 {
		t.Fatalf("configured key before any roster: %v", err)
	}
	if err := cmd.Require(roster.ClassProtected); !errors.Is(err, ErrBelowThreshold) {
		t.Fatalf("one configured key for a protected circuit: %v", err)
	}
	if _, _, err := v.Verify(signBy(t, typed("frob", "frobnicate"), old)); err != nil {
		t.Fatalf("unknown type before a roster is left to the dispatcher: %v", err)
	}
	src.cur = rostertest.InForce(t, c.spec(), roster.Thresholds{}).Current()
	if _, _, err := v.Verify(signBy(t, typed("k2", ThrottleSet), old)); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("configured key once a roster is in force: %v", err)
	}
	none := rosterVerifier(t, nil, roster.Thresholds{})
	if _, _, err := none.Verify(signBy(t, typed("k3", Ping), old)); !errors.Is(err, ErrNoRoster) {
		t.Fatalf("no roster, no keys: %v", err)
	}
}

type holder struct{ cur *roster.Current }

func (h *holder) Current() *roster.Current { return h.cur }

// A Gated handler refuses before the id is remembered when the dispatcher
// is the verifier's Authorizer, and again at dispatch when it is not.
func TestGatedHandler(t *testing.T) {
	c := newCrew(t)
	v := rosterVerifier(t, rostertest.InForce(t, c.spec(), roster.Thresholds{}), roster.Thresholds{})
	var d Dispatcher
	ran := 0
	err := d.Register(RelaySet, Gated{
		Check: func(c *Command) error {
			var a struct{ Circuit string }
			if err := c.DecodeArgs(&a); err != nil {
				return err
			}
			if a.Circuit == "hospital" {
				return c.Require(roster.ClassProtected)
			}
			return nil
		},
		Handler: HandlerFunc(func(context.Context, *Command) (any, error) { ran++; return nil, nil }),
	})
	if err != nil {
		t.Fatal(err)
	}
	v.Authorizer = &d
	p := typed("h1", RelaySet)
	p.Args = json.RawMessage(`{"circuit":"hospital"}`)
	_, _, err = v.Verify(signBy(t, p, c.keys("grid-1")...))
	if !errors.Is(err, ErrBelowThreshold) || !strings.Contains(err.Error(), "touches a protected circuit") {
		t.Fatalf("one grid signature on the hospital: %v", err)
	}
	_, cmd, err := v.Verify(signBy(t, p, c.keys("grid-1", "grid-2")...))
	if err != nil {
		t.Fatalf("two grid signatures: %v", err)
	}
	if _, err := d.Dispatch(context.Background(), cmd); err != nil || ran != 1 {
		t.Fatalf("dispatch: %v, ran %d", err, ran)
	}

	// Without the Authorizer the handler still refuses.
	v.Authorizer = nil
	p.ID = "h2"
	_, one, err := v.Verify(signBy(t, p, c.keys("grid-2")...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Dispatch(context.Background(), one); !errors.Is(err, ErrBelowThreshold) || ran != 1 {
		t.Fatalf("dispatch of a one-signature hospital command: %v, ran %d", err, ran)
	}
	// A command made up in process has no signers at all.
	if _, err := d.Dispatch(context.Background(), &Command{Payload: p}); !errors.Is(err, ErrRole) || ran != 1 {
		t.Fatalf("unsigned command: %v", err)
	}
}

func TestReasonsListed(t *testing.T) {
	seen := map[Reason]bool{}
	for _, r := range Reasons() {
		if seen[r] || r == "" {
			t.Fatalf("reason %q listed twice or empty", r)
		}
		seen[r] = true
	}
	for _, r := range []Reason{ReasonRole, ReasonBelowThreshold, ReasonNoRoster, ReasonRosterExpired, ReasonFailed} {
		if !seen[r] {
			t.Fatalf("%s missing", r)
		}
	}
}
