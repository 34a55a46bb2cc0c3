// Command testbench runs LinkGuard's desktop simulation: the demo, and
// (as the testbench grows) scenarios and fleet simulation.
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
	root.AddCommand(&cobra.Command{
		Use:   "demo",
		Short: "Make demo keys, sign a demo policy, run an agent on it and show what it allows and denies",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			return demo.Run(cmd.Context(), cmd.OutOrStdout(), log)
		},
	})
	return root
}
