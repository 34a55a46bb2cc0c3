package main

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/hal/atomicfile"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Sign and review link-approval policies"}
	cmd.AddCommand(newPolicySignCmd(), newPolicyDiffCmd())
	return cmd
}

func newPolicySignCmd() *cobra.Command {
	var keys []string
	var out string
	cmd := &cobra.Command{
		Use:   "sign --key A.key [--key B.key] policy.yaml -o policy.signed.json",
		Short: "Validate a policy and sign it into a DSSE envelope",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			payload, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			// Never sign what a device would refuse.
			p, err := policy.Parse(payload)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if p.Expired(time.Now()) {
				return fmt.Errorf("%s: serial %d expired at %s; devices would refuse it", args[0], p.Serial, p.Expires.Format(time.RFC3339))
			}
			var privs []ed25519.PrivateKey
			for _, k := range keys {
				priv, err := dsse.LoadPrivateKey(k)
				if err != nil {
					return err
				}
				privs = append(privs, priv)
			}
			env, err := dsse.Sign(policy.PayloadType, payload, privs...)
			if err != nil {
				return err
			}
			if out == "-" {
				_, err = cmd.OutOrStdout().Write(env)
				return err
			}
			if err := atomicfile.Write(out, env, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "signed serial %d (%d approvals, %d prefixes) with %d key(s) into %s\n",
				p.Serial, len(p.Approvals), p.Prefixes(), len(privs), out)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&keys, "key", nil, "private key file (repeatable; one signature each)")
	cmd.Flags().StringVarP(&out, "output", "o", "policy.signed.json", "output file, - for stdout")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

// readPolicy reads a policy from YAML or from a signed envelope. Diff is a
// review tool: it does not verify signatures (linkguard policy verify does).
func readPolicy(path string) (*policy.Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		env, err := dsse.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if env.PayloadType != policy.PayloadType {
			return nil, fmt.Errorf("%s: payload type %q is not a policy", path, env.PayloadType)
		}
		if data, err = env.DecodeB64Payload(); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	p, err := policy.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

func newPolicyDiffCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "diff OLD NEW",
		Short: "List approvals added, removed and changed between two policies (YAML or signed)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			old, err := readPolicy(args[0])
			if err != nil {
				return err
			}
			cur, err := readPolicy(args[1])
			if err != nil {
				return err
			}
			if n := diff(cmd.OutOrStdout(), old, cur); n > 0 {
				return errDiffers
			}
			return nil
		},
	}
}

// errDiffers makes diff exit 1 when the policies differ, like diff(1).
var errDiffers = fmt.Errorf("policies differ: %w", errSilent)

func diff(w io.Writer, old, cur *policy.Policy) int {
	n := 0
	line := func(format string, args ...any) {
		n++
		fmt.Fprintf(w, format+"\n", args...)
	}
	if old.Serial != cur.Serial {
		fmt.Fprintf(w, "serial: %d -> %d\n", old.Serial, cur.Serial)
	}
	if !old.Expires.Equal(cur.Expires) {
		line("expires: %s -> %s", old.Expires.Format(time.RFC3339), cur.Expires.Format(time.RFC3339))
	}
	if old.Default != cur.Default {
		line("default: %s -> %s", old.Default, cur.Default)
	}
	if a, b := prefixes(old.Domestic), prefixes(cur.Domestic); !slices.Equal(a, b) {
		line("domestic: %s -> %s", strings.Join(a, ", "), strings.Join(b, ", "))
	}
	oldByID := map[string]*policy.Approval{}
	for i := range old.Approvals {
		oldByID[old.Approvals[i].ID] = &old.Approvals[i]
	}
	seen := map[string]bool{}
	for i := range cur.Approvals {
		b := &cur.Approvals[i]
		seen[b.ID] = true
		a, ok := oldByID[b.ID]
		if !ok {
			line("+ %s (%s): %d remote prefixes", b.ID, b.Holder, len(b.Remote))
			continue
		}
		if ch := changes(a, b); len(ch) > 0 {
			line("~ %s (%s): %s", b.ID, b.Holder, strings.Join(ch, "; "))
		}
	}
	for i := range old.Approvals {
		if a := &old.Approvals[i]; !seen[a.ID] {
			line("- %s (%s): revoked", a.ID, a.Holder)
		}
	}
	if n == 0 {
		fmt.Fprintln(w, "no approval changes")
	}
	return n
}

func changes(a, b *policy.Approval) []string {
	var out []string
	if a.Holder != b.Holder {
		out = append(out, fmt.Sprintf("holder %q -> %q", a.Holder, b.Holder))
	}
	if !slices.Equal(a.Sites, b.Sites) {
		out = append(out, fmt.Sprintf("sites [%s] -> [%s]", strings.Join(a.Sites, ", "), strings.Join(b.Sites, ", ")))
	}
	added, removed := setDiff(prefixes(a.Remote), prefixes(b.Remote))
	if len(added) > 0 {
		out = append(out, "remote added "+strings.Join(added, ", "))
	}
	if len(removed) > 0 {
		out = append(out, "remote removed "+strings.Join(removed, ", "))
	}
	if x, y := services(a.Services), services(b.Services); !slices.Equal(x, y) {
		out = append(out, fmt.Sprintf("services [%s] -> [%s]", strings.Join(x, ", "), strings.Join(y, ", ")))
	}
	if !a.ValidFrom.Equal(b.ValidFrom) || !a.ValidUntil.Equal(b.ValidUntil) {
		out = append(out, fmt.Sprintf("window %s..%s -> %s..%s", when(a.ValidFrom), when(a.ValidUntil), when(b.ValidFrom), when(b.ValidUntil)))
	}
	return out
}

func when(t time.Time) string {
	if t.IsZero() {
		return "open"
	}
	return t.Format(time.RFC3339)
}

func prefixes[T fmt.Stringer](ps []T) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	slices.Sort(out)
	return out
}

func services(s []policy.Service) []string { return prefixes(s) }

// setDiff returns what b has that a lacks, and what a has that b lacks;
// both inputs are sorted.
func setDiff(a, b []string) (added, removed []string) {
	for _, x := range b {
		if _, ok := slices.BinarySearch(a, x); !ok {
			added = append(added, x)
		}
	}
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); !ok {
			removed = append(removed, x)
		}
	}
	return added, removed
}
