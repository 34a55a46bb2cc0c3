package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"
	"go.bug.st/serial"

	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/firmware/provision"
)

func newProvisionConsoleCmd() *cobra.Command {
	var dir, port, cfgPath string
	var baud int
	cmd := &cobra.Command{
		Use:   "provision-console",
		Short: "Serve the technician's provisioning line protocol on a serial port (or stdin/stdout)",
		Long: `Serve lgctl provision and lgctl flash --port over a serial line: identity,
on-device key and CSR, certificate, trust keys, configuration, bundles.
Each line carries a CRC-32; every request is idempotent.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)).With("component", "provision-console")
			con := &provision.Console{Dir: dir, Logger: log, Restart: restartService, ValidateConfig: validateProvisionedConfig}
			if cfgPath != "" {
				in, err := installer(cfgPath)
				if err != nil {
					return err
				}
				in.Logger = log
				con.Installer = in
			}
			var rw io.ReadWriter = struct {
				io.Reader
				io.Writer
			}{cmd.InOrStdin(), cmd.OutOrStdout()}
			if port != "" {
				p, err := serial.Open(port, &serial.Mode{BaudRate: baud})
				if err != nil {
					return fmt.Errorf("open %s: %w", port, err)
				}
				defer p.Close()
				go func() { <-cmd.Context().Done(); p.Close() }()
				rw = p
			}
			return con.Serve(cmd.Context(), rw)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "/etc/linkguard", "directory for identity, device key, certificate, trust keys and config")
	cmd.Flags().StringVar(&port, "port", "", "serial port (default: stdin/stdout)")
	cmd.Flags().IntVar(&baud, "baud", 115200, "serial baud rate")
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration whose update section lets the console install bundles")
	return cmd
}

// validateProvisionedConfig checks a configuration sent by the technician
// with the agent's strict parser and that it names the device being
// provisioned.
func validateProvisionedConfig(data []byte, id provision.Identity) error {
	cfg, err := config.Parse("config.yaml", data)
	if err != nil {
		return err
	}
	if cfg.Device.ID != id.DeviceID || cfg.Device.Site != id.Site {
		return errors.New("config is for device " + cfg.Device.ID + " at " + cfg.Device.Site + ", not " + id.DeviceID + " at " + id.Site)
	}
	return nil
}
