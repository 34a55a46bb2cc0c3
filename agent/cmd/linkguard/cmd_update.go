package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/agent"
	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/firmware/slot"
	"linkguard.dev/linkguard/firmware/update"
)

func newUpdateCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{Use: "update", Short: "Install a signed bundle into the inactive slot; show, commit or roll back the slots"}
	cmd.PersistentFlags().StringVarP(&cfgPath, "config", "c", "/etc/linkguard/linkguard.yaml", "configuration file (its update section)")
	cmd.AddCommand(newUpdateInstallCmd(&cfgPath), newUpdateStatusCmd(&cfgPath), newUpdateCommitCmd(&cfgPath), newUpdateRollbackCmd(&cfgPath))
	return cmd
}

// installer builds the device's installer from the update section.
func installer(cfgPath string) (*update.Installer, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	if cfg.Update == nil {
		return nil, fmt.Errorf("%s has no update section", cfgPath)
	}
	// The same installer the agent's update.fetch uses.
	return agent.NewInstaller(cfg, slog.New(slog.DiscardHandler))
}

func newUpdateInstallCmd(cfgPath *string) *cobra.Command {
	var allowDowngrade, restart bool
	var ticket string
	cmd := &cobra.Command{
		Use:   "install FILE",
		Short: "Verify a bundle completely (signature, arch, version, sha256), then write it to the inactive slot as candidate",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := installer(*cfgPath)
			if err != nil {
				return err
			}
			var o update.Options
			if allowDowngrade != (ticket != "") {
				return errors.New("--allow-downgrade and --ticket go together: a downgrade needs a ticket signed by the release keys for this device and version")
			}
			if ticket != "" {
				if o.Ticket, err = os.ReadFile(ticket); err != nil {
					return err
				}
			}
			res, err := in.Install(args[0], o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !res.Candidate {
				fmt.Fprintf(out, "installed %s into slot %s (first installation: active now)\n", res.Manifest.Version, res.Slot)
			} else {
				fmt.Fprintf(out, "installed %s into slot %s as candidate; on the next start it must report healthy or it is rolled back\n", res.Manifest.Version, res.Slot)
			}
			if restart {
				return restartService()
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&allowDowngrade, "allow-downgrade", false, "accept an older version, with --ticket")
	cmd.Flags().StringVar(&ticket, "ticket", "", "downgrade ticket (lgctl bundle ticket) naming this device and the bundle's version")
	cmd.Flags().BoolVar(&restart, "restart", false, "restart the linkguard service afterwards to try the candidate")
	return cmd
}

// restartService restarts the agent through the init system present.
func restartService() error {
	var c *exec.Cmd
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		c = exec.Command("systemctl", "restart", "linkguard")
	} else if _, err := os.Stat("/etc/init.d/linkguard"); err == nil {
		c = exec.Command("/etc/init.d/linkguard", "restart")
	} else {
		return errors.New("no systemd and no /etc/init.d/linkguard: restart the service by hand")
	}
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("restart: %w: %s", err, out)
	}
	return nil
}

func newUpdateStatusCmd(cfgPath *string) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Print the slot state as JSON: active slot, candidate, attempts, versions, unreported rollback",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := installer(*cfgPath)
			if err != nil {
				return err
			}
			st, err := in.Slots.Load()
			if err != nil && !errors.Is(err, slot.ErrNoState) {
				return err
			}
			b, _ := json.MarshalIndent(st, "", "  ")
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return nil
		},
	}
}

func newUpdateCommitCmd(cfgPath *string) *cobra.Command {
	return &cobra.Command{
		Use:   "commit SLOT",
		Short: "Commit the candidate slot by hand (the agent does this itself once healthy)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := installer(*cfgPath)
			if err != nil {
				return err
			}
			_, err = in.Slots.Commit(slot.Name(args[0]))
			return err
		},
	}
}

func newUpdateRollbackCmd(cfgPath *string) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Abandon the candidate, or switch back to the previous slot; takes effect on the next start",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := installer(*cfgPath)
			if err != nil {
				return err
			}
			st, err := in.Slots.Rollback(reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rolled back to slot %s (%s); restart linkguard to run it\n", st.Active, st.Installed())
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "operator", "reason recorded and reported over MQTT")
	return cmd
}
