package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/testbench/fleet"
	"linkguard.dev/linkguard/testbench/sim"
)

// startDevice runs one of the fleet's devices: agent.Run with no hardware.
func startDevice(ctx context.Context, d fleet.Device) error {
	return sim.RunBare(ctx, sim.BareOptions{ID: d.ID, Site: d.Site, Broker: d.Broker, Dir: d.Dir,
		CommitteePub: d.CommitteePub, OperatorPub: d.OperatorPub, TelemetryEvery: d.TelemetryEvery, Logger: d.Logger})
}

func newFleetCmd() *cobra.Command {
	var (
		agents    string
		opt       fleet.Options
		mosquitto bool
		report    string
	)
	cmd := &cobra.Command{
		Use:   "fleet --agents N[,N...] (--broker URL | --mosquitto)",
		Short: "Run N agents with no hardware against a real broker and measure the fleet",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opt.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
			var rs []*fleet.Result
			for _, s := range strings.Split(agents, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil || n <= 0 {
					return fmt.Errorf("--agents: %q is not a positive number", s)
				}
				o := opt
				o.Agents = n
				o.Start = startDevice
				dir, err := os.MkdirTemp("", "linkguard-fleet-")
				if err != nil {
					return err
				}
				o.Dir = dir
				stop := func() {}
				if mosquitto {
					if o.Broker, stop, err = fleet.StartMosquitto(cmd.Context(), dir); err != nil {
						os.RemoveAll(dir)
						return err
					}
				} else if o.Broker == "" {
					return errors.New("--broker or --mosquitto is required")
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "fleet: %d agents against %s…\n", n, o.Broker)
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
				return fleet.WriteJSON(report, rs)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&agents, "agents", "100", "number of agents; a comma-separated list runs each in turn")
	f.StringVar(&opt.Broker, "broker", "", "broker URL (tcp://host:port)")
	f.BoolVar(&mosquitto, "mosquitto", false, "start a fresh mosquitto on loopback for each run (Debian package mosquitto)")
	f.DurationVar(&opt.TelemetryEvery, "telemetry", 10*time.Second, "telemetry period of every agent")
	f.IntVar(&opt.ConnectRate, "connect-rate", 500, "agents started per second")
	f.DurationVar(&opt.Hold, "hold", 0, "how long to hold the fleet measuring ingest (default 2 telemetry periods)")
	f.DurationVar(&opt.Timeout, "timeout", 3*time.Minute, "limit for each phase")
	f.StringVar(&report, "report", "", "write the results as JSON here")
	return cmd
}
