package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/match"
	"linkguard.dev/linkguard/policy/store"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Verify a signed policy, or explain its verdict on a flow"}
	cmd.AddCommand(newPolicyVerifyCmd(), newPolicyExplainCmd())
	return cmd
}

type trustFlags struct {
	trust     []string
	threshold int
}

func (t *trustFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringSliceVar(&t.trust, "trust", nil, "trusted committee public key file (repeatable)")
	cmd.Flags().IntVar(&t.threshold, "threshold", 1, "signatures needed from distinct trusted keys")
	_ = cmd.MarkFlagRequired("trust")
}

// verifyFile verifies a signed policy file, printing one line per problem.
func (t *trustFlags) verifyFile(stderr io.Writer, path string, now time.Time) (*store.Verified, error) {
	ring, err := dsse.LoadKeyring(t.trust...)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	v, err := store.Verify(data, ring, t.threshold, now)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				fmt.Fprintf(stderr, "%s: %s\n", path, line)
			}
		}
		return v, errSilent
	}
	return v, nil
}

// policyAt verifies a signed policy for judging flows at --at (default
// now). A policy that verifies but has expired is still used, with a note:
// a device keeps enforcing its last good policy.
func (t *trustFlags) policyAt(stderr io.Writer, file, at, doing string) (*store.Verified, time.Time, error) {
	now := time.Now()
	if at != "" {
		var err error
		if now, err = time.Parse(time.RFC3339, at); err != nil {
			return nil, now, fmt.Errorf("--at: %w", err)
		}
	}
	v, err := t.verifyFile(stderr, file, now)
	if v == nil {
		return nil, now, err
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s anyway: a device keeps enforcing its last good policy\n", doing)
	}
	return v, now, nil
}

func newPolicyVerifyCmd() *cobra.Command {
	var tf trustFlags
	cmd := &cobra.Command{
		Use:   "verify --trust PUB... [--threshold N] FILE",
		Short: "Verify a signed policy and print a summary (exit 1 with one line per problem)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := tf.verifyFile(cmd.ErrOrStderr(), args[0], time.Now())
			if err != nil {
				return err
			}
			p := v.Policy
			m := match.Compile(p)
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK\n  serial:    %d\n  issued:    %s\n  expires:   %s (in %s)\n  default:   %s\n  domestic:  %d prefixes\n  approvals: %d (%d remote prefixes)\n  signed by: %d trusted key(s)\n",
				args[0], p.Serial, p.Issued.UTC().Format(time.RFC3339), p.Expires.UTC().Format(time.RFC3339),
				time.Until(p.Expires).Round(time.Minute), p.Default, len(p.Domestic), len(p.Approvals), m.Prefixes(), len(v.Signers))
			return nil
		},
	}
	tf.register(cmd)
	return cmd
}

func newPolicyExplainCmd() *cobra.Command {
	var tf trustFlags
	var file, site, src, dst, proto, at string
	var dport uint16
	cmd := &cobra.Command{
		Use:   "explain --policy FILE --trust PUB... --site S --src IP --dst IP --proto tcp --dport 443",
		Short: "Explain what the policy does to one flow, and why",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, now, err := tf.policyAt(cmd.ErrOrStderr(), file, at, "explaining")
			if err != nil {
				return err
			}
			q := match.Query{Site: site, Now: now}
			if q.Src, err = netip.ParseAddr(src); err != nil {
				return fmt.Errorf("--src: %w", err)
			}
			if q.Dst, err = netip.ParseAddr(dst); err != nil {
				return fmt.Errorf("--dst: %w", err)
			}
			if q.Proto, err = policy.ParseProto(proto); err != nil {
				return fmt.Errorf("--proto: %w", err)
			}
			q.DPort = dport
			m := match.Compile(v.Policy)
			explain(cmd.OutOrStdout(), m, &q)
			return nil
		},
	}
	tf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&file, "policy", "", "signed policy file")
	f.StringVar(&site, "site", "", "the device's site")
	f.StringVar(&src, "src", "", "address that opened the flow")
	f.StringVar(&dst, "dst", "", "address it was opened to")
	f.StringVar(&proto, "proto", "tcp", "protocol: tcp, udp, icmp, … or ip/N")
	f.Uint16Var(&dport, "dport", 0, "destination port")
	f.StringVar(&at, "at", "", "judge at this RFC 3339 time instead of now")
	for _, n := range []string{"policy", "src", "dst"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

// explain prints the verdict, then every approval that lists the remote end
// and which of its conditions the flow meets: what a technician needs when a
// customer asks why a link is cut.
func explain(w io.Writer, m *match.Matcher, q *match.Query) {
	d := m.Decide(q)
	p := m.Policy()
	fmt.Fprintf(w, "flow:     %s %s -> %s port %d at site %q, %s\n", policy.ProtoName(q.Proto), q.Src, q.Dst, q.DPort, q.Site, q.Now.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "policy:   serial %d, default %s\n", p.Serial, p.Default)
	fmt.Fprintf(w, "verdict:  %s\nreason:   %s\n", strings.ToUpper(d.Verdict.String()), d.Reason)
	if a := m.Approval(d.Approval); a != nil {
		fmt.Fprintf(w, "approval: %s (%s)\n", a.ID, a.Holder)
	}
	if d.Verdict == match.Domestic {
		return
	}
	fmt.Fprintf(w, "remote:   %s\n", d.Remote)
	found := false
	for _, remote := range []netip.Addr{q.Dst.Unmap(), q.Src.Unmap()} {
		if m.IsDomestic(remote) {
			continue
		}
		for i := range p.Approvals {
			a := &p.Approvals[i]
			for _, pfx := range a.Remote {
				if !pfx.Contains(remote) {
					continue
				}
				found = true
				fmt.Fprintf(w, "  %s (%s) lists %s: site %s, service %s, window %s\n", a.ID, a.Holder, pfx,
					yesNo(a.CoversSite(q.Site)), yesNo(a.CoversService(q.Proto, q.DPort)), yesNo(a.ActiveAt(q.Now)))
			}
		}
	}
	if !found {
		fmt.Fprintln(w, "  no approval lists this address")
	}
}

func yesNo(ok bool) string {
	if ok {
		return "ok"
	}
	return "NO"
}
