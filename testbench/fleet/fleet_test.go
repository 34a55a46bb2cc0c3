package fleet_test

import (
	"context"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/brokertest/embedded"
	"linkguard.dev/linkguard/hal/envtest"
	"linkguard.dev/linkguard/testbench/fleet"
	"linkguard.dev/linkguard/testbench/sim"
)

// run runs a small fleet and checks that every phase completed for every
// agent and that Run returns (it once hung waiting for agents it had not
// stopped).
func run(t *testing.T, url string) {
	t.Helper()
	const n = 50
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan struct{})
	var res *fleet.Result
	var err error
	go func() {
		defer close(done)
		res, err = fleet.Run(ctx, fleet.Options{Agents: n, Start: startDevice, Broker: url, Dir: t.TempDir(),
			TelemetryEvery: time.Second, Hold: 2 * time.Second, Timeout: 20 * time.Second})
	}()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("fleet.Run did not return")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", *res)
	if res.StayedOnline != n || res.IngestPerS <= 0 || res.PolicyPushS <= 0 || res.CommandAllS <= 0 {
		t.Fatalf("result %+v: want all %d agents through every phase", *res, n)
	}
}

func startDevice(ctx context.Context, d fleet.Device) error {
	return sim.RunBare(ctx, sim.BareOptions{ID: d.ID, Site: d.Site, Broker: d.Broker, Dir: d.Dir,
		CommitteePub: d.CommitteePub, OperatorPub: d.OperatorPub, TelemetryEvery: d.TelemetryEvery, Logger: d.Logger})
}

func TestFleetEmbeddedBroker(t *testing.T) {
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	run(t, b.URL())
}

func TestFleetMosquitto(t *testing.T) {
	envtest.Command(t, "mosquitto")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url, stop, err := fleet.StartMosquitto(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	run(t, url)
}
