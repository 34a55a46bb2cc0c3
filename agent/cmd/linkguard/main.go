// Command linkguard is the LinkGuard agent that runs on border routers and
// feed relay controllers, and its on-device diagnostics.
package main

import (
	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/agent/cmd/internal/cli"
)

// errSilent marks an error already reported to the user in full.
var errSilent = cli.ErrSilent

func main() { cli.Main(newRoot()) }

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "linkguard",
		Short:         "LinkGuard field agent: enforces signed link approvals and feed power caps",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newRunCmd(),
		cli.VersionCmd("linkguard"),
		newPolicyCmd(),
		newReplayCmd(),
		newUpdateCmd(),
		newProvisionConsoleCmd(),
	)
	return root
}
