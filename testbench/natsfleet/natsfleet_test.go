package natsfleet_test

import (
	"context"
	"testing"
	"time"

	"linkguard.dev/linkguard/testbench/fleet"
	"linkguard.dev/linkguard/testbench/natsfleet"
	"linkguard.dev/linkguard/testbench/sim"
)

// TestFleetKillNode is `testbench fleet --nats --kill-node` in small: a
// node of the 3-node cluster is killed with SIGKILL half way through the
// hold, with the console on it. Every device that was on it is back on
// another node, every device is online at the end, and the persistent
// console misses no telemetry (it once subscribed to telemetry at QoS 0
// and lost what came while it reconnected). The console's and the
// harness's own connections are not counted as devices (they were, and
// the run reported devices that never came back).
func TestFleetKillNode(t *testing.T) {
	const n = 30
	c, err := natsfleet.Start(t.TempDir(), n)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	o := fleet.Options{Agents: n, Start: sim.RunFleetDevice, Dir: t.TempDir(), FanoutQoS0: true,
		TelemetryEvery: time.Second, Hold: 16 * time.Second, Timeout: time.Minute, KillWithin: 30 * time.Second}
	c.Options(&o)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := fleet.Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", *res)
	if res.KilledNodeAgents == 0 || res.KilledNodeAgents >= n {
		t.Fatalf("%d of %d devices on the killed node: want some, not all (BrokerOrder spreads them)", res.KilledNodeAgents, n)
	}
	if res.BackAfterKill != res.KilledNodeAgents || res.BackS <= 0 || len(res.NotBack) > 0 {
		t.Fatalf("%d of the killed node's %d devices back (99.9%% after %.1f s); not back: %q", res.BackAfterKill, res.KilledNodeAgents, res.BackS, res.NotBack)
	}
	if res.StayedOnline != n || res.CommandAllS <= 0 || res.PolicyPushS <= 0 {
		t.Fatalf("result %+v: want all %d devices through every phase and online at the end", *res, n)
	}
	if res.TelemetryReceived < n || res.TelemetryMissing != 0 {
		t.Fatalf("telemetry through the kill: %d received, %d missing; want none missing", res.TelemetryReceived, res.TelemetryMissing)
	}
}
