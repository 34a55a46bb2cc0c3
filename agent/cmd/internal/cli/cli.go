// Package cli is what LinkGuard's command mains share: running a cobra
// root under a context that SIGINT and SIGTERM cancel, exit codes, and the
// version command. It imports cobra and agent/version only.
package cli

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

// ErrSilent marks an error a command has already reported in full: Main
// exits 1 without printing it again.
var ErrSilent = errors.New("failed")

// Main runs root until it returns or a signal cancels its context, and exits
// 1 on error, printing it prefixed with the program's name.
func Main(root *cobra.Command) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil {
		if !errors.Is(err, ErrSilent) {
			fmt.Fprintln(os.Stderr, root.Name()+":", err)
		}
		os.Exit(1)
	}
}

// VersionCmd prints version, commit, build date and target.
func VersionCmd(prog string) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version, commit, build date and target architecture",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), version.String(prog))
		},
	}
}
