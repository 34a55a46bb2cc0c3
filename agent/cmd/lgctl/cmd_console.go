package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"linkguard.dev/linkguard/agent/console"
	"linkguard.dev/linkguard/policy/dsse"
)

func newConsoleCmd() *cobra.Command {
	var (
		o         console.Options
		listen    string
		opKey     string
		committee []string
		logLevel  string
	)
	cmd := &cobra.Command{
		Use:   "console --broker URL --key operator.key",
		Short: "Serve the operator's web console: fleet, feeds, events and signed actions",
		Long: `Serve the operator's web console on --listen (loopback by default). It follows
the fleet through the broker and signs the operator's commands with --key on
this machine; the key never reaches the browser. With one or more --committee
keys, revoking or approving a link publishes a new fleet policy signed by them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			o.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lv}))
			if opKey != "" {
				k, err := dsse.LoadPrivateKey(opKey)
				if err != nil {
					return err
				}
				o.Operator = k
				o.OperatorName = strings.TrimSuffix(filepath.Base(opKey), ".key")
			}
			for _, p := range committee {
				k, err := dsse.LoadPrivateKey(p)
				if err != nil {
					return err
				}
				o.Committee = append(o.Committee, k)
			}
			o.Persistent = o.ClientID != ""
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			return runConsole(cmd.Context(), o, ln, func(url string) {
				fmt.Fprintf(cmd.OutOrStdout(), "console: %s (broker %s)\n", url, o.Broker)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Broker, "broker", "", "broker URL (tcp://, mqtt://, ssl://, mqtts://)")
	f.StringVar(&opKey, "key", "", "operator private key that signs commands (NAME.key)")
	f.StringArrayVar(&committee, "committee", nil, "committee private key that signs policies (repeat for a threshold)")
	f.StringVar(&listen, "listen", "127.0.0.1:8080", "address the web console listens on")
	f.StringVar(&o.ClientID, "client-id", "", "MQTT client id; given, the broker keeps the console's session while it is away")
	f.StringVar(&o.Share, "share", "", "take telemetry and events through the shared subscription group $share/NAME/")
	f.StringVar(&o.TLS.CA, "ca", "", "CA certificate of an mqtts broker")
	f.StringVar(&o.TLS.Cert, "tls-cert", "", "client certificate (PEM) for mutual TLS, as lgctl cmd and watch take it")
	f.StringVar(&o.TLS.Key, "tls-key", "", "client certificate key (PEM)")
	f.StringVar(&logLevel, "log-level", "info", "log level")
	cmd.MarkFlagRequired("broker")
	return cmd
}

// runConsole follows the fleet and serves the console on ln until ctx ends.
func runConsole(ctx context.Context, o console.Options, ln net.Listener, ready func(url string)) error {
	c, err := console.New(o)
	if err != nil {
		ln.Close()
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.Run(ctx) })
	g.Go(func() error { return console.Serve(ctx, ln, c.Handler()) })
	ready("http://" + ln.Addr().String() + "/")
	return g.Wait()
}
