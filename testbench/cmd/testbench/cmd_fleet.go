package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/testbench/fleet"
	"linkguard.dev/linkguard/testbench/natsfleet"
	"linkguard.dev/linkguard/testbench/sim"
)

// newFleetAgentsCmd is a fleet run's child process: it runs the devices
// its parent writes to its standard input (fleet.ServeAgents).
func newFleetAgentsCmd() *cobra.Command {
	var level slog.Level = slog.LevelError
	cmd := &cobra.Command{
		Use:    "fleet-agents",
		Short:  "Run the devices given as JSON lines on standard input (a child of testbench fleet)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			return fleet.ServeAgents(cmd.Context(), os.Stdin, sim.RunFleetDevice, log)
		},
	}
	cmd.Flags().TextVar(&level, "log-level", &level, "the agents' log level")
	return cmd
}

func newFleetCmd() *cobra.Command {
	var (
		agents    string
		opt       fleet.Options
		mosquitto bool
		nats      bool
		killNode  bool
		report    string
		stateDir  string
		agentLog  string
		brokerLog string
	)
	cmd := &cobra.Command{
		Use:   "fleet --agents N[,N...] (--broker URL | --mosquitto | --nats [--kill-node])",
		Short: "Run N agents with no hardware against a real broker and measure the fleet",
		Long: `Run N agents with no hardware against a real broker and measure the fleet:
time to online, a fleet-wide policy push, a command to all, then a hold measuring
the console's ingest and the telemetry it counts missing by the devices' seqs,
memory and descriptors per agent and the broker's CPU. --nats runs a 3-node NATS
Server cluster (TLS, a certificate and permissions per device, reports sealed and
verified); --kill-node kills its first node with SIGKILL half way through the hold
and measures how many of its devices are back within 60 s. Agents are spread over
child processes (--procs; by default as many as the open-file limit needs).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opt.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
			self, err := os.Executable()
			if err != nil {
				return err
			}
			procs := opt.Procs
			var rs []*fleet.Result
			for _, s := range strings.Split(agents, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil || n <= 0 {
					return fmt.Errorf("--agents: %q is not a positive number", s)
				}
				o := opt
				o.Agents = n
				o.Start = sim.RunFleetDevice
				o.Exec = []string{self, "fleet-agents", "--log-level", agentLog}
				if o.Procs = procs; o.Procs <= 0 {
					o.Procs = fleet.ProcsFor(n, fleet.FileLimit())
				}
				dir, err := os.MkdirTemp(stateDir, "linkguard-fleet-")
				if err != nil {
					return err
				}
				o.Dir = dir
				if o.Store == "" {
					// The central side's store is on disk, as it would be.
					sdir, err := os.MkdirTemp("", "linkguard-fleet-store-")
					if err != nil {
						os.RemoveAll(dir)
						return err
					}
					defer os.RemoveAll(sdir)
					o.Store = filepath.Join(sdir, "console.db")
				}
				stop := func() {}
				switch {
				case nats:
					fmt.Fprintf(cmd.ErrOrStderr(), "fleet: starting a 3-node NATS cluster for %d devices…\n", n)
					c, err := natsfleet.Start(dir, n)
					if err != nil {
						os.RemoveAll(dir)
						return err
					}
					c.Options(&o)
					if !killNode {
						o.Kill = nil
					}
					stop = func() {
						if brokerLog != "" {
							for _, node := range c.Nodes.Nodes {
								path := filepath.Join(brokerLog, fmt.Sprintf("nats-%d-%s.log", n, node.Name))
								if err := os.WriteFile(path, []byte(node.Output()), 0o644); err != nil {
									fmt.Fprintf(cmd.ErrOrStderr(), "fleet: %v\n", err)
								}
							}
						}
						c.Close()
					}
				case mosquitto:
					if o.Broker, stop, err = fleet.StartMosquitto(cmd.Context(), dir); err != nil {
						os.RemoveAll(dir)
						return err
					}
					o.BrokerPIDs = func() []int { return fleet.PIDsUnder(dir) }
				case o.Broker == "":
					return errors.New("--broker, --mosquitto or --nats is required")
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "fleet: %d agents in %d processes against %s…\n", n, max(o.Procs, 1), o.Broker)
				r, err := fleet.Run(cmd.Context(), o)
				stop()
				os.RemoveAll(dir)
				rs = append(rs, r)
				fleet.Print(cmd.OutOrStdout(), []*fleet.Result{r})
				if err != nil || cmd.Context().Err() != nil {
					break
				}
			}
			fmt.Fprintln(cmd.OutOrStdout())
			fleet.Print(cmd.OutOrStdout(), rs)
			if report != "" {
				if err := fleet.WriteJSON(report, rs); err != nil {
					return err
				}
			}
			// A run that did not complete fails the command (make fleet).
			for _, r := range rs {
				if r != nil && r.Error != "" {
					return fmt.Errorf("fleet: %d agents: %s", r.Agents, r.Error)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&agents, "agents", "100", "number of agents; a comma-separated list runs each in turn")
	f.StringVar(&opt.Broker, "broker", "", "broker URL (tcp://host:port)")
	f.BoolVar(&mosquitto, "mosquitto", false, "start a fresh mosquitto on loopback for each run (Debian package mosquitto)")
	f.BoolVar(&nats, "nats", false, "start a fresh 3-node NATS Server cluster (the go.mod tool) for each run")
	f.BoolVar(&killNode, "kill-node", false, "with --nats: kill node 1 with SIGKILL half way through the hold")
	f.BoolVar(&opt.FanoutQoS0, "fanout-qos0", false, "agents subscribe the site and fleet command topics at QoS 0 (mqtt.fanout_qos0): one JetStream consumer per device on NATS instead of three")
	f.IntVar(&opt.Procs, "procs", 0, "processes holding the agents (default: as many as the open-file limit needs; 1: this one)")
	f.StringVar(&opt.Store, "store", "", "the console's store: a SQLite file or postgres:// URL (default: a SQLite file in the run's directory)")
	f.DurationVar(&opt.TelemetryEvery, "telemetry", 10*time.Second, "telemetry period of every agent")
	f.IntVar(&opt.ConnectRate, "connect-rate", 500, "agents started per second")
	f.DurationVar(&opt.Hold, "hold", 0, "how long to hold the fleet measuring ingest and telemetry loss (default 2 telemetry periods)")
	f.DurationVar(&opt.Timeout, "timeout", 3*time.Minute, "limit for each phase")
	f.StringVar(&report, "report", "", "write the results as JSON here")
	f.StringVar(&brokerLog, "broker-log", "", "with --nats: write each node's log into this directory at the end of each run (nats-N-nodename.log)")
	f.StringVar(&agentLog, "agent-log", "error", "the simulated agents' log level (their logs go to standard error)")
	f.StringVar(&stateDir, "state-dir", defaultStateDir(), "where the simulated agents keep their state (queues, replay memory); default a tmpfs: each real device fsyncs its own flash, and thousands of agents fsyncing one shared disk would measure the disk")
	return cmd
}

// defaultStateDir is /dev/shm when it is a tmpfs, else the temporary
// directory.
func defaultStateDir() string {
	var st syscall.Statfs_t
	if syscall.Statfs("/dev/shm", &st) == nil && st.Type == 0x01021994 { // TMPFS_MAGIC
		return "/dev/shm"
	}
	return os.TempDir()
}
