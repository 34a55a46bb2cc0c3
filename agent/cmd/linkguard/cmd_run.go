package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/agent"
	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/agent/version"
)

func newRunCmd() *cobra.Command {
	var path string
	var check bool
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run the agent (with --check: validate the config and print the effective one)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
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
	cmd.Flags().StringVarP(&path, "config", "c", "/etc/linkguard/linkguard.yaml", "configuration file")
	cmd.Flags().BoolVar(&check, "check", false, "validate the configuration, print the effective one and exit")
	return cmd
}
