package console

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
)

// TestReasonIsSignedAndRequired: a revoke or an approve without a reason
// (or with one of blanks) is refused by the server whatever the page does;
// the reason is part of the policy the committee signs (a comment line the
// devices ignore, one line whatever was sent) and of the audit log.
func TestReasonIsSignedAndRequired(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	alice := f.client("alice")
	for _, p := range []Proposal{{Action: "revoke", Approval: "LA-2026-0017"}, {Action: "revoke", Approval: "LA-2026-0017", Reason: " \n\t "},
		{Action: "approve", Approval: "LA-9", New: &NewApproval{ID: "LA-9", Holder: "x", Remote: []string{"192.0.2.0/24"}}, Reason: "ok"}} {
		if _, err := alice.Propose(ctx, p); status(err) != http.StatusBadRequest {
			t.Errorf("%s %q: %v, want 400", p.Action, p.Reason, err)
		}
	}
	p, err := alice.Propose(ctx, Proposal{Action: "revoke", Approval: "LA-2026-0017", Reason: "scam calls,\ncase 118\n# serial: 99"})
	if err != nil {
		t.Fatal(err)
	}
	want := reasonPrefix + "revoke LA-2026-0017, proposed by alice at "
	if !strings.HasPrefix(string(p.Payload), want) || !strings.Contains(string(p.Payload), ": scam calls, case 118 # serial: 99\n# A small policy") {
		t.Fatalf("signed payload:\n%s", p.Payload)
	}
	if np, err := policy.Parse(p.Payload); err != nil || np.Serial != 43 {
		t.Fatalf("the signed payload parses to %+v, %v", np, err)
	}
	recs, err := alice.Audit(ctx, p.ID)
	if err != nil || len(recs) != 1 || !strings.Contains(string(recs[0].Detail), `"reason":"scam calls, case 118 # serial: 99"`) {
		t.Fatalf("audit %+v %v", recs, err)
	}
	// A new approval with a validity window carries it.
	until := time.Date(2027, 1, 5, 23, 59, 59, 0, time.UTC)
	p, err = alice.Propose(ctx, Proposal{Action: "approve", Approval: "LA-9", Reason: "new carrier",
		New: &NewApproval{ID: "LA-9", Holder: "x", Remote: []string{"192.0.2.0/24"}, ValidUntil: &until}})
	if err != nil {
		t.Fatal(err)
	}
	np, err := policy.Parse(p.Payload)
	if err != nil || !np.Approvals[len(np.Approvals)-1].ValidUntil.Equal(until) {
		t.Fatalf("%v\n%s", err, p.Payload)
	}
	// A second proposal on a base carrying the line replaces it.
	if got := withReason(withReason([]byte("serial: 1\n"), "one"), "two"); string(got) != reasonPrefix+"two\nserial: 1\n" {
		t.Fatalf("withReason twice: %q", got)
	}
}

// TestRevokedApprovalKeptAsItWas: once a revoke is published the approval
// is shown as it was in the version before (remote, services, sites,
// window), marked revoked with the serial, when, who signed it and the
// signed reason; it survives a restart, and approving it again brings it
// back as it was.
func TestRevokedApprovalKeptAsItWas(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	alice, bob := f.client("alice"), f.client("bob")
	p, err := alice.Propose(ctx, Proposal{Action: "revoke", Approval: "LA-2026-0017", Reason: "case 118"})
	if err != nil {
		t.Fatal(err)
	}
	signedByBoth(t, p, alice, bob)
	check := func(when string) {
		t.Helper()
		pv, _ := f.c.Policy()
		i := slices.IndexFunc(pv.Approvals, func(a ApprovalView) bool { return a.ID == "LA-2026-0017" })
		if i < 0 {
			t.Fatalf("%s: the revoked approval is not shown: %+v", when, pv.Approvals)
		}
		a := pv.Approvals[i]
		if !a.Revoked || a.RevokedSerial != 43 || a.RevokedAt == nil || time.Since(*a.RevokedAt) > time.Minute ||
			strings.Join(a.RevokedBy, ",") != "alice,bob" || !strings.HasSuffix(a.RevokedNote, ": case 118") {
			t.Fatalf("%s: revoked %+v", when, a)
		}
		if strings.Join(a.Remote, ",") != "203.0.113.0/24,2001:db8:feed::/48" || strings.Join(a.Services, ",") != "tcp/443,udp/5060-5061,icmp" ||
			strings.Join(a.Sites, ",") != "vientiane-north" || a.ValidUntil == nil || a.Holder != "Example Telecom" {
			t.Fatalf("%s: not as it was: %+v", when, a)
		}
	}
	f.waitFor("serial 43", func() bool { pv, _ := f.c.Policy(); return pv.Serial == 43 })
	check("after the revoke")
	f.stop()
	f.start("")
	f.waitFor("serial 43 after the restart", func() bool { pv, _ := f.c.Policy(); return pv.Serial == 43 })
	check("after a restart")

	alice, bob = f.client("alice"), f.client("bob")
	p, err = alice.Propose(ctx, Proposal{Action: "approve", Approval: "LA-2026-0017", Reason: "case closed"})
	if err != nil {
		t.Fatal(err)
	}
	signedByBoth(t, p, alice, bob)
	f.waitFor("serial 44", func() bool { pv, _ := f.c.Policy(); return pv.Serial == 44 })
	pv, _ := f.c.Policy()
	i := slices.IndexFunc(pv.Approvals, func(a ApprovalView) bool { return a.ID == "LA-2026-0017" })
	if i < 0 || pv.Approvals[i].Revoked || strings.Join(pv.Approvals[i].Services, ",") != "tcp/443,udp/5060-5061,icmp" {
		t.Fatalf("approved again: %+v", pv.Approvals)
	}
}

// signedByBoth has two members sign p, which publishes it.
func signedByBoth(t *testing.T, p *Pending, a, b *Client) {
	t.Helper()
	for _, cl := range []*Client{a, b} {
		if _, err := cl.Sign(context.Background(), p.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRevocationSeenFromAnotherConsole: a newer fleet policy signed
// elsewhere that lacks an approval shows it revoked too, signed by whom
// the policy names.
func TestRevocationSeenFromAnotherConsole(t *testing.T) {
	f := newFixture(t)
	e, err := policy.Revoke(examplePolicy(t), "LA-2026-0018", policy.Reissue{Serial: 50, Issued: time.Now().Add(-time.Minute), Validity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	env, err := dsse.Sign(policy.PayloadType, e.Doc, f.anchors...)
	if err != nil {
		t.Fatal(err)
	}
	f.publish(contract.PolicyTopic, env)
	f.waitFor("serial 50", func() bool { pv, _ := f.c.Policy(); return pv.Serial == 50 })
	pv, _ := f.c.Policy()
	i := slices.IndexFunc(pv.Approvals, func(a ApprovalView) bool { return a.ID == "LA-2026-0018" })
	if i < 0 || !pv.Approvals[i].Revoked || pv.Approvals[i].RevokedSerial != 50 || len(pv.Approvals[i].RevokedBy) != 2 ||
		strings.Join(pv.Approvals[i].Remote, ",") != "198.51.100.0/24" {
		t.Fatalf("%+v", pv.Approvals)
	}
}

// TestExpiryWarnings: the fleet policy and each approval warn within the
// configured time of their expiry, say how far off it is, and say when it
// has passed; further off, nothing warns.
func TestExpiryWarnings(t *testing.T) {
	f := newFixture(t)
	// example.yaml: LA-2026-0017 valid until 2026-12-31T23:59:59Z, the
	// policy expires 2027-01-01T00:00:00Z.
	at := func(ts string) []Warning {
		t.Helper()
		f.mu.Lock()
		f.now, _ = time.Parse(time.RFC3339, ts)
		f.mu.Unlock()
		return f.c.Warnings()
	}
	if w := at("2026-12-10T00:00:00Z"); len(w) != 0 {
		t.Fatalf("22 days off: %+v", w)
	}
	w := at("2026-12-26T00:00:00Z")
	if len(w) != 2 || w[0].Kind != "policy" || w[0].Text != "the fleet policy (serial 42) expires in 6 days (2027-01-01T00:00:00Z)" ||
		w[1].Kind != "approval" || w[1].Subject != "approval LA-2026-0017" || !strings.Contains(w[1].Text, "expires in 5 days") {
		t.Fatalf("6 days off: %+v", w)
	}
	pv, _ := f.c.Policy()
	if !pv.Expiring || !pv.Approvals[0].Expiring || pv.Approvals[0].ValidFrom == nil || pv.Approvals[1].Expiring {
		t.Fatalf("view %+v", pv)
	}
	if w = at("2026-12-31T23:00:00Z"); len(w) != 2 || !strings.Contains(w[1].Text, "expires in 60 minutes") {
		t.Fatalf("an hour off: %+v", w)
	}
	if w = at("2027-01-02T00:00:00Z"); len(w) != 2 || !w[0].Expired || !strings.Contains(w[0].Text, "expired at 2027-01-01T00:00:00Z") {
		t.Fatalf("past: %+v", w)
	}
	b, _ := json.Marshal(f.c.State())
	if !strings.Contains(string(b), `"expiry_warning_days":14`) {
		t.Fatalf("state: %s", b)
	}
}

// FuzzReasonLine: whatever reason an operator types, the policy it is
// signed in means what it meant without it, the reason reads back as one
// line, and a later proposal's reason replaces it.
func FuzzReasonLine(f *testing.F) {
	for _, s := range []string{"scam calls, case 118", "a\nserial: 99", "x\r\napprovals: []", "\u2028expires: 2030-01-01T00:00:00Z", "# console: nested", "\x00\x7f", ""} {
		f.Add(s)
	}
	doc, err := os.ReadFile("../../policy/testdata/example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	want, err := policy.Parse(doc)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, reason string) {
		line := "revoke LA-1, proposed by alice at 2026-12-03T00:00:00Z: " + reason
		for _, d := range [][]byte{withReason(doc, line), withReason(withReason(doc, "before"), line)} {
			got, err := policy.Parse(d)
			if err != nil {
				t.Fatalf("with the reason the policy does not parse: %v\n%s", err, d)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("the reason changed the policy:\n%s", d)
			}
			if r := signedReason(d); r != cleanReason(line) || strings.ContainsAny(r, "\r\n") {
				t.Fatalf("reads back %q", r)
			}
		}
	})
}
