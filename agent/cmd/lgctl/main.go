// Command lgctl is the operator's and field technician's tool: keys, policy
// signing and review, fleet commands, bundles and flashing.
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
			fmt.Fprintln(os.Stderr, "lgctl:", err)
		}
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "lgctl",
		Short:         "LinkGuard operator and technician tool",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newVersionCmd(),
		newKeyCmd(),
		newPolicyCmd(),
		newBundleCmd(),
		newPortsCmd(),
		newProvisionCmd(),
		newFlashCmd(),
		newConsoleCmd(),
		newCmdCmd(),
		newWatchCmd(),
		newAuditCmd(),
	)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version, commit, build date and target architecture",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), version.String("lgctl"))
		},
	}
}
