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

	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/firmware/provision"
	"linkguard.dev/linkguard/firmware/provision/layout"
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
		answers                   config.Answers
		kind, mode                string
		caCert, caKey, cfgPath    string
		policyPath                string
		trust, release, operators []string
		certDays                  int
	)
	cmd := &cobra.Command{
		Use:   "provision --port PORT --device-id ID --site SITE --broker URL --ca-cert ca.crt --ca-key ca.key --trust KEY.pub --operator KEY.pub --policy policy.signed.json [--outside IFACE ...]",
		Short: "Provision a device over its serial console: identity, on-device key and certificate, trust keys, policy, config",
		Long: `Provision a device over its serial console (linkguard provision-console).
The device creates its own key and sends a certificate request; lgctl signs
it with the CA and installs the certificate, the broker CA, the policy,
release and operator keys, the signed policy and the configuration, each at
its place under /etc/linkguard (README: "On-device layout"). Every step is
idempotent: after an interruption run the same command again.

Without --config, the configuration is generated from these answers (device
id, site, kind, broker, links mode and interfaces, the keys installed) and
the template agent/config/template.yaml, and is one the device starts with;
--policy is then required, since a device without a policy does not start.
A relay's buses and feeds are its site's wiring: give its configuration
with --config.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := provision.LoadCA(caCert, caKey)
			if err != nil {
				return err
			}
			keys := map[string][]byte{}
			for _, role := range []struct {
				dir   string
				paths []string
				names *[]string
			}{{"trust", trust, &answers.PolicyKeys}, {"release", release, &answers.ReleaseKeys}, {"operators", operators, &answers.OperatorKeys}} {
				for _, p := range role.paths {
					name := strings.ToLower(filepath.Base(p))
					if !strings.HasSuffix(name, ".pub") {
						return fmt.Errorf("%s: a public key file is named NAME.pub", p)
					}
					b, err := os.ReadFile(p)
					if err != nil {
						return err
					}
					keys[role.dir+"/"+name] = b
					*role.names = append(*role.names, name)
				}
			}
			var policy, cfg []byte
			if policyPath != "" {
				if policy, err = os.ReadFile(policyPath); err != nil {
					return err
				}
				if len(policy) > provision.ChunkSize {
					return fmt.Errorf("%s: %d bytes, more than one provisioning line carries (%d): copy it to %s on the device instead",
						policyPath, len(policy), provision.ChunkSize, layout.Path(layout.Policy))
				}
			}
			if cfgPath != "" {
				if cfg, err = os.ReadFile(cfgPath); err != nil {
					return err
				}
			} else {
				if policy == nil {
					return fmt.Errorf("--policy is required to generate the configuration: a device without a signed policy does not start")
				}
				answers.DeviceID, answers.Site, answers.Broker = id.DeviceID, id.Site, id.Broker
				if err := answers.Kind.UnmarshalText([]byte(kind)); err != nil {
					return fmt.Errorf("--kind: %w", err)
				}
				if err := answers.Mode.UnmarshalText([]byte(mode)); err != nil {
					return fmt.Errorf("--links-mode: %w", err)
				}
				if cfg, err = config.Generate(answers); err != nil {
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
				CA: ca.CertPEM, Keys: keys, Config: cfg, Policy: policy,
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
	f.StringVar(&policyPath, "policy", "", "signed policy to install (required without --config)")
	f.StringVar(&cfgPath, "config", "", "device configuration to install as it is (default: generated from the answers)")
	f.StringVar(&kind, "kind", config.KindRouter, "device kind, for the generated configuration: router (relay: give --config)")
	f.StringVar(&mode, "links-mode", string(config.ModeInline), "links mode of a router: inline or monitor")
	f.StringVar(&answers.Inside, "inside", "", "a router's interface towards the country (inline mode)")
	f.StringVar(&answers.Outside, "outside", "", "a router's interface across the border (the tap in monitor mode)")
	f.IntVar(&answers.Threshold, "threshold", 1, "policy signatures the device requires")
	f.IntVar(&certDays, "cert-days", 825, "device certificate validity in days")
	for _, r := range []string{"port", "device-id", "site", "broker", "ca-cert", "ca-key"} {
		_ = cmd.MarkFlagRequired(r)
	}
	return cmd
}
