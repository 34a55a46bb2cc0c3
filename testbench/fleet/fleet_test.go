package fleet_test

import (
	"context"
	"log/slog"
	"os"
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
func run(t *testing.T, url string, procs int) {
	t.Helper()
	const n = 50
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan struct{})
	var res *fleet.Result
	var err error
	go func() {
		defer close(done)
		o := fleet.Options{Agents: n, Start: sim.RunFleetDevice, Broker: url, Dir: t.TempDir(),
			TelemetryEvery: time.Second, Hold: 2 * time.Second, Timeout: 20 * time.Second}
		if procs > 1 {
			// This test binary is the agent processes too (TestMain).
			o.Procs, o.Exec = procs, []string{os.Args[0]}
		}
		res, err = fleet.Run(ctx, o)
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
	// Two seconds of telemetry every second from 50 agents, counted by
	// their seqs: none missing.
	if res.TelemetryReceived < n || res.TelemetryMissing != 0 || res.Procs != max(procs, 1) {
		t.Fatalf("result %+v: want at least %d telemetry received, none missing, %d processes", *res, n, max(procs, 1))
	}
	if procs > 1 && (res.AgentRSSMB <= 0 || res.FilesPerAgent <= 0) {
		t.Fatalf("result %+v: the agent processes were not measured", *res)
	}
}

// TestMain makes this binary an agent process when the fleet starts it
// as one: devices arrive as JSON lines on its standard input.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		if err := fleet.ServeAgents(context.Background(), os.Stdin, sim.RunFleetDevice, log); err != nil {
			log.Error("agent process", "err", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childEnv set to 1 (by TestFleetProcesses, inherited by its children)
// makes a process of this binary an agent process.
const childEnv = "LG_FLEET_TEST_AGENTS"

func TestFleetEmbeddedBroker(t *testing.T) {
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	run(t, b.URL(), 1)
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
	run(t, url, 1)
}

// TestFleetProcesses: the agents held by two child processes (as a fleet
// beyond one process's open-file limit is) go through every phase, and
// the children are measured.
func TestFleetProcesses(t *testing.T) {
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	t.Setenv(childEnv, "1")
	run(t, b.URL(), 2)
}
