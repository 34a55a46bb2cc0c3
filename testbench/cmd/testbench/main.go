// Command testbench runs LinkGuard's desktop simulation: the demo, and
// scripted scenarios and fleet-scale simulation.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/testbench/demo"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

// run executes the command line until it ends or SIGINT/SIGTERM stops it,
// and returns the exit code: a stop by signal that shuts down cleanly is
// success (0), so `make demo` ended with Ctrl-C is not an error. A second
// signal while shutting down kills the process the default way.
func run(args []string, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // restore the default action: the next Ctrl-C is not caught
	}()
	root := newRoot()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil // stopped by the signal, as asked
	}
	if err != nil {
		fmt.Fprintln(stderr, "testbench:", err)
		return 1
	}
	return 0
}

func newRoot() *cobra.Command {
	root := &cobra.Command{Use: "testbench", Short: "LinkGuard on a desktop: demo, scenarios, fleet", SilenceUsage: true, SilenceErrors: true}
	var demoOpt demo.Options
	demoCmd := &cobra.Command{
		Use:   "demo",
		Short: "Run an embedded broker, simulated sites and the console until Ctrl-C",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			demoOpt.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			return demo.Run(cmd.Context(), cmd.OutOrStdout(), demoOpt)
		},
	}
	demoCmd.Flags().StringVar(&demoOpt.ConsoleAddr, "listen", "127.0.0.1:8080", "console address")
	demoCmd.Flags().StringVar(&demoOpt.BrokerAddr, "broker-listen", "127.0.0.1:1883", "embedded broker address (loopback only)")
	demoCmd.Flags().StringVar(&demoOpt.Dir, "dir", "", "working directory (default: a temporary one, removed at exit)")
	root.AddCommand(demoCmd, newRunCmd(), newFleetCmd(), newFleetAgentsCmd())
	return root
}
