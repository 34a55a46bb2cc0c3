package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"go.bug.st/serial"
	"periph.io/x/conn/v3/gpio/gpioreg"
	host "periph.io/x/host/v3"

	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/firmware/provision"
)

// unlockFlags are the ways a locked provisioning console opens.
type unlockFlags struct {
	pin, pinActive, file string
	threshold            int
	idle                 time.Duration
}

func (u *unlockFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&u.pin, "unlock-pin", "", "GPIO input (periph name, e.g. GPIO17) whose jumper or button, fitted or held when a request arrives, opens a locked console for the session")
	f.StringVar(&u.pinActive, "unlock-pin-active", "low", "level of --unlock-pin that means fitted: low (jumper to ground, pulled up) or high (pulled down)")
	f.StringVar(&u.file, "unlock-file", "", "file that opens a locked console for one session if root made it (owned by uid 0, not group/world-writable, in a directory likewise); it is removed when used")
	f.IntVar(&u.threshold, "unlock-threshold", 0, "committee signatures an unlock token needs (default: policy.threshold of the installed linkguard.yaml; without one, 2 when 2 or more committee keys are installed, else 1)")
	f.DurationVar(&u.idle, "unlock-idle", provision.DefaultSessionIdle, "an unlocked session locks again after this long without a request")
}

// apply configures con's unlocks; the pin is set up as an input now.
func (u *unlockFlags) apply(con *provision.Console) error {
	if u.threshold < 0 {
		return fmt.Errorf("--unlock-threshold %d: at least 1 (0: the default)", u.threshold)
	}
	if u.idle <= 0 {
		return fmt.Errorf("--unlock-idle %v: must be above 0", u.idle)
	}
	con.UnlockThreshold, con.SessionIdle, con.PolicyThreshold = u.threshold, u.idle, policyThreshold
	if u.pin != "" {
		if u.pinActive != "low" && u.pinActive != "high" {
			return fmt.Errorf("--unlock-pin-active %q: low or high", u.pinActive)
		}
		if _, err := host.Init(); err != nil {
			return fmt.Errorf("--unlock-pin: gpio drivers: %w", err)
		}
		pin := gpioreg.ByName(u.pin)
		if pin == nil {
			return fmt.Errorf("--unlock-pin: no GPIO line %q", u.pin)
		}
		p, err := provision.NewPinPresence(pin, u.pinActive == "low")
		if err != nil {
			return err
		}
		con.Physical = append(con.Physical, p)
	}
	if u.file != "" {
		con.Physical = append(con.Physical, &provision.FilePresence{Path: u.file})
	}
	return nil
}

func newProvisionConsoleCmd() *cobra.Command {
	var dir, port, cfgPath string
	var baud int
	var uf unlockFlags
	cmd := &cobra.Command{
		Use:   "provision-console",
		Short: "Serve the technician's provisioning line protocol on a serial port (or stdin/stdout)",
		Long: `Serve lgctl provision and lgctl flash --port over a serial line: identity,
on-device key and CSR, certificate, trust keys, configuration, bundles.
Each line carries a CRC-32; every request is idempotent.

DONE locks the console (DIR/console-lock.json, kept across restarts): it
then answers HELLO (without the device id), STATUS, DONE, LOCK and UNLOCK
only, and refuses everything else, RESET included, until a session is
opened by a physical act (--unlock-pin, --unlock-file) or by UNLOCK with a
committee-signed token for this device (lgctl provision unlock-token),
checked against the committee keys under DIR/trust/policy. An "unlock"
token opens the session, a "reset" token permits RESET only; no token is
accepted twice. The session lasts until DONE or LOCK, --unlock-idle
without a request, the token's expiry, or the end of this process's input.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)).With("component", "provision-console")
			con := &provision.Console{Dir: dir, Logger: log, Restart: restartService, ValidateConfig: validateProvisionedConfig}
			if err := uf.apply(con); err != nil {
				return err
			}
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
	uf.register(cmd)
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

// policyThreshold is the installed configuration's policy.threshold, as
// the agent reads it (its default included): the committee threshold an
// unlock token needs unless --unlock-threshold says otherwise.
func policyThreshold(data []byte) (int, error) {
	cfg, err := config.Parse("linkguard.yaml", data)
	if err != nil {
		return 0, err
	}
	return cfg.Policy.Threshold, nil
}
