package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/testbench/fleet"
)

func newFleetCmd() *cobra.Command {
	var (
		agents    string
		opt       fleet.Options
		mosquitto bool
		report    string
	)
	cmd := &cobra.Command{
		Use:   "fleet --agents N[,N...] (--broker URL | --mosquitto)",
		Short: "Run N lightweight simulated agents against a real broker and measure the fleet",
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
				dir, err := os.MkdirTemp("", "linkguard-fleet-")
				if err != nil {
					return err
				}
				o.Dir = dir
				stop := func() {}
				if mosquitto {
					if o.Broker, stop, err = startMosquitto(cmd.Context(), dir); err != nil {
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

// startMosquitto runs mosquitto on a free loopback port until stop.
func startMosquitto(ctx context.Context, dir string) (url string, stop func(), err error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		return "", nil, fmt.Errorf("fleet: %w (apt-get install mosquitto)", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte("listener "+port+" 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nmax_inflight_messages 64\n"), 0o644); err != nil {
		return "", nil, err
	}
	c := exec.CommandContext(ctx, bin, "-c", conf)
	c.Stderr = nil
	if err := c.Start(); err != nil {
		return "", nil, err
	}
	stop = func() { c.Process.Signal(os.Interrupt); c.Wait() }
	for range 100 {
		if cn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			cn.Close()
			return "tcp://" + addr, stop, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return "", nil, errors.New("fleet: mosquitto did not start")
}
