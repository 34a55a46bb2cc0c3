package mqttlink_test

import (
	"encoding/json"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy/policytest"
	"linkguard.dev/linkguard/policy/roster"
	"linkguard.dev/linkguard/policy/roster/rostertest"
	"linkguard.dev/linkguard/policy/store"
)

// TestStateFollowsPolicyFromFile: a policy the store applies from
// elsewhere than MQTT (the policy file watcher) is republished in the
// retained state too, so the console sees the serial the device enforces.
func TestStateFollowsPolicyFromFile(t *testing.T) {
	e := newEnv(t, brokertest.KindMochi)
	const dev = "dev-file-policy"
	obs := e.observe(t, "console-file-policy", "linkguard/v1/"+dev+"/state")
	committee := policytest.Key(t)
	st, err := store.New(store.Options{Trust: policytest.Keyring(committee), Threshold: 1, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	opt := e.options(t, dev, t.TempDir())
	opt.Policy = st
	runLink(t, opt, nil)
	lastSerial := func(ms []msg) (uint64, bool) {
		var s contract.State
		if len(ms) == 0 || json.Unmarshal(ms[len(ms)-1].Payload, &s) != nil || !s.Online || s.Policy == nil {
			return 0, false
		}
		return s.Policy.Serial, true
	}
	obs.waitFor(t, "online state without a policy", 15*time.Second, func(ms []msg) bool {
		s, ok := lastSerial(ms)
		return ok && s == 0
	})
	pol := policytest.Synthetic(10, 1)
	pol.Serial, pol.Issued, pol.Expires = 9, time.Now().Add(-time.Hour).UTC().Truncate(time.Second), time.Now().AddDate(0, 1, 0).UTC().Truncate(time.Second)
	if _, err := st.Apply(policytest.Sign(t, policytest.YAML(pol), committee), "file"); err != nil {
		t.Fatal(err)
	}
	obs.waitFor(t, "state with serial 9", 15*time.Second, func(ms []msg) bool {
		s, ok := lastSerial(ms)
		return ok && s == 9
	})
}

// TestStateNamesTheRoster: the retained state carries the serial and expiry
// of the roster in force (0 before there is one), republished when a roster
// comes into force from any source; the state keeps the contract.
func TestStateNamesTheRoster(t *testing.T) {
	e := newEnv(t, brokertest.KindMochi)
	const dev = "dev-roster-state"
	obs := e.observe(t, "console-roster-state", "linkguard/v1/"+dev+"/state")
	committee := policytest.Key(t)
	now := time.Now().UTC().Truncate(time.Second)
	rost, err := roster.New(roster.Options{Anchors: policytest.Keyring(committee), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	opt := e.options(t, dev, t.TempDir())
	opt.Roster = rost
	runLink(t, opt, nil)
	last := func(ms []msg) *contract.RosterState {
		var s contract.State
		if len(ms) == 0 || json.Unmarshal(ms[len(ms)-1].Payload, &s) != nil || !s.Online {
			return nil
		}
		return s.Roster
	}
	obs.waitFor(t, "online state naming no roster", 15*time.Second, func(ms []msg) bool {
		r := last(ms)
		return r != nil && r.Serial == 0 && r.Expires == nil
	})
	expires := now.AddDate(0, 6, 0)
	spec := rostertest.Spec{Serial: 3, Issued: now.Add(-time.Hour), Expires: expires,
		Members: []rostertest.Member{rostertest.NewMember(t, "tech", roster.Technician)}}
	if _, err := rost.Apply(rostertest.Sign(t, rostertest.YAML(spec), committee), "file"); err != nil {
		t.Fatal(err)
	}
	obs.waitFor(t, "state naming roster 3", 15*time.Second, func(ms []msg) bool {
		r := last(ms)
		return r != nil && r.Serial == 3 && r.Expires != nil && r.Expires.Equal(expires)
	})
}
