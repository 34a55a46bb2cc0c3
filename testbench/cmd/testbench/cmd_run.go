package main

import (
	"errors"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/testbench/scenario"
)

func newRunCmd() *cobra.Command {
	var report string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "run SCENARIO.yaml... [--report out.json]",
		Short: "Run scripted scenarios with assertions; print a summary and write a JSON report",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lv := slog.LevelError
			if verbose {
				lv = slog.LevelInfo
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
			var reps []*scenario.Report
			for _, path := range args {
				s, err := scenario.Load(path)
				if err != nil {
					return err
				}
				dir, err := os.MkdirTemp("", "linkguard-scenario-")
				if err != nil {
					return err
				}
				reps = append(reps, scenario.Run(cmd.Context(), s, dir, log))
				os.RemoveAll(dir)
			}
			scenario.Summary(cmd.OutOrStdout(), reps)
			if report != "" {
				if err := scenario.WriteJSON(report, reps); err != nil {
					return err
				}
			}
			for _, r := range reps {
				if !r.OK {
					return errors.New("a scenario failed")
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&report, "report", "", "write the JSON report here")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log the agents' info messages")
	return cmd
}
