package main

import (
	"context"
	"crypto/x509"
	"errors"
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
	port        string
	baud        int
	timeout     time.Duration
	unlockToken string
}

func (s *serialFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.port, "port", "", "serial port of the device console (see lgctl ports)")
	cmd.Flags().IntVar(&s.baud, "baud", 115200, "baud rate")
	cmd.Flags().DurationVar(&s.timeout, "timeout", 5*time.Second, "answer timeout per request (requests are resent)")
	cmd.Flags().StringVar(&s.unlockToken, "unlock-token", "", "committee-signed unlock token (lgctl provision unlock-token) sent with UNLOCK first, for a device whose console is locked (provisioned); the console is locked again when lgctl is done")
}

// open opens the line and, with --unlock-token, unlocks the console; the
// port it returns locks the console again when closed.
func (s *serialFlags) open() (io.ReadWriteCloser, *provision.Client, error) {
	tok, err := s.token("")
	if err != nil {
		return nil, nil, err
	}
	p, c, err := s.dial()
	if err != nil || tok == nil {
		return p, c, err
	}
	if _, err := provision.Unlock(context.Background(), c, tok); err != nil {
		p.Close()
		return nil, nil, fmt.Errorf("%s: %w", s.unlockToken, err)
	}
	return relocking{p, c}, c, nil
}

func (s *serialFlags) dial() (io.ReadWriteCloser, *provision.Client, error) {
	p, err := serial.Open(s.port, &serial.Mode{BaudRate: s.baud})
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", s.port, err)
	}
	c := provision.NewClient(p)
	c.Timeout = s.timeout
	return p, c, nil
}

// token reads --unlock-token (nil without it) and refuses, before the line
// is opened, one that is not a token, has expired, or (device not "") is
// for another device. Its signatures are the device's to judge.
func (s *serialFlags) token(device string) ([]byte, error) {
	if s.unlockToken == "" {
		return nil, nil
	}
	f, t, err := readUnlockToken(s.unlockToken, time.Now())
	if err != nil {
		return nil, err
	}
	if device != "" && t.Device != device {
		return nil, fmt.Errorf("%s: the token is for device %s, not %s", f.path, t.Device, device)
	}
	return f.data, nil
}

// relocking is a line to a console lgctl unlocked: closing it sends LOCK
// first, so the session does not outlive lgctl (DONE may have locked it
// already; an older console does not know LOCK: both are fine).
type relocking struct {
	io.ReadWriteCloser
	c *provision.Client
}

func (r relocking) Close() error {
	r.c.Retries, r.c.Timeout = 0, time.Second
	_, _ = r.c.Call(context.Background(), "LOCK")
	return r.ReadWriteCloser.Close()
}

// lockedHint adds what to do to a refusal by a locked console.
func lockedHint(err error, device string) error {
	if !errors.Is(err, provision.ErrLocked) {
		return err
	}
	return fmt.Errorf("%w\nlgctl: %s's console is locked: it was provisioned (DONE). To change it, have the committee sign a token\n"+
		"  (lgctl provision unlock-token --key A.key --device %s --action unlock -o unlock.json; lgctl provision unlock-token cosign --key B.key unlock.json)\n"+
		"and run again with --unlock-token unlock.json, or unlock it at the device (its unlock jumper or root's unlock file)", err, device, device)
}

func newProvisionCmd() *cobra.Command {
	var (
		sf                        serialFlags
		id                        provision.Identity
		answers                   config.Answers
		kind, mode                string
		caCert, caKey, cfgPath    string
		registryDir               string
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

DONE, the last step, locks the device's console: it then answers HELLO and
STATUS only. To provision a locked device again, give --unlock-token with a
committee-signed token for it (lgctl provision unlock-token), or unlock it
at the device (its unlock jumper, or the file root creates there).

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
			var reg *provision.Registry
			if registryDir != "" {
				if reg, err = provision.OpenRegistry(registryDir, ca); err != nil {
					return err
				}
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
			tok, err := sf.token(id.DeviceID)
			if err != nil {
				return err
			}
			port, c, err := sf.dial()
			if err != nil {
				return err
			}
			if tok != nil {
				port = relocking{port, c}
			}
			defer port.Close()
			out := cmd.OutOrStdout()
			st, err := provision.Provision(cmd.Context(), c, provision.Plan{
				Identity: id,
				SignCSR: func(csr *x509.CertificateRequest) ([]byte, error) {
					der, err := ca.Sign(csr, id.DeviceID, time.Duration(certDays)*24*time.Hour)
					if err != nil || reg == nil {
						return der, err
					}
					// Recorded before it is installed: a certificate the
					// registry does not know could never be revoked by it.
					if err := reg.Record(der, id.Site); err != nil {
						return nil, err
					}
					return der, nil
				},
				CA: ca.CertPEM, Keys: keys, Config: cfg, Policy: policy, UnlockToken: tok,
				Progress: func(step string) { fmt.Fprintf(out, "  %s\n", step) },
			})
			if err != nil {
				return lockedHint(err, id.DeviceID)
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
	f.StringVar(&registryDir, "registry", "", "the CA's registry directory: the certificate issued is recorded there, with the site, and the brokers' site map and CRL written again (lgctl ca)")
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
	cmd.AddCommand(newUnlockTokenCmd())
	return cmd
}

// ---- lgctl provision unlock-token [cosign]

// An unlock token is signed apart, together, like a policy: one committee
// member makes it (unlock-token), the others add their signatures over its
// exact payload (unlock-token cosign), and the technician hands it to the
// device (lgctl provision|flash --unlock-token), which checks it against
// the committee keys it was provisioned with.

// readUnlockToken reads a token envelope and its payload, refusing one that
// is not a token or has expired at now.
func readUnlockToken(path string, now time.Time) (*signedFile, provision.UnlockToken, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, provision.UnlockToken{}, err
	}
	if !isEnvelope(data) {
		return nil, provision.UnlockToken{}, fmt.Errorf("%s: %w (DSSE JSON) of an unlock token; `lgctl provision unlock-token` makes one", path, errNotEnvelope)
	}
	f, err := readSigned(path, provision.UnlockPayloadType, "unlock token", provision.UnlockLimits)
	if err != nil {
		return nil, provision.UnlockToken{}, err
	}
	t, err := provision.ParseUnlockToken(f.payload)
	if err != nil {
		return nil, provision.UnlockToken{}, fmt.Errorf("%s: %w", path, err)
	}
	if !now.Before(t.Expires) {
		return f, t, fmt.Errorf("%s: the %s token for %s expired at %s; devices would refuse it", path, t.Action, t.Device, t.Expires.UTC().Format(time.RFC3339))
	}
	return f, t, nil
}

func newUnlockTokenCmd() *cobra.Command {
	var (
		keys                []string
		device, action, out string
		valid               time.Duration
		force               bool
	)
	cmd := &cobra.Command{
		Use:   "unlock-token --key A.key [--key B.key] --device ID --action unlock|reset [--valid 1h] -o TOKEN",
		Short: "Sign a token that opens one locked device console for a session (unlock) or permits its RESET (reset); other committee members add theirs with cosign",
		Long: `Sign an unlock token: a DSSE envelope (payload type
application/vnd.linkguard.unlock+json) over {device, action, nonce, issued,
expires}. A device whose console is locked (it was provisioned) accepts it
once, with UNLOCK (lgctl provision|flash --unlock-token TOKEN), if it names
the device, has not expired, and carries signatures of as many of the
committee keys installed on it (trust/policy) as its threshold: the
console's --unlock-threshold, else its configuration's policy.threshold,
else 2 when it holds 2 committee keys or more, else 1. "unlock" opens the console
for the session, "reset" permits RESET only. A token is valid for at most
24h (devices refuse longer ones) and needs the device's clock to be right.`,
		Example: `  lgctl provision unlock-token --key committee-a.key --device vte-border-01 --action unlock -o unlock.json
  lgctl provision unlock-token cosign --key committee-b.key unlock.json
  lgctl provision --port /dev/ttyUSB0 --unlock-token unlock.json --device-id vte-border-01 ...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if valid <= 0 || valid > provision.MaxUnlockLifetime {
				return fmt.Errorf("--valid %v: a token is valid for more than 0 and at most %v", valid, provision.MaxUnlockLifetime)
			}
			t, err := provision.NewUnlockToken(device, action, time.Now(), valid)
			if err != nil {
				return err
			}
			privs, err := loadPrivateKeys(keys)
			if err != nil {
				return err
			}
			env, err := provision.SignUnlockToken(t, privs...)
			if err != nil {
				return err
			}
			if err := writeCosigned(cmd.OutOrStdout(), out, "", env, force); err != nil {
				return err
			}
			if out != "-" {
				fmt.Fprintf(cmd.ErrOrStderr(), "signed a token for %s (action %s, nonce %s, valid until %s) with %d key(s) into %s\n",
					t.Device, t.Action, t.Nonce, t.Expires.Format(time.RFC3339), len(privs), out)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&keys, "key", nil, "committee private key file (repeatable; one signature each)")
	cmd.Flags().StringVar(&device, "device", "", "the device id the token is for")
	cmd.Flags().StringVar(&action, "action", provision.ActionUnlock, "unlock (the whole console, for the session) or reset (RESET only)")
	cmd.Flags().DurationVar(&valid, "valid", time.Hour, "how long the token stays valid, cosigning included (at most 24h)")
	cmd.Flags().StringVarP(&out, "output", "o", "", "output file, - for stdout")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing output file")
	for _, f := range []string{"key", "device", "output"} {
		_ = cmd.MarkFlagRequired(f)
	}
	cmd.AddCommand(newUnlockTokenCosignCmd())
	return cmd
}

func newUnlockTokenCosignCmd() *cobra.Command {
	var keyPath, out string
	var force bool
	cmd := &cobra.Command{
		Use:   "cosign --key B.key TOKEN [-o OUT]",
		Short: "Add your signature to an unlock token, over its exact payload (in place unless -o)",
		Long: `Add your committee signature to an unlock token. The signature is over the
envelope's payload byte for byte. The token must decode, must not have
expired and must not carry your signature already; what it unlocks (device,
action, expiry) is printed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, t, err := readUnlockToken(args[0], time.Now())
			if err != nil {
				return err
			}
			signed, keyID, err := f.cosign(keyPath, provision.UnlockLimits)
			if err != nil {
				return err
			}
			if out == "" {
				out = f.path
			}
			if err := writeCosigned(cmd.OutOrStdout(), out, f.path, signed, force); err != nil {
				return err
			}
			if out != "-" {
				fmt.Fprintf(cmd.ErrOrStderr(), "added the signature of %s (key id %.12s) to the %s token for %s (expires %s): %d signature(s) in %s\n",
					filepath.Base(keyPath), keyID, t.Action, t.Device, t.Expires.UTC().Format(time.RFC3339), len(f.env.Signatures)+1, out)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "your committee private key file")
	cmd.Flags().StringVarP(&out, "output", "o", "", "output file (default: TOKEN, in place), - for stdout")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing output file other than TOKEN")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}
