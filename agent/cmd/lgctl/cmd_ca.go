package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/firmware/provision"
)

// ---- lgctl ca list|revoke|crl

// caFlags are the fleet CA and its registry, shared by the ca subcommands.
type caFlags struct {
	cert, key, registry string
	crlDays             int
}

func (f *caFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.cert, "ca-cert", "", "fleet CA certificate (PEM)")
	cmd.PersistentFlags().StringVar(&f.key, "ca-key", "", "fleet CA private key (PEM)")
	cmd.PersistentFlags().StringVar(&f.registry, "registry", "", "the CA's registry directory (the one lgctl provision --registry records into)")
	cmd.PersistentFlags().IntVar(&f.crlDays, "crl-days", int(provision.DefaultCRLValidity/(24*time.Hour)), "validity of the CRL written, in days (mosquitto refuses every client once it has expired)")
	for _, r := range []string{"ca-cert", "ca-key", "registry"} {
		_ = cmd.MarkPersistentFlagRequired(r)
	}
}

func (f *caFlags) open() (*provision.Registry, error) {
	ca, err := provision.LoadCA(f.cert, f.key)
	if err != nil {
		return nil, err
	}
	if f.crlDays < 1 {
		return nil, fmt.Errorf("--crl-days %d: at least 1", f.crlDays)
	}
	r, err := provision.OpenRegistry(f.registry, ca)
	if err != nil {
		return nil, err
	}
	r.CRLValidity = time.Duration(f.crlDays) * 24 * time.Hour
	return r, nil
}

// installHint says where the files the registry wrote go.
func installHint(cmd *cobra.Command, dir string) {
	fmt.Fprintf(cmd.OutOrStdout(), `wrote %s and %s; on the broker (scripts/mosquitto/README.md):
  install %[1]s as /etc/mosquitto/linkguard/fleet-crl.pem
  linkguard-acl devices.acl %[2]s > devices.acl.new && mv devices.acl.new /etc/mosquitto/linkguard/devices.acl
  systemctl reload mosquitto
`, filepath.Join(dir, provision.CRLFile), filepath.Join(dir, provision.SiteMapFile))
}

func newCACmd() *cobra.Command {
	var f caFlags
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "The fleet CA's registry: the device certificates issued, revocation, the brokers' CRL and site map",
		Long: `The fleet CA's registry is a directory beside the CA key: every device
certificate lgctl provision --registry issued (device, site, serial,
expiry), which are revoked, and, written from that record after every
change, the CRL the brokers check clients against (crl.pem) and the site map
their device rules are made from (sites, for scripts/mosquitto/linkguard-acl).
A revoked device's next connection is refused by the CRL; its "!DEVICE"
line in the site map silences the one it has open at the broker's reload.`,
	}
	f.register(cmd)
	list := &cobra.Command{
		Use:   "list",
		Short: "List the certificates issued, newest last",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := f.open()
			if err != nil {
				return err
			}
			certs, err := r.Certs()
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "DEVICE\tSITE\tSERIAL\tISSUED\tEXPIRES\tSTATE")
			for _, c := range certs {
				state := "valid"
				switch {
				case c.Revoked != nil:
					state = "revoked " + c.Revoked.Format(time.DateOnly) + ": " + c.Reason
				case time.Now().After(c.NotAfter):
					state = "expired"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Device, c.Site, c.Serial, c.Issued.Format(time.DateOnly), c.NotAfter.Format(time.DateOnly), state)
			}
			return w.Flush()
		},
	}
	var serial, reason string
	revoke := &cobra.Command{
		Use:   "revoke DEVICE --reason TEXT [--serial HEX]",
		Short: "Revoke a device's certificates (or one of them) and write the CRL and site map",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return errors.New("--reason is required: it is kept in the registry")
			}
			r, err := f.open()
			if err != nil {
				return err
			}
			done, err := r.Revoke(args[0], serial, reason)
			if err != nil {
				return err
			}
			if len(done) == 0 {
				return fmt.Errorf("%s: nothing to revoke (already revoked, or no certificate with serial %q)", args[0], serial)
			}
			for _, c := range done {
				fmt.Fprintf(cmd.OutOrStdout(), "revoked %s certificate %s (site %s, issued %s)\n", c.Device, c.Serial, c.Site, c.Issued.Format(time.DateOnly))
			}
			installHint(cmd, r.Dir)
			return nil
		},
	}
	revoke.Flags().StringVar(&reason, "reason", "", "why (kept in the registry)")
	revoke.Flags().StringVar(&serial, "serial", "", "revoke only the certificate with this serial (hexadecimal)")
	crl := &cobra.Command{
		Use:   "crl",
		Short: "Write a fresh CRL (new number and validity) and the site map, changing nothing else; run it before the CRL expires",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := f.open()
			if err != nil {
				return err
			}
			if err := r.Refresh(); err != nil {
				return err
			}
			installHint(cmd, r.Dir)
			return nil
		},
	}
	cmd.AddCommand(list, revoke, crl)
	return cmd
}
