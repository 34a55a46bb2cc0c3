// Package demo runs LinkGuard's desktop demonstration: it makes throwaway
// committee keys, signs a demo policy, starts a real agent on it and shows
// what the enforced policy allows and denies.
package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"linkguard.dev/linkguard/agent"
	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/match"
)

// Site is the demo router's site.
const Site = "vientiane-north"

// PolicyYAML renders the demo policy, issued now and valid for a month.
func PolicyYAML(serial uint64, now time.Time) []byte {
	return fmt.Appendf(nil, `serial: %d
issued: %s
expires: %s
default: deny
domestic: [103.1.0.0/16, 2001:db8:100::/40]
approvals:
  - id: LA-2026-0017
    holder: Example Telecom
    sites: [%s]
    remote: [203.0.113.0/24, 2001:db8:feed::/48]
    services: [tcp/443, udp/5060-5061, icmp]
  - id: LA-2026-0018
    holder: Mekong Transit
    remote: [198.51.100.0/24]
`, serial, now.UTC().Format(time.RFC3339), now.AddDate(0, 1, 0).UTC().Format(time.RFC3339), Site)
}

// Flows the demo judges.
var Flows = []struct {
	What            string
	Src, Dst, Proto string
	DPort           uint16
}{
	{"customer to approved partner, HTTPS", "103.1.20.5", "203.0.113.10", "tcp", 443},
	{"customer to approved partner, SSH", "103.1.20.5", "203.0.113.10", "tcp", 22},
	{"approved SIP trunk (IPv6)", "2001:db8:100::5", "2001:db8:feed::9", "udp", 5060},
	{"transit carrier, any service", "103.1.20.5", "198.51.100.77", "udp", 4500},
	{"unapproved call-centre VoIP", "103.1.66.6", "192.0.2.200", "udp", 5060},
	{"unapproved tunnel", "103.1.66.6", "45.76.1.1", "udp", 51820},
	{"inbound from unapproved host", "192.0.2.200", "103.1.20.5", "tcp", 3389},
	{"domestic traffic", "103.1.20.5", "103.1.99.1", "tcp", 80},
}

// Run starts the demo and blocks until ctx ends.
func Run(ctx context.Context, out io.Writer, log *slog.Logger) error {
	dir, err := os.MkdirTemp("", "linkguard-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(out, "LinkGuard demo in %s\n", dir)
	_, pubA, err := dsse.GenerateKeyFiles(dir, "committee-a")
	if err != nil {
		return err
	}
	keyA, err := dsse.LoadPrivateKey(filepath.Join(dir, "committee-a.key"))
	if err != nil {
		return err
	}
	env, err := dsse.Sign(policy.PayloadType, PolicyYAML(1, time.Now()), keyA)
	if err != nil {
		return err
	}
	polPath := filepath.Join(dir, "policy.signed.json")
	if err := os.WriteFile(polPath, env, 0o644); err != nil {
		return err
	}
	cfg, err := config.Parse("demo.yaml", fmt.Appendf(nil, `device: {id: demo-router-01, site: %s, kind: router}
state_dir: %s
policy: {file: %s, trust: [%s]}
log: {level: info, format: text}
`, Site, filepath.Join(dir, "state"), polPath, pubA))
	if err != nil {
		return err
	}
	ready := make(chan *agent.Agent, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- agent.Run(ctx, cfg, agent.Options{Logger: log, Ready: func(a *agent.Agent) { ready <- a }})
	}()
	var a *agent.Agent
	select {
	case a = <-ready:
	case err := <-errc:
		return err
	}
	// Wait for the watcher to apply the signed file.
	deadline := time.Now().Add(10 * time.Second)
	for a.Policy.Matcher() == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	m := a.Policy.Matcher()
	if m == nil {
		return fmt.Errorf("demo: the agent did not load the signed policy")
	}
	fmt.Fprintf(out, "\nThe agent enforces policy serial %d signed by committee-a. Its verdicts at site %s:\n\n", m.Policy().Serial, Site)
	Table(out, m)
	fmt.Fprintf(out, "\nRunning; edit and re-sign %s to see hot reload. Ctrl-C stops.\n", polPath)
	return <-errc
}

// Table prints the verdict of every demo flow.
func Table(out io.Writer, m *match.Matcher) {
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FLOW\tFROM\tTO\tVERDICT\tWHY")
	for _, f := range Flows {
		proto, _ := policy.ParseProto(f.Proto)
		q := match.Query{Site: Site, Src: netip.MustParseAddr(f.Src), Dst: netip.MustParseAddr(f.Dst), Proto: proto, DPort: f.DPort, Now: time.Now()}
		d := m.Decide(&q)
		why := d.Reason.String()
		if a := m.Approval(d.Approval); a != nil {
			why = a.ID + " (" + a.Holder + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s/%d\t%s\t%s\n", f.What, f.Src, f.Dst, f.Proto, f.DPort, strings.ToUpper(d.Verdict.String()), why)
	}
	tw.Flush()
}
