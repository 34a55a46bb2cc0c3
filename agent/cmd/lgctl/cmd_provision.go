package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.bug.st/serial"

	"linkguard.dev/linkguard/firmware/provision"
)

// serialFlags opens the technician's cable to a device console.
type serialFlags struct {
	port    string
	baud    int
	timeout time.Duration
}

func (s *serialFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.port, "port", "", "serial port of the device console (see lgctl ports)")
	cmd.Flags().IntVar(&s.baud, "baud", 115200, "baud rate")
	cmd.Flags().DurationVar(&s.timeout, "timeout", 5*time.Second, "answer timeout per request (requests are resent)")
}

func (s *serialFlags) open() (io.ReadWriteCloser, *provision.Client, error) {
	p, err := serial.Open(s.port, &serial.Mode{BaudRate: s.baud})
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", s.port, err)
	}
	c := provision.NewClient(p)
	c.Timeout = s.timeout
	return p, c, nil
}

func newProvisionCmd() *cobra.Command {
	var (
		sf                        serialFlags
		id                        provision.Identity
		caCert, caKey, cfgPath    string
		trust, release, operators []string
		certDays                  int
	)
	cmd := &cobra.Command{
		Use:   "provision --port PORT --device-id ID --site SITE --broker URL --ca-cert ca.crt --ca-key ca.key",
		Short: "Provision a device over its serial console: identity, on-device key and certificate, trust keys, config",
		Long: `Provision a device over its serial console (linkguard provision-console).
The device creates its own key and sends a certificate request; lgctl signs
it with the CA and installs the certificate, the broker CA, the policy,
release and operator keys, and the configuration. Every step is idempotent:
after an interruption run the same command again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := provision.LoadCA(caCert, caKey)
			if err != nil {
				return err
			}
			keys := map[string][]byte{}
			for dir, paths := range map[string][]string{"trust": trust, "release": release, "operators": operators} {
				for _, p := range paths {
					b, err := os.ReadFile(p)
					if err != nil {
						return err
					}
					keys[dir+"/"+strings.ToLower(filepath.Base(p))] = b
				}
			}
			var cfg []byte
			if cfgPath != "" {
				if cfg, err = os.ReadFile(cfgPath); err != nil {
					return err
				}
			}
			port, c, err := sf.open()
			if err != nil {
				return err
			}
			defer port.Close()
			out := cmd.OutOrStdout()
			st, err := provision.Provision(cmd.Context(), c, provision.Plan{
				Identity: id,
				SignCSR: func(csr *x509.CertificateRequest) ([]byte, error) {
					return ca.Sign(csr, time.Duration(certDays)*24*time.Hour)
				},
				CA: ca.CertPEM, Keys: keys, Config: cfg,
				Progress: func(step string) { fmt.Fprintf(out, "  %s\n", step) },
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "%s provisioned: %s\n", id.DeviceID, strings.Join(st, ", "))
			return nil
		},
	}
	sf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&id.DeviceID, "device-id", "", "device id (certificate common name)")
	f.StringVar(&id.Site, "site", "", "site name")
	f.StringVar(&id.Broker, "broker", "", "MQTT broker URL, e.g. mqtts://broker:8883")
	f.StringVar(&caCert, "ca-cert", "", "CA certificate (PEM) that signs device certificates and is installed as the broker CA")
	f.StringVar(&caKey, "ca-key", "", "CA private key (PEM)")
	f.StringSliceVar(&trust, "trust", nil, "policy committee public key to install (repeatable)")
	f.StringSliceVar(&release, "release", nil, "release public key to install (repeatable)")
	f.StringSliceVar(&operators, "operator", nil, "operator public key to install (repeatable)")
	f.StringVar(&cfgPath, "config", "", "device configuration to install")
	f.IntVar(&certDays, "cert-days", 825, "device certificate validity in days")
	for _, r := range []string{"port", "device-id", "site", "broker", "ca-cert", "ca-key"} {
		_ = cmd.MarkFlagRequired(r)
	}
	return cmd
}
