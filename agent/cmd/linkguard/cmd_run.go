package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/agent"
	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/agent/version"
	"linkguard.dev/linkguard/firmware/provision/layout"
)

func newRunCmd() *cobra.Command {
	var path string
	var check bool
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run the agent (with --check: validate the config and print the effective one)",
		Long: `Run the agent. Before anything starts, the configuration is checked as
--check checks it: its keys and values, and what it names on this machine
(key files, certificates, policy, directories, interfaces, serial ports).
A configuration --check passes is one the agent starts with.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The one check both paths take: --check must never pass what
			// the agent would then refuse.
			cfg, err := config.LoadChecked(path)
			if err != nil {
				return err
			}
			if check {
				fmt.Fprintf(cmd.OutOrStdout(), "# %s: valid; effective configuration:\n%s", path, cfg.YAML())
				return nil
			}
			log, lv := agent.NewLogger(cfg.Log, os.Stderr)
			log.Info("starting", "version", version.Version, "commit", version.Commit, "arch", version.Arch(), "config", path)
			return agent.Run(cmd.Context(), cfg, agent.Options{Logger: log, LevelVar: lv})
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", layout.Path(layout.Config), "configuration file")
	cmd.Flags().BoolVar(&check, "check", false, "validate the configuration and what it names, print the effective one and exit")
	return cmd
}
