// Command testbench runs LinkGuard's desktop simulation: the demo, and
// scripted scenarios and fleet-scale simulation.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/testbench/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testbench:", err)
		os.Exit(1)
	}
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
	root.AddCommand(demoCmd, newRunCmd(), newFleetCmd())
	return root
}
