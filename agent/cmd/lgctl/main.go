// Command lgctl is the operator's and field technician's tool: keys, policy
// signing and review, fleet commands, bundles and flashing.
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
		Use:           "lgctl",
		Short:         "LinkGuard operator and technician tool",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		cli.VersionCmd("lgctl"),
		newKeyCmd(),
		newPolicyCmd(),
		newBundleCmd(),
		newPortsCmd(),
		newProvisionCmd(),
		newCACmd(),
		newFlashCmd(),
		newConsoleCmd(),
		newNATSCalloutCmd(),
		withEnvelopeCmds(newCmdCmd()),
		newRosterCmd(),
		newWatchCmd(),
		newAuditCmd(),
	)
	return root
}
