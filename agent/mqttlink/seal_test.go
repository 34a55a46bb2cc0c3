package mqttlink_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink"
	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/agent/report"
)

// TestBurstIsVouchedFor: a burst of events is signed sparingly (the first
// at once, then at most one per SignGap) and closed by a signed checkpoint,
// so a consumer holding the fleet CA vouches for every event within about
// SignGap, while the device pays for a handful of signatures, not one per
// event. Every report also verifies (the observer checks each one).
func TestBurstIsVouchedFor(t *testing.T) {
	e := newEnv(t, brokertest.KindMochi)
	const dev = "dev-burst"
	obs := e.observe(t, "console-burst", "linkguard/v1/"+dev+"/#")
	l := runLink(t, e.options(t, dev, t.TempDir()), nil)
	obs.waitFor(t, "agent.started", 15*time.Second, func(ms []msg) bool { return len(events(ms, dev)) >= 1 })
	const burst = 200
	for i := range burst {
		l.Emit("test.tick", report.Info, report.Fields{"n": i})
	}
	verifier := &contract.ReportVerifier{Roots: e.pki.Pool()}
	var tr contract.ChainTracker
	vouched, signed, checkpoints, seen := 0, 0, 0, 0
	obs.waitFor(t, "every event of the burst vouched for", 15*time.Second, func(ms []msg) bool {
		for _, m := range ms[seen:] {
			if !strings.HasSuffix(m.Topic, "/events") {
				continue
			}
			var ev contract.Event
			if err := json.Unmarshal(m.Payload, &ev); err != nil {
				t.Fatal(err)
			}
			_, err := verifier.Verify(contract.KindEvents, dev, m.Payload)
			if err == nil {
				signed++
				if ev.Type == mqttlink.ChainCheckpoint {
					checkpoints++
				}
			}
			vouched += len(tr.Add(dev, m.Payload, ev, err == nil).Verified)
		}
		seen = len(ms)
		return vouched >= burst+1
	})
	if tr.Pending(dev) != 0 {
		t.Errorf("%d events still wait", tr.Pending(dev))
	}
	if checkpoints == 0 || signed > 10 {
		t.Errorf("%d signatures (%d checkpoints) for %d events: want a few, closed by a checkpoint", signed, checkpoints, burst+1)
	}
	t.Logf("%d events vouched for by %d signatures (%d checkpoints)", vouched, signed, checkpoints)
}
