package mqttlink_test

import (
	"encoding/json"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy/policytest"
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
