package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/firmware/flash"
)

type flashFlags struct {
	host, identity, knownHosts string
	remoteDir, remoteLG        string
	remoteConfig, restartCmd   string
	healthTimeout              time.Duration
	sf                         serialFlags
}

func newFlashCmd() *cobra.Command {
	var ff flashFlags
	cmd := &cobra.Command{
		Use:   "flash (--host USER@HOST[:PORT] | --port PORT) BUNDLE",
		Short: "Push a bundle to a device, install it, restart into it and report the device's health",
		Long: `Push a signed bundle to a device over SSH (SCP) or its serial console, run the
install (the device verifies everything first), restart the service into the
candidate and wait until it commits itself or is rolled back.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case ff.host != "" && ff.sf.port == "":
				return ff.viaSSH(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0])
			case ff.sf.port != "" && ff.host == "":
				return ff.viaSerial(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0])
			default:
				return errors.New("give exactly one of --host and --port")
			}
		},
	}
	home, _ := os.UserHomeDir()
	f := cmd.Flags()
	f.StringVar(&ff.host, "host", "", "device SSH address USER@HOST[:PORT]")
	f.StringVar(&ff.identity, "identity", filepath.Join(home, ".ssh", "id_ed25519"), "SSH private key")
	f.StringVar(&ff.knownHosts, "known-hosts", filepath.Join(home, ".ssh", "known_hosts"), "known_hosts file the device's host key must be in")
	f.StringVar(&ff.remoteDir, "remote-dir", "/tmp", "where the bundle is uploaded on the device")
	f.StringVar(&ff.remoteLG, "remote-linkguard", "/usr/sbin/linkguard", "the linkguard command on the device")
	f.StringVar(&ff.remoteConfig, "remote-config", "/etc/linkguard/linkguard.yaml", "the device's configuration file")
	f.StringVar(&ff.restartCmd, "restart-cmd", "/etc/init.d/linkguard restart 2>/dev/null || systemctl restart linkguard", "how the service is restarted on the device (SSH)")
	f.DurationVar(&ff.healthTimeout, "health-timeout", 5*time.Minute, "how long to wait for the candidate to commit or roll back")
	ff.sf.register(cmd)
	return cmd
}

func (ff *flashFlags) viaSSH(ctx context.Context, out, errw io.Writer, bundlePath string) error {
	c, err := flash.DialSSH(ff.host, ff.identity, ff.knownHosts)
	if err != nil {
		return err
	}
	defer c.Close()
	return flash.OverSSH(ctx, c, flash.SSHOptions{
		RemoteDir: ff.remoteDir, LinkGuard: ff.remoteLG, Config: ff.remoteConfig,
		RestartCmd: ff.restartCmd, HealthTimeout: ff.healthTimeout,
	}, out, errw, bundlePath)
}

func (ff *flashFlags) viaSerial(ctx context.Context, out, errw io.Writer, bundlePath string) error {
	port, c, err := ff.sf.open()
	if err != nil {
		return err
	}
	defer port.Close()
	return flash.OverSerial(ctx, c, ff.healthTimeout, out, errw, bundlePath)
}
