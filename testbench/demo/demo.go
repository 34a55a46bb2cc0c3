// Package demo runs LinkGuard's desktop demonstration (`make demo`): an
// embedded broker on loopback, two border routers enforcing a signed demo
// policy on synthetic traffic through the real classifier, a relay
// controller holding a simulated feed over ptys, and the operator console.
// It prints the console's URL and runs until ctx ends.
package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"linkguard.dev/linkguard/testbench/bench"
)

// Options tune the demo.
type Options struct {
	ConsoleAddr string // default 127.0.0.1:8080, falling back to a free port
	BrokerAddr  string // default 127.0.0.1:1883, falling back to a free port
	Dir         string // working directory; default a fresh temporary one, removed at the end
	Logger      *slog.Logger
}

// Sites of the demo.
var (
	Routers = []bench.Site{{ID: "router-vte-01", Site: "vientiane-north"}, {ID: "router-lpb-01", Site: "luang-prabang"}}
	Feeds   = []bench.Site{{ID: "relay-vte-01", Site: "vientiane-north"}}
)

// Run starts the demo and blocks until ctx ends, then shuts down cleanly.
func Run(ctx context.Context, out io.Writer, opt Options) error {
	if opt.Dir == "" {
		dir, err := os.MkdirTemp("", "linkguard-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		opt.Dir = dir
	}
	if opt.ConsoleAddr == "" {
		opt.ConsoleAddr = "127.0.0.1:8080"
	}
	if opt.BrokerAddr == "" {
		opt.BrokerAddr = "127.0.0.1:1883"
	}
	fmt.Fprintf(out, "LinkGuard demo in %s\n", opt.Dir)
	fmt.Fprintln(out, "No network namespaces are used: the routers' links are in-memory wires, their traffic is generated and replayed through the real classifier (no root needed).")
	o := bench.Options{Dir: opt.Dir, Routers: Routers, Feeds: Feeds, TelemetryEvery: 2 * time.Second,
		BrokerAddr: opt.BrokerAddr, ConsoleAddr: opt.ConsoleAddr, Logger: opt.Logger, AutoEnrol: true}
	b, err := bench.Start(ctx, o)
	if err != nil && (o.BrokerAddr != "127.0.0.1:0" || o.ConsoleAddr != "127.0.0.1:0") {
		// The default ports are taken (another demo, a local mosquitto): any port will do.
		fmt.Fprintf(out, "(%v; using free ports)\n", err)
		o.BrokerAddr, o.ConsoleAddr = "127.0.0.1:0", "127.0.0.1:0"
		o.Dir = filepath.Join(opt.Dir, "retry")
		b, err = bench.Start(ctx, o)
	}
	if err != nil {
		return err
	}
	for _, r := range b.Routers {
		go r.Generate(b.Context(), 2, 500*time.Millisecond)
	}
	fmt.Fprintf(out, "\nBroker:  %s (embedded, loopback only)\n", b.Broker.URL())
	for _, a := range b.Agents() {
		fmt.Fprintf(out, "Device:  %-14s %-6s at %s\n", a.ID(), a.Kind(), a.Site())
	}
	fmt.Fprintf(out, "Keys:    %s (the simulated committee's and operator's; the console holds none)\n", b.Keys.Dir)
	fmt.Fprintf(out, "\nConsole: %s\n\nOpen it, make your key (it stays in your browser) and log in: in this demo the simulated committee\nadds every enrolled key to the roster at once, as a committee, grid and technician operator.\n"+
		"Try: revoke %s and watch the sites' denied rates rise; on the site page of %s set a throttle of 20 kW and watch the power fall under the cap in its chart.\nCtrl-C stops.\n",
		b.ConsoleURL, "LA-2026-0017", "relay-vte-01")
	<-ctx.Done()
	fmt.Fprintln(out, "\nstopping…")
	err = b.Close()
	fmt.Fprintln(out, "stopped.")
	return err
}
