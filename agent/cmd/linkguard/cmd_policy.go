package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/agent/config"
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
}

// verifyFile verifies a signed policy file, printing one line per problem.
func (t *trustFlags) verifyFile(stderr io.Writer, path string, now time.Time) (*store.Verified, error) {
	if len(t.trust) == 0 {
		return nil, errors.New("--trust is required to verify a signed policy (or --config, to take the device's trust keys)")
	}
	ring, err := dsse.LoadKeyring(t.trust...)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !looksSigned(data) {
		return nil, fmt.Errorf("%s is not a signed policy envelope (it looks like a plain YAML policy): pass it with --draft to judge it as an UNSIGNED DRAFT", path)
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

// looksSigned reports whether data is shaped like a DSSE envelope (a JSON
// object) rather than a policy document, so a draft handed to --policy
// gets a sentence instead of a JSON parser's complaint.
func looksSigned(data []byte) bool {
	data = bytes.TrimSpace(data)
	return len(data) > 0 && data[0] == '{'
}

// policySource is where a command takes the policy it judges with: a signed
// file verified under trust keys, an unsigned draft, or the device's own
// configuration (flags given explicitly win over it).
type policySource struct {
	trustFlags
	config, file, draft, site, at string
}

func (s *policySource) register(cmd *cobra.Command) {
	s.trustFlags.register(cmd)
	f := cmd.Flags()
	f.StringVar(&s.config, "config", "", "take --policy, --trust, --threshold and --site from this device configuration (e.g. /etc/linkguard/linkguard.yaml)")
	f.StringVar(&s.file, "policy", "", "signed policy file")
	f.StringVar(&s.draft, "draft", "", "unsigned policy draft (YAML) to judge with instead of a signed policy")
	f.StringVar(&s.site, "site", "", "the device's site")
	f.StringVar(&s.at, "at", "", "judge at this RFC 3339 time instead of now")
	cmd.MarkFlagsMutuallyExclusive("policy", "draft")
}

// judged is a policy ready to judge flows with.
type judged struct {
	m     *match.Matcher
	label string // "serial 3" or "UNSIGNED DRAFT, serial 3"
	draft bool
	now   time.Time
	site  string
	// deviceSite is the site of the --config device, if any.
	deviceSite string
}

// load resolves the flags against --config and verifies (or, for a draft,
// parses) the policy; callers check the site with checkSite. A policy that verifies but has expired is
// still used, with a note: a device keeps enforcing its last good policy.
func (s *policySource) load(cmd *cobra.Command, doing string) (*judged, error) {
	stderr := cmd.ErrOrStderr()
	deviceSite := ""
	if s.config != "" {
		cfg, err := config.Load(s.config)
		if err != nil {
			return nil, err
		}
		f := cmd.Flags()
		if !f.Changed("policy") && !f.Changed("draft") {
			s.file = cfg.Policy.File
		}
		if !f.Changed("trust") {
			s.trust = cfg.Policy.Trust
		}
		if !f.Changed("threshold") {
			s.threshold = cfg.Policy.Threshold
		}
		if !f.Changed("site") {
			s.site = cfg.Device.Site
		}
		deviceSite = cfg.Device.Site
	}
	j := &judged{now: time.Now(), site: s.site, deviceSite: deviceSite}
	if s.at != "" {
		var err error
		if j.now, err = time.Parse(time.RFC3339, s.at); err != nil {
			return nil, fmt.Errorf("--at: %w", err)
		}
	}
	var p *policy.Policy
	switch {
	case s.draft != "":
		d, err := loadDraft(s.draft)
		if err != nil {
			return nil, err
		}
		p, j.draft = d, true
		j.label = "UNSIGNED DRAFT, serial " + fmt.Sprint(p.Serial)
	case s.file != "":
		v, err := s.verifyFile(stderr, s.file, j.now)
		if v == nil {
			return nil, err
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s anyway: a device keeps enforcing its last good policy\n", doing)
		}
		p = v.Policy
		j.label = "serial " + fmt.Sprint(p.Serial)
	default:
		return nil, errors.New("no policy: give --policy FILE (signed), --draft FILE (unsigned YAML) or --config FILE")
	}
	j.m = match.Compile(p)
	return j, nil
}

// loadDraft parses an unsigned policy document, refusing a signed envelope
// (which --policy verifies) so the label UNSIGNED DRAFT is never wrong.
func loadDraft(path string) (*policy.Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if looksSigned(data) {
		return nil, fmt.Errorf("%s is a signed envelope, not a draft: pass it with --policy and --trust", path)
	}
	p, err := policy.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// knownSites lists the sites the policies' approvals name and the device's
// own, sorted; restricted lists the approvals that name any.
func knownSites(deviceSite string, ms ...*match.Matcher) (sites []string, restricted []string) {
	if deviceSite != "" {
		sites = append(sites, deviceSite)
	}
	for _, m := range ms {
		p := m.Policy()
		for i := range p.Approvals {
			a := &p.Approvals[i]
			if len(a.Sites) > 0 && !slices.Contains(restricted, a.ID) {
				restricted = append(restricted, a.ID)
			}
			sites = append(sites, a.Sites...)
		}
	}
	slices.Sort(sites)
	return slices.Compact(sites), restricted
}

// checkSite refuses a site nothing names (a typo would otherwise be judged
// "does not apply at this site") and a missing site when some approval
// applies only at some sites. With no site-restricted approval and no
// configuration, the site cannot change any answer and is not checked.
func checkSite(site, deviceSite string, ms ...*match.Matcher) error {
	known, restricted := knownSites(deviceSite, ms...)
	if site == "" {
		if len(restricted) == 0 {
			return nil
		}
		return fmt.Errorf("--site is required: %d approval(s) apply only at some sites (%s); known sites: %s",
			len(restricted), strings.Join(restricted, ", "), strings.Join(known, ", "))
	}
	if len(known) == 0 || slices.Contains(known, site) {
		return nil
	}
	return fmt.Errorf("unknown site %q: no approval names it and it is not the device's; known sites: %s", site, strings.Join(known, ", "))
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
			ring, err := dsse.LoadKeyring(tf.trust...)
			if err != nil {
				return err
			}
			names := make([]string, len(v.Signers))
			for i, id := range v.Signers {
				names[i] = fmt.Sprintf("%s (%.12s)", filepath.Base(ring.Name(id)), id)
			}
			p := v.Policy
			m := match.Compile(p)
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK\n  serial:    %d\n  issued:    %s\n  expires:   %s (in %s)\n  default:   %s\n  domestic:  %d prefixes\n  approvals: %d (%d remote prefixes)\n  signed by: %d of %d trusted key(s), %d needed: %s\n",
				args[0], p.Serial, p.Issued.UTC().Format(time.RFC3339), p.Expires.UTC().Format(time.RFC3339),
				days(time.Until(p.Expires)), p.Default, len(p.Domestic), len(p.Approvals), m.Prefixes(),
				len(v.Signers), ring.Len(), tf.threshold, strings.Join(names, ", "))
			return nil
		},
	}
	tf.register(cmd)
	_ = cmd.MarkFlagRequired("trust")
	return cmd
}

func newPolicyExplainCmd() *cobra.Command {
	var ps policySource
	var src, dst, proto string
	var dport uint16
	cmd := &cobra.Command{
		Use:   "explain {--policy FILE --trust PUB... | --draft FILE | --config FILE} [--site S] --src IP --dst IP [--proto tcp --dport 443]",
		Short: "Explain what the policy does to one flow, and why",
		Long: "Judges one flow with the matcher the agent enforces with, then lists every approval that names\n" +
			"the remote end and which of its conditions (site, service, validity window) the flow fails.\n" +
			"--config takes the policy, trust keys and site from the device's configuration. --draft judges\n" +
			"an unsigned YAML draft (labelled UNSIGNED DRAFT). TCP, UDP and SCTP need --dport. --site must be\n" +
			"a site the policy or the configuration names, and is required when an approval is site-restricted.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := match.Query{}
			var err error
			if q.Src, err = netip.ParseAddr(src); err != nil {
				return fmt.Errorf("--src: %w", err)
			}
			if q.Dst, err = netip.ParseAddr(dst); err != nil {
				return fmt.Errorf("--dst: %w", err)
			}
			if q.Proto, err = policy.ParseProto(proto); err != nil {
				return fmt.Errorf("--proto: %w", err)
			}
			switch given := cmd.Flags().Changed("dport"); {
			case match.HasPorts(q.Proto) && (!given || dport == 0):
				return fmt.Errorf("--dport is required for %s: the port the flow was opened to (1-65535)", policy.ProtoName(q.Proto))
			case !match.HasPorts(q.Proto) && given:
				return fmt.Errorf("--dport: %s has no ports", policy.ProtoName(q.Proto))
			}
			q.DPort = dport
			j, err := ps.load(cmd, "explaining")
			if err != nil {
				return err
			}
			if err := checkSite(j.site, j.deviceSite, j.m); err != nil {
				return err
			}
			q.Site, q.Now = j.site, j.now
			explain(cmd.OutOrStdout(), j, &q)
			return nil
		},
	}
	ps.register(cmd)
	f := cmd.Flags()
	f.StringVar(&src, "src", "", "address that opened the flow")
	f.StringVar(&dst, "dst", "", "address it was opened to")
	f.StringVar(&proto, "proto", "tcp", "protocol: tcp, udp, icmp, … or ip/N")
	f.Uint16Var(&dport, "dport", 0, "destination port (required for tcp, udp and sctp)")
	for _, n := range []string{"src", "dst"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

// explain prints the verdict, then every approval that lists the remote end
// and which of its conditions the flow meets, with what the approval would
// have needed: what a technician needs when a customer asks why a link is
// cut. The console answers the same question with the same match.Explain.
func explain(w io.Writer, j *judged, q *match.Query) {
	e := match.Explain(j.m, q)
	e.Draft = j.draft
	io.WriteString(w, e.String())
}

// days spells a duration in days and hours, or hours and minutes under a
// day.
func days(d time.Duration) string { return match.Days(d) }
