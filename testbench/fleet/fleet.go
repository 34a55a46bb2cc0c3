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
	"crypto/x509"
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
// It travels to an agent process as JSON.
type Device struct {
	ID             string        `json:"id"`
	Site           string        `json:"site"`
	Broker         string        `json:"broker"`            // tcp://host:port or mqtts://
	Brokers        []string      `json:"brokers,omitempty"` // further nodes, tried after Broker
	CA             string        `json:"ca,omitempty"`      // the broker's CA (mqtts)
	Cert           string        `json:"cert,omitempty"`    // its certificate (client TLS, report seals)
	Key            string        `json:"key,omitempty"`
	Dir            string        `json:"dir"` // its state directory
	TelemetryEvery time.Duration `json:"telemetry_every"`
	// CommitteePub and OperatorPub are the key files it trusts for
	// policies and for commands.
	CommitteePub string       `json:"committee_pub"`
	OperatorPub  string       `json:"operator_pub"`
	FanoutQoS0   bool         `json:"fanout_qos0,omitempty"` // mqtt.fanout_qos0
	Logger       *slog.Logger `json:"-"`
}

// Options describe one fleet run.
type Options struct {
	Agents int
	// Start runs one device until ctx ends; its error ends the run. With
	// Procs > 1 it is the agent processes' (ServeAgents), not this one's.
	Start   func(ctx context.Context, d Device) error
	Broker  string   // tcp://host:port, or mqtts:// with TLS
	Brokers []string // further nodes of a clustered broker
	// TLS are the console's and the harness's files for an mqtts broker
	// (an operator's identity).
	TLS console.TLSFiles
	// Identity, when set, issues each device its certificate: its TLS
	// client identity and the key that seals its reports. FleetCA, with
	// it, is what the console verifies the seals against.
	Identity func(id string) (cert, key string, err error)
	FleetCA  *x509.CertPool
	// Procs are the processes that hold the agents: 0 or 1 this one,
	// more are children started from Exec (a command that runs
	// ServeAgents with the same Start). ProcsFor sizes them.
	Procs int
	Exec  []string
	// Store is the console's store (a SQLite path or postgres:// URL):
	// the fleet's events are ingested into it. Empty: Dir/console.
	Store          string
	Dir            string        // state of every agent (queues, replay memory); required
	TelemetryEvery time.Duration // default 10s
	ConnectRate    int           // agents started per second; default 500
	Hold           time.Duration // how long to hold the fleet while measuring ingest; default 2×TelemetryEvery
	Timeout        time.Duration // for each phase; default 2m
	// Kill, when set, kills one node of a clustered broker half way
	// through the hold and returns the client ids that were connected to
	// it; the run measures how many of those devices are back within
	// KillWithin (default 60 s), and keeps counting telemetry throughout.
	Kill       func() ([]string, error)
	KillWithin time.Duration
	// FanoutQoS0 runs the agents with mqtt.fanout_qos0: one JetStream
	// consumer per device on NATS instead of three.
	FanoutQoS0 bool
	// BrokerPIDs are the broker's processes, for its CPU.
	BrokerPIDs func() []int
	Logger     *slog.Logger
}

// Result is what one run measured.
type Result struct {
	Agents          int     `json:"agents"`
	Broker          string  `json:"broker"`
	Procs           int     `json:"procs"`
	FanoutQoS0      bool    `json:"fanout_qos0,omitempty"`
	TelemetryEveryS float64 `json:"telemetry_every_s"`
	HoldS           float64 `json:"hold_s"`
	OnlineS         float64 `json:"online_s"`       // start of the first agent to every agent online
	PolicyPushS     float64 `json:"policy_push_s"`  // publish to every agent reporting the new serial
	CommandAllS     float64 `json:"command_all_s"`  // ping to all until every result is in
	IngestPerS      float64 `json:"ingest_per_s"`   // console messages per second while holding
	ExpectedPerS    float64 `json:"expected_per_s"` // telemetry the fleet should send per second
	// Telemetry during the hold as the console counted it by the
	// devices' seqs: received (distinct), missing (never arrived),
	// duplicates (redelivered).
	TelemetryReceived uint64  `json:"telemetry_received"`
	TelemetryMissing  uint64  `json:"telemetry_missing"`
	TelemetryDup      uint64  `json:"telemetry_duplicates"`
	StayedOnline      int     `json:"stayed_online"` // agents online at the end of the hold
	RSSMB             float64 `json:"rss_mb"`        // this process (the console, and the agents without Procs)
	AgentRSSMB        float64 `json:"agent_rss_mb"`  // the processes holding the agents
	KBPerAgent        float64 `json:"kb_per_agent"`
	FilesPerAgent     float64 `json:"files_per_agent"`
	// BrokerCPU is the broker's CPU over the hold, in cores (1.0 is one
	// core busy), when Options.BrokerPIDs names it.
	BrokerCPU  float64 `json:"broker_cpu_cores"`
	Goroutines int     `json:"goroutines"`
	// After a node kill: the devices that were on it, how many were back
	// (online, with a state published after the kill) within KillWithin,
	// and when 99.9% of them were.
	KilledNodeAgents int     `json:"killed_node_agents,omitempty"`
	BackAfterKill    int     `json:"back_after_kill,omitempty"`
	BackS            float64 `json:"back_999_s,omitempty"`
	// NotBack are the first of the killed node's devices not back within
	// KillWithin, with what the console last knew of each.
	NotBack []string `json:"not_back,omitempty"`
	Error   string   `json:"error,omitempty"`
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
	if opt.KillWithin <= 0 {
		opt.KillWithin = 60 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	raiseFileLimit()
	res = &Result{Agents: opt.Agents, Broker: opt.Broker, Procs: max(opt.Procs, 1), FanoutQoS0: opt.FanoutQoS0, TelemetryEveryS: opt.TelemetryEvery.Seconds(),
		HoldS: opt.Hold.Seconds(), ExpectedPerS: float64(opt.Agents) / opt.TelemetryEvery.Seconds()}
	defer func() {
		if err != nil {
			res.Error = err.Error()
		}
	}()
	if opt.Start == nil && opt.Procs <= 1 {
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
	// Certificates before the clock starts: issuing 10,000 takes seconds.
	idents := make([][2]string, opt.Agents)
	if opt.Identity != nil {
		for i := range opt.Agents {
			if idents[i][0], idents[i][1], err = opt.Identity(DeviceID(i)); err != nil {
				return res, err
			}
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	failed := make(chan error, 1)
	// One defer, in this order: the agents and the console stop with the
	// context, so it must be cancelled before waiting for them (two defers
	// ran the wait first and hung the command after a run).
	var closeStore func() error // after the console's Run has drained into it
	defer func() {
		cancel()
		wg.Wait()
		if closeStore != nil {
			err = errors.Join(err, closeStore())
		}
		select {
		case ferr := <-failed:
			err = errors.Join(err, ferr)
		default:
		}
	}()
	fail := func(e error) {
		select {
		case failed <- e:
		default:
		}
		cancel()
	}
	var kids *procs
	if opt.Procs > 1 {
		if kids, err = startProcs(ctx, opt.Exec, opt.Procs, fail); err != nil {
			return res, err
		}
		defer kids.close()
	}
	store := opt.Store
	if store == "" {
		store = filepath.Join(opt.Dir, "console.db")
	}
	// The console holds no key: the committee's and the operator's
	// messages go out from this harness's own client, as lgctl would send
	// them.
	// A persistent session, as a production console has (lgctl console
	// --client-id): what the fleet sends while the console's node is
	// killed is counted as lost only if the broker loses it.
	con, err := console.New(console.Options{Broker: opt.Broker, Brokers: opt.Brokers, TLS: opt.TLS, FleetCA: opt.FleetCA,
		ClientID: fmt.Sprintf("fleet-console-%d", time.Now().UnixNano()), Persistent: true,
		Trust: []ed25519.PublicKey{committee.Public().(ed25519.PublicKey)}, Store: store, Logger: opt.Logger})
	if err != nil {
		return res, err
	}
	closeStore = con.Close
	h, err := newHarnessClient(append([]string{opt.Broker}, opt.Brokers...), opt.TLS)
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
	for i := range opt.Agents {
		select {
		case <-tick.C:
		case <-ctx.Done():
			tick.Stop()
			return res, ctx.Err()
		}
		id := DeviceID(i)
		d := Device{ID: id, Site: SiteOf(i), Broker: opt.Broker, Brokers: opt.Brokers, CA: opt.TLS.CA,
			Cert: idents[i][0], Key: idents[i][1], Dir: filepath.Join(opt.Dir, id),
			TelemetryEvery: opt.TelemetryEvery, CommitteePub: committeePub, OperatorPub: operatorPub,
			FanoutQoS0: opt.FanoutQoS0, Logger: opt.Logger.With("device", id)}
		if kids != nil {
			if err := kids.start(d); err != nil {
				tick.Stop()
				return res, err
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := opt.Start(ctx, d); err != nil && ctx.Err() == nil {
				fail(fmt.Errorf("fleet: %s: %w", d.ID, err))
			}
		}()
	}
	tick.Stop()
	poll := min(time.Second, 100*time.Millisecond*time.Duration(max(1, opt.Agents/1000)))
	online := func(serial uint64) int {
		n := 0
		for _, d := range con.Devices() {
			if d.Online && d.PolicySerial >= serial && strings.HasPrefix(d.ID, "fleet-") {
				n++
			}
		}
		return n
	}
	if err := waitEvery(ctx, opt.Timeout, poll, func() bool { return online(0) >= opt.Agents }); err != nil {
		return res, fmt.Errorf("fleet: %d of %d online (%s): %w", online(0), opt.Agents, notOnline(con.Devices(), opt.Agents), err)
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
	if err := waitEvery(ctx, opt.Timeout, poll, func() bool { return online(1) >= opt.Agents }); err != nil {
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

	if err := hold(ctx, opt, con, res); err != nil {
		return res, err
	}
	res.StayedOnline = online(1)
	res.RSSMB = float64(report.RSS()) / (1 << 20)
	agentProc := procStat{RSS: report.RSS(), Files: statOf(os.Getpid()).Files}
	if kids != nil {
		agentProc = statsOf(kids.pids())
	}
	res.AgentRSSMB = float64(agentProc.RSS) / (1 << 20)
	res.KBPerAgent = float64(agentProc.RSS) / 1024 / float64(opt.Agents)
	res.FilesPerAgent = float64(agentProc.Files) / float64(opt.Agents)
	res.Goroutines = runtime.NumGoroutine()
	if _, err := h.publish(contract.PolicyTopic, nil); err != nil {
		return res, err
	}
	return res, nil
}

// hold keeps the fleet running for opt.Hold, measuring the console's
// ingest, the telemetry it counts by seq, the broker's CPU and, with
// opt.Kill, a node's death half way through.
func hold(ctx context.Context, opt Options, con *console.Console, res *Result) error {
	var pids []int
	if opt.BrokerPIDs != nil {
		pids = opt.BrokerPIDs()
	}
	cpu0 := statsOf(pids).CPU
	tel0, n0, h0 := con.Telemetry(), con.Ingested(), time.Now()
	sleep := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
			return nil
		}
	}
	if opt.Kill == nil {
		if err := sleep(opt.Hold); err != nil {
			return err
		}
	} else {
		if err := sleep(opt.Hold / 2); err != nil {
			return err
		}
		if err := killNode(ctx, opt, con, res); err != nil {
			return err
		}
		if err := sleep(time.Until(h0.Add(opt.Hold))); err != nil {
			return err
		}
	}
	// A telemetry period more, so what was sent by the end has arrived.
	tel1, n1, el := con.Telemetry(), con.Ingested(), time.Since(h0)
	if err := sleep(opt.TelemetryEvery); err != nil {
		return err
	}
	late := con.Telemetry()
	res.IngestPerS = float64(n1-n0) / el.Seconds()
	res.TelemetryReceived = tel1.Received - tel0.Received
	res.TelemetryMissing = late.Missing - tel0.Missing
	res.TelemetryDup = late.Duplicates - tel0.Duplicates
	if len(pids) > 0 {
		res.BrokerCPU = (statsOf(pids).CPU - cpu0).Seconds() / time.Since(h0).Seconds()
	}
	return nil
}

// killNode kills a broker node and waits for the devices that were on it
// to be back: online again with a state published after the kill.
func killNode(ctx context.Context, opt Options, con *console.Console, res *Result) error {
	ids, err := opt.Kill()
	if err != nil {
		return fmt.Errorf("fleet: kill a broker node: %w", err)
	}
	killed := time.Now()
	// Only the fleet's devices: the console's and the harness's client ids
	// start with "fleet-" too, and were counted as devices never back.
	devices := make(map[string]bool, opt.Agents)
	for i := range opt.Agents {
		devices[DeviceID(i)] = true
	}
	on := make(map[string]bool, len(ids))
	for _, id := range ids {
		if devices[id] {
			on[id] = true
		}
	}
	res.KilledNodeAgents = len(on)
	// A device is back when it is online, heard, with a state it
	// published after the kill.
	isBack := func(d *console.Device) bool { return d.Online && !d.Silent && d.StateAt.After(killed) }
	back := func() int {
		n := 0
		for _, d := range con.Devices() {
			if on[d.ID] && isBack(&d) {
				n++
			}
		}
		return n
	}
	want := (len(on)*999 + 999) / 1000
	deadline := killed.Add(opt.KillWithin)
	for time.Now().Before(deadline) {
		if n := back(); n >= want && res.BackS == 0 {
			res.BackS = time.Since(killed).Seconds()
		}
		if back() == len(on) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	res.BackAfterKill = back()
	for _, d := range con.Devices() {
		if on[d.ID] && !isBack(&d) && len(res.NotBack) < 20 {
			res.NotBack = append(res.NotBack, fmt.Sprintf("%s: online %v, silent %v, state %s after the kill, telemetry %s after, verified %v",
				d.ID, d.Online, d.Silent, d.StateAt.Sub(killed).Round(time.Millisecond), d.TelemetryAt.Sub(killed).Round(time.Millisecond), d.Verified))
		}
	}
	return nil
}

// DeviceID is the id of the fleet's i-th simulated device.
func DeviceID(i int) string { return fmt.Sprintf("fleet-%05d", i) }

// SiteOf is the site of the i-th device: the fleet spreads over 100.
func SiteOf(i int) string { return fmt.Sprintf("site-%03d", i%100) }

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
	return waitEvery(ctx, within, 100*time.Millisecond, cond)
}

// waitEvery is waitFor checking cond every period: the fleet-wide
// conditions copy every device from the console, which at 10,000 devices
// costs the console's ingest more than a finer figure is worth.
func waitEvery(ctx context.Context, within, period time.Duration, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(period):
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
	fmt.Fprintf(w, "%7s %5s %9s %9s %9s %9s %9s %8s %8s %8s %7s %6s %7s %8s  %s\n", "agents", "procs", "online_s", "policy_s", "cmd_all_s",
		"ingest/s", "expect/s", "tel_lost", "KB/agent", "fd/agent", "brk_cpu", "held", "killed", "back_s", "error")
	for _, r := range rs {
		killed, back := "-", "-"
		if r.KilledNodeAgents > 0 {
			killed, back = fmt.Sprintf("%d/%d", r.BackAfterKill, r.KilledNodeAgents), fmt.Sprintf("%.1f", r.BackS)
		}
		fmt.Fprintf(w, "%7d %5d %9.2f %9.2f %9.2f %9.1f %9.1f %8d %8.0f %8.1f %7.2f %6d %7s %8s  %s\n", r.Agents, r.Procs, r.OnlineS, r.PolicyPushS,
			r.CommandAllS, r.IngestPerS, r.ExpectedPerS, r.TelemetryMissing, r.KBPerAgent, r.FilesPerAgent, r.BrokerCPU, r.StayedOnline, killed, back, r.Error)
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

// notOnline says why the devices not online are not: never heard of,
// offline by their state (the will, or never online), or silent (online by
// their state, but nothing heard for longer than the console's silence).
func notOnline(devs []console.Device, agents int) string {
	seen, offline, silent := 0, 0, 0
	for _, d := range devs {
		if !strings.HasPrefix(d.ID, "fleet-") {
			continue
		}
		seen++
		switch {
		case d.Silent:
			silent++
		case !d.Online:
			offline++
		}
	}
	return fmt.Sprintf("%d never heard of, %d offline, %d silent", agents-seen, offline, silent)
}
