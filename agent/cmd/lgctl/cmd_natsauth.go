package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/firmware/provision"
	"linkguard.dev/linkguard/scripts/natsauth"
)

// ---- lgctl nats-callout [keygen]

func newNATSCalloutCmd() *cobra.Command {
	var (
		urls                 []string
		user, passwordFile   string
		seedFile, account    string
		fleetCA, operatorCA  string
		registry, sites, crl string
		operators            []string
		maxAge               time.Duration
		logLevel             string
	)
	cmd := &cobra.Command{
		Use:   "nats-callout --nats URL... --user U --password-file F --issuer-seed F --fleet-ca C --operator-ca C (--registry DIR | --sites F --crl F) --operator NAME=ROLE...",
		Short: "Serve NATS Server's authorization callout: bind each MQTT client id to its certificate, with the device's rights",
		Long: `NATS Server maps a client certificate to a user but lets any client of an
account take any MQTT client id, disconnecting the device that holds it and
receiving the commands queued in its session. This service answers the
cluster's authorization callout (scripts/nats/README.md) for every MQTT
connection: a device is admitted only under its own certificate's name as
client id, while the fleet CA's registry lists it (its site map) and its CRL
does not revoke it, with the rights of scripts/mosquitto's devices.acl; an
operator only with an operator CA certificate named by --operator, under a
client id no device holds. The site map and CRL are read again when they
change (lgctl ca revoke writes both). Run one beside every node, its own
node first in --nats.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lv}))
			if registry != "" {
				if sites != "" || crl != "" {
					return errors.New("--registry names the site map and CRL: give it or --sites and --crl, not both")
				}
				sites, crl = registry+"/"+provision.SiteMapFile, registry+"/"+provision.CRLFile
			}
			if sites == "" || crl == "" {
				return errors.New("--sites and --crl (or --registry) are required: without them no device is admitted")
			}
			seed, err := os.ReadFile(seedFile)
			if err != nil {
				return fmt.Errorf("--issuer-seed: %w", err)
			}
			issuer, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
			if err != nil {
				return fmt.Errorf("--issuer-seed: %w", err)
			}
			if pub, _ := issuer.PublicKey(); !nkeys.IsValidPublicAccountKey(pub) {
				return errors.New("--issuer-seed: not an account key (lgctl nats-callout keygen makes one)")
			}
			pw, err := os.ReadFile(passwordFile)
			if err != nil {
				return fmt.Errorf("--password-file: %w", err)
			}
			fca, err := loadCert(fleetCA)
			if err != nil {
				return fmt.Errorf("--fleet-ca: %w", err)
			}
			oca, err := loadCert(operatorCA)
			if err != nil {
				return fmt.Errorf("--operator-ca: %w", err)
			}
			ops := map[string]jwt.Permissions{}
			for _, o := range operators {
				name, role, ok := strings.Cut(o, "=")
				perm, known := natsauth.Roles[role]
				if !ok || name == "" || !known {
					return fmt.Errorf("--operator %q: want NAME=ROLE, ROLE one of console, lgctl", o)
				}
				ops[name] = perm
			}
			az := &natsauth.Authorizer{Issuer: issuer, Account: account, FleetCA: fca, OperatorCA: oca,
				Operators: ops, Sites: sites, CRL: crl, MaxAge: maxAge}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := natsauth.Start(ctx, natsauth.ServiceOptions{URLs: urls, User: user,
				Password: strings.TrimSpace(string(pw)), Authorizer: az, Logger: log}); err != nil {
				return err
			}
			log.Info("nats-callout: serving", "nats", urls, "account", account, "operators", len(ops))
			<-ctx.Done()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&urls, "nats", nil, "a node's client URL, nats://host:4222 (repeat; the local node first)")
	f.StringVar(&user, "user", "auth", "the callout's user (auth_callout.auth_users in the node configuration)")
	f.StringVar(&passwordFile, "password-file", "", "file holding that user's password")
	f.StringVar(&seedFile, "issuer-seed", "", "the account nkey seed that signs the answers (its public key is auth_callout.issuer)")
	f.StringVar(&account, "account", "FLEET", "account admitted clients are placed in (JetStream and the MQTT sessions)")
	f.StringVar(&fleetCA, "fleet-ca", "", "fleet CA certificate: the devices' (PEM)")
	f.StringVar(&operatorCA, "operator-ca", "", "operator CA certificate (PEM)")
	f.StringVar(&registry, "registry", "", "the fleet CA's registry directory (its sites and crl.pem)")
	f.StringVar(&sites, "sites", "", "the registry's site map")
	f.StringVar(&crl, "crl", "", "the fleet CA's CRL (PEM)")
	f.StringArrayVar(&operators, "operator", nil, "operator certificate name and role, e.g. console@ops=console, lgctl@ops=lgctl (repeat)")
	f.DurationVar(&maxAge, "max-age", time.Hour, "longest a connection is admitted for before it is judged again (0: until its certificate expires)")
	f.StringVar(&logLevel, "log-level", "info", "log level")
	for _, r := range []string{"nats", "password-file", "issuer-seed", "fleet-ca", "operator-ca"} {
		_ = cmd.MarkFlagRequired(r)
	}

	var out string
	keygen := &cobra.Command{
		Use:   "keygen -o SEEDFILE",
		Short: "Make the account nkey that signs the callout's answers; prints the public key for auth_callout.issuer",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kp, err := nkeys.CreateAccount()
			if err != nil {
				return err
			}
			seed, _ := kp.Seed()
			pub, _ := kp.PublicKey()
			fh, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("-o: %w (an existing seed is never overwritten)", err)
			}
			if _, err := fmt.Fprintf(fh, "%s\n", seed); err != nil {
				fh.Close()
				return err
			}
			if err := fh.Close(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s; in every node's configuration: auth_callout { issuer: %q }\n", out, pub)
			return nil
		},
	}
	keygen.Flags().StringVarP(&out, "out", "o", "", "file to write the seed to (mode 0600)")
	_ = keygen.MarkFlagRequired("out")
	cmd.AddCommand(keygen)
	return cmd
}

func loadCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: not a PEM certificate", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}
