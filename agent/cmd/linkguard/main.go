// Command linkguard is the LinkGuard agent that runs on border routers and
// feed relay controllers, and its on-device diagnostics.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/agent/version"
)

// errSilent marks an error already reported to the user in full.
var errSilent = errors.New("failed")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		if !errors.Is(err, errSilent) {
			fmt.Fprintln(os.Stderr, "linkguard:", err)
		}
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "linkguard",
		Short:         "LinkGuard field agent: enforces signed link approvals and feed power caps",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newRunCmd(),
		newVersionCmd(),
		newPolicyCmd(),
		newReplayCmd(),
		newUpdateCmd(),
		newProvisionConsoleCmd(),
	)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version, commit, build date and target architecture",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), version.String("linkguard"))
		},
	}
}
