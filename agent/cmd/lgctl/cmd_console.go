package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"linkguard.dev/linkguard/agent/console"
	"linkguard.dev/linkguard/policy/dsse"
)

func newConsoleCmd() *cobra.Command {
	var (
		o        console.Options
		listen   string
		trust    []string
		certFile string
		keyFile  string
		logLevel string
		fleet    fleetCAFlags
	)
	cmd := &cobra.Command{
		Use:   "console --broker URL --trust committee.pub... [--roster ROSTER] [--state DIR] [--tls-cert C --tls-key K] [--host NAME:PORT...]",
		Short: "Serve the operators' web console: fleet, feeds, events, proposals and signed actions",
		Long: `Serve the operators' web console on --listen (loopback by default). It follows
the fleet through the broker and holds no signing key: operators log in with
their own Ed25519 key (made in the browser and kept there, or a key file
through "lgctl console sign"), and sign every action themselves; the console
verifies each against the roster and relays it. A policy change is a
proposal that the committee co-signs until the threshold is met, then it is
published.

The fleet policy and the roster are verified against the committee keys
(--trust, the anchors the devices were provisioned with) before anything is
shown or built on them. With --fleet-ca, every state, telemetry, event and
result must be sealed by the device its topic names (its fleet
certificate); anything else is listed as unverified and never merged.
Logins, proposals, signatures, publications,
commands and devices' results are kept in DIR/console.db (SQLite).

Over plain http the browser's WebCrypto works on loopback only: serve other
addresses with --tls-cert/--tls-key, and name them with --host.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			o.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lv}))
			for _, p := range trust {
				pub, err := dsse.LoadPublicKey(p)
				if err != nil {
					return fmt.Errorf("--trust: %w", err)
				}
				o.Trust = append(o.Trust, pub)
			}
			v, err := fleet.verifier()
			if err != nil {
				return err
			}
			if v != nil {
				o.FleetCA, o.Revoked = v.Roots, v.Revoked
			} else {
				o.Logger.Warn("no --fleet-ca: reports are believed as they arrive, and shown unverified")
			}
			if (certFile == "") != (keyFile == "") {
				return errors.New("--tls-cert and --tls-key go together")
			}
			o.Secure = certFile != ""
			o.Persistent = o.ClientID != ""
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			if o.Secure {
				cert, err := tls.LoadX509KeyPair(certFile, keyFile)
				if err != nil {
					ln.Close()
					return fmt.Errorf("--tls-cert/--tls-key: %w", err)
				}
				ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
			}
			return runConsole(cmd.Context(), o, ln, func(url string) {
				fmt.Fprintf(cmd.OutOrStdout(), "console: %s (broker %s)\n", url, o.Broker)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Broker, "broker", "", "broker URL (tcp://, mqtt://, ssl://, mqtts://)")
	f.StringArrayVar(&o.Brokers, "broker-also", nil, "another node of a clustered broker, tried after --broker (repeat)")
	f.StringArrayVar(&trust, "trust", nil, "committee public key the devices trust (repeat for each anchor)")
	f.IntVar(&o.Threshold, "threshold", 1, "committee signatures a policy needs at the least (a roster may raise it)")
	f.StringVar(&o.RosterFile, "roster", "", "signed roster to start from (later ones arrive on the retained roster topic)")
	f.StringVar(&o.StateDir, "state", defaultConsoleState(), "directory of the console's store (audit log, proposals, devices, event and telemetry history, last good roster)")
	f.StringVar(&o.Store, "store", "", "the store instead of DIR/console.db: a postgres:// URL (consoles sharing one history) or a SQLite file")
	f.DurationVar(&o.Retention.Raw, "retain-raw", console.DefaultRetention.Raw, "keep raw telemetry samples this long (negative: for ever)")
	f.DurationVar(&o.Retention.Minute, "retain-minute", console.DefaultRetention.Minute, "keep 1-minute telemetry rollups this long (negative: for ever)")
	f.DurationVar(&o.Retention.Hour, "retain-hour", console.DefaultRetention.Hour, "keep 1-hour telemetry rollups this long (negative: for ever)")
	f.DurationVar(&o.Retention.Events, "retain-events", console.DefaultRetention.Events, "keep the fleet's events this long (negative: for ever; the audit log is kept for ever)")
	f.StringVar(&listen, "listen", "127.0.0.1:8080", "address the web console listens on")
	f.StringArrayVar(&o.Hosts, "host", nil, "host:port the console answers to (repeat); default the --listen address, and localhost on loopback")
	f.StringVar(&certFile, "tls-cert", "", "certificate (PEM) to serve the console over https")
	f.StringVar(&keyFile, "tls-key", "", "key (PEM) of --tls-cert")
	f.DurationVar(&o.SessionTTL, "session-ttl", 30*time.Minute, "how long a login lasts")
	f.DurationVar(&o.Silence, "silence", 45*time.Second, "show a device offline after this long without a message from it (wills are lost when a cluster node dies)")
	f.DurationVar(&o.PolicyValidity, "policy-validity", 30*24*time.Hour, "validity of a proposed policy from its issue")
	f.DurationVar(&o.ExpiryWarning, "expiry-warning", console.DefaultExpiryWarning, "warn this long before the fleet policy or an approval expires")
	f.StringVar(&o.ClientID, "client-id", "", "MQTT client id; given, the broker keeps the console's session while it is away (events, results and telemetry, all at QoS 1)")
	f.StringVar(&o.Share, "share", "", "take telemetry and events through the shared subscription group $share/NAME/")
	f.StringVar(&o.TLS.CA, "ca", "", "CA certificate of an mqtts broker")
	f.StringVar(&o.TLS.Cert, "client-cert", "", "the console's MQTT client certificate (PEM) for mutual TLS")
	f.StringVar(&o.TLS.Key, "client-key", "", "key of --client-cert (PEM)")
	f.StringVar(&logLevel, "log-level", "info", "log level")
	fleet.add(cmd)
	cmd.MarkFlagRequired("broker")
	cmd.AddCommand(newConsoleSignCmd(), newConsolePendingCmd(), newConsoleUploadCmd())
	return cmd
}

func defaultConsoleState() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "linkguard", "console")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "linkguard", "console")
	}
	return "lgconsole-state"
}

// runConsole follows the fleet and serves the console on ln until ctx ends.
func runConsole(ctx context.Context, o console.Options, ln net.Listener, ready func(url string)) error {
	c, err := console.New(o)
	if err != nil {
		ln.Close()
		return err
	}
	defer c.Close()
	c.SetListener(ln.Addr().String())
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.Run(ctx) })
	g.Go(func() error { return console.Serve(ctx, ln, c.Handler()) })
	scheme := "http"
	if o.Secure {
		scheme = "https"
	}
	ready(scheme + "://" + ln.Addr().String() + "/")
	return g.Wait()
}

// consoleClient is the flags of the key-file client subcommands.
type consoleClient struct {
	url, key, ca string
}

func (cc *consoleClient) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&cc.url, "url", "", "the console's URL (http://127.0.0.1:8080/)")
	cmd.Flags().StringVar(&cc.key, "key", "", "your private key file (NAME.key); it never leaves this machine")
	cmd.Flags().StringVar(&cc.ca, "ca", "", "CA certificate of an https console")
	cmd.MarkFlagRequired("url")
	cmd.MarkFlagRequired("key")
}

func (cc *consoleClient) login(ctx context.Context) (*console.Client, *console.Session, error) {
	k, err := dsse.LoadPrivateKey(cc.key)
	if err != nil {
		return nil, nil, err
	}
	cl := &console.Client{URL: cc.url, Key: k}
	if cc.ca != "" {
		pem, err := os.ReadFile(cc.ca)
		if err != nil {
			return nil, nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("--ca %s: no certificate", cc.ca)
		}
		cl.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	s, err := cl.Login(ctx)
	if err != nil {
		return nil, nil, err
	}
	return cl, s, nil
}

func newConsolePendingCmd() *cobra.Command {
	var cc consoleClient
	cmd := &cobra.Command{
		Use:   "pending --url URL --key ME.key",
		Short: "List the proposals and commands waiting at the console for signatures",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, _, err := cc.login(cmd.Context())
			if err != nil {
				return err
			}
			list, err := cl.Pending(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tACTION\tTARGET\tSTATE\tSIGNED\tBY\tREASON")
			for _, p := range list {
				var who []string
				for _, s := range p.Signatures {
					who = append(who, s.Operator)
				}
				fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\t%d/%d %s\t%s\t%s\n", p.ID, p.Action, p.Detail, p.Target, p.State,
					len(p.Signatures), p.Needed, strings.Join(who, ","), p.By, p.Reason)
			}
			return tw.Flush()
		},
	}
	cc.flags(cmd)
	return cmd
}

func newConsoleSignCmd() *cobra.Command {
	var (
		cc  consoleClient
		yes bool
	)
	cmd := &cobra.Command{
		Use:   "sign --url URL --key ME.key ID",
		Short: "Review and sign a pending proposal or command at the console with a key file",
		Long: `Log in to the console with your key file, show what the pending action ID
would publish (the changes and the exact payload), and sign that payload
here. The console verifies the signature and publishes once the threshold is
met. Without --yes it asks before signing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, s, err := cc.login(cmd.Context())
			if err != nil {
				return err
			}
			p, err := cl.Sign(cmd.Context(), args[0], func(p *console.Pending) error {
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "%s: %s %s → %s, proposed by %s: %q\n", p.ID, p.Action, p.Detail, p.Target, p.By, p.Reason)
				for _, ch := range p.Changes {
					fmt.Fprintln(out, "  "+ch)
				}
				fmt.Fprintf(out, "--- payload (%s) ---\n%s\n---\n", p.PayloadType, p.Payload)
				if yes {
					return nil
				}
				fmt.Fprintf(out, "sign this as %s? [y/N] ", s.Operator)
				var answer string
				fmt.Fscanln(cmd.InOrStdin(), &answer)
				if answer != "y" && answer != "yes" {
					return errors.New("not signed")
				}
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signed %s: %d of %d signatures, %s\n", p.ID, len(p.Signatures), p.Needed, p.State)
			return nil
		},
	}
	cc.flags(cmd)
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "sign without asking")
	return cmd
}

func newConsoleUploadCmd() *cobra.Command {
	var cc consoleClient
	cmd := &cobra.Command{
		Use:   "upload --url URL --key ME.key ID ENVELOPE",
		Short: "Give the console the signatures of an envelope co-signed offline (lgctl policy cosign)",
		Long: `Download a proposal's envelope from the console (its "envelope" link, or
GET /api/pending/ID/envelope), co-sign it on a machine of your own with
lgctl policy cosign, and upload it here: the console takes each new
signature over the proposal's exact payload that verifies.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := os.ReadFile(args[1])
			if err != nil {
				return err
			}
			cl, _, err := cc.login(cmd.Context())
			if err != nil {
				return err
			}
			p, err := cl.Upload(cmd.Context(), args[0], env)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d of %d signatures, %s\n", p.ID, len(p.Signatures), p.Needed, p.State)
			return nil
		},
	}
	cc.flags(cmd)
	return cmd
}
