package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/config/configtest"
)

// TestPolicyExplainField: what a technician in the field gets wrong is an
// error that says what to do, and a miss says what would have matched.
func TestPolicyExplainField(t *testing.T) {
	dir := t.TempDir()
	now := time.Now().UTC().Truncate(time.Second)
	doc := policyDoc(5,
		"{id: LA-1, holder: Bank, remote: [203.0.113.0/24], services: [tcp/443, udp/5060-5061], sites: [north, south]}",
		"{id: LA-2, holder: Shop, remote: [198.51.100.0/24], valid_from: "+now.Add(48*time.Hour).Format(time.RFC3339)+"}",
		"{id: LA-3, holder: Port, remote: [192.0.2.0/24], valid_until: "+now.Add(-72*time.Hour).Format(time.RFC3339)+"}")
	signed, pub := signedPolicy(t, dir, doc)
	draft := filepath.Join(dir, "draft.yaml")
	if err := os.WriteFile(draft, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"policy", "explain", "--policy", signed, "--trust", pub, "--src", "103.1.0.5"}
	for _, tc := range []struct {
		name    string
		args    []string
		want    []string // in stdout, or in the error
		wantErr bool
	}{
		{"service miss names the services", []string{"--site", "north", "--dst", "203.0.113.5", "--dport", "22"},
			[]string{"verdict:  DENIED", "LA-1 (Bank) lists 203.0.113.0/24: site ok, service NO, window ok", "services: tcp/443, udp/5060-5061"}, false},
		{"site miss names the sites", []string{"--site", "south", "--dst", "203.0.113.5", "--dport", "443"},
			[]string{"verdict:  APPROVED", "approval: LA-1 (Bank)", `at site "south"`}, false},
		{"window not open yet", []string{"--site", "north", "--dst", "198.51.100.1", "--dport", "80"},
			[]string{"window NO", "valid:    from " + now.Add(48*time.Hour).Format(time.RFC3339) + " until revoked (opens in 2 days)"}, false},
		{"window lapsed", []string{"--site", "north", "--dst", "192.0.2.1", "--proto", "icmp"},
			[]string{"icmp 103.1.0.5 -> 192.0.2.1 at site", "window NO", "until " + now.Add(-72*time.Hour).Format(time.RFC3339) + " (lapsed 3 days ago)"}, false},
		{"misspelt site", []string{"--site", "nrth", "--dst", "203.0.113.5", "--dport", "443"},
			[]string{`unknown site "nrth"`, "known sites: north, south"}, true},
		{"missing site with restricted approvals", []string{"--dst", "203.0.113.5", "--dport", "443"},
			[]string{"--site is required", "LA-1", "known sites: north, south"}, true},
		{"tcp without a port", []string{"--site", "north", "--dst", "203.0.113.5"},
			[]string{"--dport is required for tcp"}, true},
		{"udp with port 0", []string{"--site", "north", "--dst", "203.0.113.5", "--proto", "udp", "--dport", "0"},
			[]string{"--dport is required for udp"}, true},
		{"icmp with a port", []string{"--site", "north", "--dst", "203.0.113.5", "--proto", "icmp", "--dport", "7"},
			[]string{"icmp has no ports"}, true},
	} {
		out, _, err := run(append(base, tc.args...)...)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err=%v\n%s", tc.name, err, out)
			continue
		}
		if err != nil {
			out = err.Error()
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: lacks %q:\n%s", tc.name, w, out)
			}
		}
	}

	// An unsigned draft is judged with --draft, labelled; handed to
	// --policy it is refused with the way out, not a JSON error.
	out, _, err := run("policy", "explain", "--draft", draft, "--site", "north", "--src", "103.1.0.5", "--dst", "203.0.113.5", "--dport", "443")
	if err != nil || !strings.Contains(out, "UNSIGNED DRAFT: this policy is not signed") || !strings.Contains(out, "policy:   UNSIGNED DRAFT, serial 5") || !strings.Contains(out, "verdict:  APPROVED") {
		t.Errorf("draft: %v\n%s", err, out)
	}
	_, _, err = run("policy", "explain", "--policy", draft, "--trust", pub, "--site", "north", "--src", "103.1.0.5", "--dst", "203.0.113.5", "--dport", "443")
	if err == nil || !strings.Contains(err.Error(), "pass it with --draft") {
		t.Errorf("draft as --policy: %v", err)
	}
	_, _, err = run("policy", "explain", "--draft", signed, "--site", "north", "--src", "103.1.0.5", "--dst", "203.0.113.5", "--dport", "443")
	if err == nil || !strings.Contains(err.Error(), "is a signed envelope, not a draft") {
		t.Errorf("signed as --draft: %v", err)
	}
	_, _, err = run("policy", "explain", "--site", "north", "--src", "103.1.0.5", "--dst", "203.0.113.5", "--dport", "443")
	if err == nil || !strings.Contains(err.Error(), "no policy: give --policy FILE") {
		t.Errorf("no policy: %v", err)
	}
	_, _, err = run("policy", "explain", "--policy", signed, "--src", "103.1.0.5", "--dst", "203.0.113.5", "--dport", "443")
	if err == nil || !strings.Contains(err.Error(), "--trust is required") {
		t.Errorf("no trust: %v", err)
	}
}

// TestPolicyExplainConfig: --config takes policy, trust and site from the
// device's configuration; flags given explicitly win.
func TestPolicyExplainConfig(t *testing.T) {
	d := configtest.Router(t)
	out, stderr, err := run("policy", "explain", "--config", d.Config, "--src", "103.1.0.5", "--dst", "203.0.113.5", "--dport", "443")
	if err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	if !strings.Contains(out, `at site "north"`) || !strings.Contains(out, "policy:   serial ") {
		t.Errorf("config:\n%s", out)
	}
	// The device's own site is known even when no approval names it, but
	// a typo is not.
	if _, _, err := run("policy", "explain", "--config", d.Config, "--site", "nort", "--src", "103.1.0.5", "--dst", "203.0.113.5", "--dport", "443"); err == nil ||
		!strings.Contains(err.Error(), `unknown site "nort"`) || !strings.Contains(err.Error(), "north") {
		t.Errorf("typo under config: %v", err)
	}
	if _, _, err := run("policy", "explain", "--config", filepath.Join(d.Dir, "nope.yaml"), "--src", "103.1.0.5", "--dst", "203.0.113.5", "--dport", "443"); err == nil {
		t.Error("a missing configuration was accepted")
	}
}

// TestPolicyVerifyNamesSigners: verify names the signing keys by file and
// id, and gives the expiry as a date and days, not as hours.
func TestPolicyVerifyNamesSigners(t *testing.T) {
	dir := t.TempDir()
	now := time.Now().UTC().Truncate(time.Second)
	doc := "serial: 2\nissued: " + now.Add(-time.Hour).Format(time.RFC3339) + "\nexpires: " +
		now.Add(210*24*time.Hour+5*time.Hour).Format(time.RFC3339) + "\ndomestic: [103.1.0.0/16]\napprovals: []\n"
	pol, pub := signedPolicy(t, dir, doc)
	out, _, err := run("policy", "verify", "--trust", pub, pol)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"(in 210 days 5h)", "signed by: 1 of 1 trusted key(s), 1 needed: c.pub ("} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "h0m0s") {
		t.Errorf("expiry in hours:\n%s", out)
	}
}
