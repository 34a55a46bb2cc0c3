// Package fleet measures a fleet of simulated devices against a real broker
// (`testbench fleet`), from where the operator sits: how long the fleet
// takes to come online, to apply a fleet-wide policy push, and to answer a
// command fanned out to all, and the console's ingest rate meanwhile. The
// devices are the caller's (Options.Start: the testbench starts agent.Run
// for each, with no hardware behind it), so that this package, like the
// console, knows them only through the topic contract.
//
// It imports the console, the contract and policy signing; never the
// device side (mqttlink, queue, policy/store, agent). Nothing outside
// testbench imports it.
package fleet

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/console"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
)

// Device is one device of the fleet, as Options.Start is asked to run it.
type Device struct {
	ID, Site       string
	Broker         string // tcp://host:port
	Dir            string // its state directory
	TelemetryEvery time.Duration
	// CommitteePub and OperatorPub are the key files it trusts for
	// policies and for commands.
	CommitteePub, OperatorPub string
	Logger                    *slog.Logger
}

// Options describe one fleet run.
type Options struct {
	Agents int
	// Start runs one device until ctx ends; its error ends the run.
	Start          func(ctx context.Context, d Device) error
	Broker         string        // tcp://host:port
	Dir            string        // state of every agent (queues, replay memory); required
	TelemetryEvery time.Duration // default 10s
	ConnectRate    int           // agents started per second; default 500
	Hold           time.Duration // how long to hold the fleet while measuring ingest; default 2×TelemetryEvery
	Timeout        time.Duration // for each phase; default 2m
	Logger         *slog.Logger
}

// Result is what one run measured.
type Result struct {
	Agents          int     `json:"agents"`
	Broker          string  `json:"broker"`
	TelemetryEveryS float64 `json:"telemetry_every_s"`
	OnlineS         float64 `json:"online_s"`       // start of the first agent to every agent online
	PolicyPushS     float64 `json:"policy_push_s"`  // publish to every agent reporting the new serial
	CommandAllS     float64 `json:"command_all_s"`  // ping to all until every result is in
	IngestPerS      float64 `json:"ingest_per_s"`   // console messages per second while holding
	ExpectedPerS    float64 `json:"expected_per_s"` // telemetry the fleet should send per second
	StayedOnline    int     `json:"stayed_online"`  // agents online at the end of the hold
	RSSMB           float64 `json:"rss_mb"`         // this process (agents + console)
	Goroutines      int     `json:"goroutines"`
	Error           string  `json:"error,omitempty"`
}

// Run starts the fleet, measures it and stops it.
func Run(ctx context.Context, opt Options) (res *Result, err error) {
	if opt.TelemetryEvery <= 0 {
		opt.TelemetryEvery = 10 * time.Second
	}
	if opt.ConnectRate <= 0 {
		opt.ConnectRate = 500
	}
	if opt.Hold <= 0 {
		opt.Hold = 2 * opt.TelemetryEvery
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 2 * time.Minute
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	raiseFileLimit()
	res = &Result{Agents: opt.Agents, Broker: opt.Broker, TelemetryEveryS: opt.TelemetryEvery.Seconds(),
		ExpectedPerS: float64(opt.Agents) / opt.TelemetryEvery.Seconds()}
	defer func() {
		if err != nil {
			res.Error = err.Error()
		}
	}()
	if opt.Start == nil {
		return res, errors.New("fleet: Options.Start is required")
	}
	if err := checkWatchLimit(opt.Agents); err != nil {
		return res, err
	}
	keyDir := filepath.Join(opt.Dir, "keys")
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		return res, err
	}
	committeeKey, committeePub, err := dsse.GenerateKeyFiles(keyDir, "committee")
	if err != nil {
		return res, err
	}
	operatorKey, operatorPub, err := dsse.GenerateKeyFiles(keyDir, "operator")
	if err != nil {
		return res, err
	}
	committee, err := dsse.LoadPrivateKey(committeeKey)
	if err != nil {
		return res, err
	}
	operator, err := dsse.LoadPrivateKey(operatorKey)
	if err != nil {
		return res, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// One defer, in this order: the agents and the console stop with the
	// context, so it must be cancelled before waiting for them (two defers
	// ran the wait first and hung the command after a run).
	defer func() {
		cancel()
		wg.Wait()
	}()
	// The console holds no key: the committee's and the operator's
	// messages go out from this harness's own client, as lgctl would send
	// them.
	con, err := console.New(console.Options{Broker: opt.Broker, Trust: []ed25519.PublicKey{committee.Public().(ed25519.PublicKey)}, Logger: opt.Logger})
	if err != nil {
		return res, err
	}
	defer con.Close()
	h, err := newHarnessClient(opt.Broker)
	if err != nil {
		return res, err
	}
	defer h.close()
	wg.Add(1)
	go func() { defer wg.Done(); con.Run(ctx) }()
	if err := waitFor(ctx, opt.Timeout, func() bool { up, _ := con.Connected(); return up }); err != nil {
		return res, fmt.Errorf("fleet: console did not connect: %w", err)
	}
	// Clear what an earlier run left retained.
	if _, err := h.publish(contract.PolicyTopic, nil); err != nil {
		return res, err
	}

	t0 := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(opt.ConnectRate))
	failed := make(chan error, 1)
	for i := range opt.Agents {
		<-tick.C
		id := fmt.Sprintf("fleet-%05d", i)
		d := Device{ID: id, Site: fmt.Sprintf("site-%03d", i%100), Broker: opt.Broker, Dir: filepath.Join(opt.Dir, id),
			TelemetryEvery: opt.TelemetryEvery, CommitteePub: committeePub, OperatorPub: operatorPub,
			Logger: opt.Logger.With("device", id)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := opt.Start(ctx, d); err != nil && ctx.Err() == nil {
				select {
				case failed <- fmt.Errorf("fleet: %s: %w", d.ID, err):
				default:
				}
				cancel()
			}
		}()
	}
	tick.Stop()
	defer func() {
		select {
		case ferr := <-failed:
			err = errors.Join(err, ferr)
		default:
		}
	}()
	online := func(serial uint64) int {
		n := 0
		for _, d := range con.Devices() {
			if d.Online && d.PolicySerial >= serial && strings.HasPrefix(d.ID, "fleet-") {
				n++
			}
		}
		return n
	}
	if err := waitFor(ctx, opt.Timeout, func() bool { return online(0) >= opt.Agents }); err != nil {
		return res, fmt.Errorf("fleet: %d of %d online: %w", online(0), opt.Agents, err)
	}
	res.OnlineS = time.Since(t0).Seconds()

	env, err := dsse.Sign(policy.PayloadType, policyYAML(1, time.Now()), committee)
	if err != nil {
		return res, err
	}
	t1 := time.Now()
	if _, err := h.publish(contract.PolicyTopic, env); err != nil {
		return res, err
	}
	if err := waitFor(ctx, opt.Timeout, func() bool { return online(1) >= opt.Agents }); err != nil {
		return res, fmt.Errorf("fleet: policy applied by %d of %d: %w", online(1), opt.Agents, err)
	}
	res.PolicyPushS = time.Since(t1).Seconds()

	t2 := time.Now()
	now := time.Now().UTC()
	ping := command.Payload{ID: fmt.Sprintf("fleet-ping-%d", now.UnixNano()), Target: "all", Issued: now, Expires: now.Add(10 * time.Minute), Type: command.Ping}
	cmdEnv, err := command.Sign(ping, operator)
	if err != nil {
		return res, err
	}
	if err := h.send(contract.AllCmdTopic, cmdEnv, ping.ID); err != nil {
		return res, err
	}
	results := func() int { return h.answered(ping.ID) }
	if err := waitFor(ctx, opt.Timeout, func() bool { return results() >= opt.Agents }); err != nil {
		return res, fmt.Errorf("fleet: %d of %d answered: %w", results(), opt.Agents, err)
	}
	res.CommandAllS = time.Since(t2).Seconds()

	n0, h0 := con.Ingested(), time.Now()
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(opt.Hold):
	}
	res.IngestPerS = float64(con.Ingested()-n0) / time.Since(h0).Seconds()
	res.StayedOnline = online(1)
	res.RSSMB = float64(report.RSS()) / (1 << 20)
	res.Goroutines = runtime.NumGoroutine()
	if _, err := h.publish(contract.PolicyTopic, nil); err != nil {
		return res, err
	}
	return res, nil
}

// policyYAML is the fleet-wide policy the run pushes: one approval, every
// site.
func policyYAML(serial uint64, now time.Time) []byte {
	return fmt.Appendf(nil, `serial: %d
issued: %s
expires: %s
default: deny
domestic: [103.1.0.0/16]
approvals:
  - {id: LA-FLEET-1, holder: Fleet Test, remote: [203.0.113.0/24]}
`, serial, now.UTC().Add(-time.Minute).Format(time.RFC3339), now.AddDate(0, 1, 0).UTC().Format(time.RFC3339))
}

// checkWatchLimit makes sure the kernel lets this user watch files for the
// whole fleet: every device watches its policy and roster files (an
// inotify instance each), and the agents of the one user share
// fs.inotify.max_user_instances. As root it raises the limit; otherwise a
// fleet over it is refused with the command that would.
func checkWatchLimit(agents int) error {
	const path = "/proc/sys/fs/inotify/max_user_instances"
	b, err := os.ReadFile(path)
	if err != nil {
		return nil // not Linux, or no procfs: let the devices find out
	}
	limit, err := strconv.Atoi(strings.TrimSpace(string(b)))
	need := 2*agents + 16
	if err != nil || need <= limit {
		return nil
	}
	if os.WriteFile(path, []byte(strconv.Itoa(need+1024)), 0o644) == nil {
		return nil
	}
	return fmt.Errorf("fleet: %d agents watch %d policy and roster files, over fs.inotify.max_user_instances (%d) less a margin for the rest of the machine: raise it (sysctl -w fs.inotify.max_user_instances=%d)",
		agents, 2*agents, limit, need+1024)
}

func waitFor(ctx context.Context, within time.Duration, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// raiseFileLimit lifts the open-file limit as far as it goes: each agent
// holds a socket and its queue files (about five descriptors), so 4,000
// agents already exhaust a 20,000 limit. As root the hard limit may rise to
// fs.nr_open; otherwise the soft limit rises to the hard one. A mosquitto
// started afterwards inherits it.
func raiseFileLimit() {
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) != nil {
		return
	}
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n > r.Max {
			if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n}) == nil {
				return
			}
		}
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	}
}

// Print writes results as a table.
func Print(w io.Writer, rs []*Result) {
	fmt.Fprintf(w, "%7s %9s %10s %10s %10s %10s %8s %8s  %s\n", "agents", "online_s", "policy_s", "cmd_all_s", "ingest/s", "expect/s", "rss_MB", "held", "error")
	for _, r := range rs {
		fmt.Fprintf(w, "%7d %9.2f %10.2f %10.2f %10.1f %10.1f %8.0f %8d  %s\n", r.Agents, r.OnlineS, r.PolicyPushS, r.CommandAllS, r.IngestPerS, r.ExpectedPerS, r.RSSMB, r.StayedOnline, r.Error)
	}
}

// WriteJSON writes results to path.
func WriteJSON(path string, rs []*Result) error {
	b, err := json.MarshalIndent(rs, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
