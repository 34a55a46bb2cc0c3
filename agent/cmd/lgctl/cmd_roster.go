package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/roster"
)

// A roster is signed apart, together, like a policy: one committee member
// signs the YAML into an envelope (roster sign), the others add their
// signatures over its exact payload (roster cosign), and anyone checks who
// has signed and who is missing (roster status) against the committee keys
// devices were provisioned with; a fully signed one is published retained on
// the roster topic (roster publish), where devices take it from.

func newRosterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "roster", Short: "Sign, co-sign, check and show the roster of operators, their keys and roles"}
	cmd.AddCommand(newRosterSignCmd(), newRosterCosignCmd(), newRosterStatusCmd(), newRosterVerifyCmd(), newRosterPublishCmd(), newRosterShowCmd())
	return cmd
}

// checkRoster refuses to sign what devices would refuse: an invalid, expired
// or not yet issued roster.
func checkRoster(path string, payload []byte, now time.Time) (*roster.Roster, error) {
	r, err := roster.Parse(payload)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Expired(now) {
		return r, fmt.Errorf("%s: serial %d expired at %s; devices would refuse it", path, r.Serial, r.Expires.UTC().Format(time.RFC3339))
	}
	if r.Issued.After(now.Add(roster.ClockSkew)) {
		return r, fmt.Errorf("%s: serial %d is issued at %s, in the future; devices would refuse it until then", path, r.Serial, r.Issued.UTC().Format(time.RFC3339))
	}
	return r, nil
}

func newRosterSignCmd() *cobra.Command {
	var keys []string
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:   "sign --key A.key roster.yaml -o roster.signed.json [--force]",
		Short: "Validate a roster and sign it into a new envelope (the other committee members add theirs with roster cosign)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			payload, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			r, err := checkRoster(args[0], payload, time.Now())
			if err != nil {
				return err
			}
			privs, err := loadPrivateKeys(keys)
			if err != nil {
				return err
			}
			env, err := dsse.Sign(roster.PayloadType, payload, privs...)
			if err != nil {
				return err
			}
			if err := roster.Limits.CheckSize(len(env)); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if err := writeCosigned(cmd.OutOrStdout(), out, "", env, force); err != nil {
				return err
			}
			if out != "-" {
				fmt.Fprintf(cmd.ErrOrStderr(), "signed roster serial %d (%d operators, committee threshold %d) with %d key(s) into %s\n",
					r.Serial, len(r.Operators), r.Thresholds.Committee, len(privs), out)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&keys, "key", nil, "committee private key file (repeatable; one signature each)")
	cmd.Flags().StringVarP(&out, "output", "o", "roster.signed.json", "output file, - for stdout")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing output file")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func newRosterCosignCmd() *cobra.Command {
	var keyPath, out string
	var force bool
	cmd := &cobra.Command{
		Use:   "cosign --key B.key ENVELOPE [-o OUT]",
		Short: "Add your signature to a signed roster, over the envelope's exact payload (in place unless -o)",
		Long: `Add your signature to a signed roster. The signature is over the envelope's
payload byte for byte, never over your own copy of the YAML. The roster must
parse, must not have expired and must not carry your signature already.
Read it first with lgctl roster show ENVELOPE.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := readSigned(args[0], roster.PayloadType, "roster", roster.Limits)
			if err != nil {
				return err
			}
			r, err := checkRoster(f.path, f.payload, time.Now())
			if err != nil {
				return fmt.Errorf("not signing it: %w", err)
			}
			signed, keyID, err := f.cosign(keyPath, roster.Limits)
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
				fmt.Fprintf(cmd.ErrOrStderr(), "added the signature of %s (key id %.12s) to roster serial %d (%d operators, expires %s): %d signature(s) in %s\n",
					filepath.Base(keyPath), keyID, r.Serial, len(r.Operators), r.Expires.UTC().Format(time.RFC3339), len(f.env.Signatures)+1, out)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "your committee private key file")
	cmd.Flags().StringVarP(&out, "output", "o", "", "output file (default: ENVELOPE, in place), - for stdout")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing output file other than ENVELOPE")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

// anchorFlags are the committee keys a roster is checked against: the ones
// devices were provisioned with.
type anchorFlags struct {
	trust     []string
	threshold int
}

// read loads the anchors and reads the signed roster at path.
func (a *anchorFlags) read(path string) (*dsse.Keyring, *signedFile, error) {
	ring, err := loadKeyFiles(a.trust)
	if err != nil {
		return nil, nil, err
	}
	f, err := readSigned(path, roster.PayloadType, "roster", roster.Limits)
	return ring, f, err
}

func (a *anchorFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringSliceVar(&a.trust, "trust", nil, "committee public key file, as provisioned on devices (repeatable)")
	cmd.Flags().IntVar(&a.threshold, "threshold", 0, "signatures needed from distinct committee keys (default: the roster's own committee threshold)")
	_ = cmd.MarkFlagRequired("trust")
}

func newRosterStatusCmd() *cobra.Command {
	var af anchorFlags
	cmd := &cobra.Command{
		Use:   "status --trust A.pub --trust B.pub ... [--threshold N] ENVELOPE",
		Short: "List which committee keys signed a roster, which are missing and whether the threshold is met (exit 0 only when met)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ring, f, err := af.read(args[0])
			if err != nil {
				return err
			}
			in, err := ring.Inspect(f.data, roster.PayloadType, roster.Limits)
			if err != nil {
				return fmt.Errorf("%s: %w", f.path, err)
			}
			now := time.Now()
			w := cmd.OutOrStdout()
			r, invalid := checkRoster(f.path, f.payload, now)
			need := af.threshold
			if r != nil {
				fmt.Fprintf(w, "%s: roster serial %d, %d operators, issued %s, expires %s\n", f.path, r.Serial, len(r.Operators),
					r.Issued.UTC().Format(time.RFC3339), r.Expires.UTC().Format(time.RFC3339))
				need = max(need, r.Thresholds.Committee)
			} else {
				fmt.Fprintf(w, "%s: not a valid roster\n", f.path)
			}
			need = max(need, 1)
			fmt.Fprintln(w, "signed:")
			for _, id := range in.Signers {
				fmt.Fprintf(w, "  %s (%.12s)\n", ring.Name(id), id)
			}
			fmt.Fprintln(w, "missing:")
			for _, id := range ring.IDs() {
				if !contains(in.Signers, id) {
					fmt.Fprintf(w, "  %s (%.12s)\n", ring.Name(id), id)
				}
			}
			for _, e := range in.Problems() {
				fmt.Fprintf(w, "not counted: %v\n", e)
			}
			state := "met"
			if len(in.Signers) < need {
				state = "NOT met"
			}
			fmt.Fprintf(w, "threshold: %d of %d committee keys signed, %d needed: %s\n", len(in.Signers), ring.Len(), need, state)
			if invalid != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "lgctl:", invalid)
				return errSilent
			}
			if len(in.Signers) < need {
				return errSilent
			}
			return nil
		},
	}
	af.add(cmd)
	return cmd
}

func newRosterVerifyCmd() *cobra.Command {
	var af anchorFlags
	cmd := &cobra.Command{
		Use:   "verify --trust A.pub ... [--threshold N] ENVELOPE",
		Short: "Verify a signed roster as a device would (threshold, its own committee threshold, expiry); exit 0 when it would take it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ring, err := loadKeyFiles(af.trust)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			v, err := roster.Verify(data, ring, max(af.threshold, 1), time.Now())
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: roster serial %d verifies: signed by %d committee key(s), %d operators, expires %s\n",
				args[0], v.Roster.Serial, len(v.Signers), len(v.Roster.Operators), v.Roster.Expires.UTC().Format(time.RFC3339))
			return nil
		},
	}
	af.add(cmd)
	return cmd
}

func newRosterPublishCmd() *cobra.Command {
	var af anchorFlags
	var bf brokerFlags
	cmd := &cobra.Command{
		Use:   "publish --broker URL [--ca CA --tls-cert CERT --tls-key KEY] --trust PUB... [--threshold N] ENVELOPE",
		Short: "Publish a fully signed, unexpired roster as the retained fleet roster (refused below the threshold or as a rollback)",
		Example: `  lgctl roster publish --broker mqtts://broker:8883 --ca ca.pem --tls-cert ops.pem --tls-key ops.key \
    --trust committee-a.pub --trust committee-b.pub --trust committee-c.pub --threshold 2 roster.signed.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ring, f, err := af.read(args[0])
			if err != nil {
				return err
			}
			now := time.Now()
			need := max(af.threshold, 1)
			// As a device verifies it: threshold, its own committee
			// threshold, parse, expiry, issue time.
			v, err := roster.Verify(f.data, ring, need, now)
			if err != nil {
				return fmt.Errorf("%s: %w\n%s: not published", f.path, err, f.path)
			}
			r := v.Roster
			published, err := publishRetained(cmd, &bf, retainedDoc{what: "fleet roster", topic: contract.RosterTopic, client: "lgctl-roster",
				path: f.path, serial: r.Serial, retained: func(cur []byte) (uint64, []string, error) {
					old, err := roster.Verify(cur, ring, need, now)
					if old == nil { // an expired one still bars a rollback
						return 0, nil, err
					}
					return old.Roster.Serial, labels(ring, old.Signers), nil
				}}, f.data)
			if err != nil || !published {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "published roster serial %d (%d operators; signed by %s; expires %s, %s) as the retained fleet roster on %s\n",
				r.Serial, len(r.Operators), strings.Join(labels(ring, v.Signers), ", "), r.Expires.UTC().Format(time.RFC3339), untilText(r.Expires, now), contract.RosterTopic)
			return nil
		},
	}
	bf.add(cmd)
	af.add(cmd)
	return cmd
}

func newRosterShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show ENVELOPE|roster.yaml",
		Short: "Print a roster's operators, roles, keys and thresholds (signatures are not checked: roster status does that)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, sigs, err := readRosterFile(args[0])
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "roster serial %d, issued %s, expires %s\n", r.Serial, r.Issued.UTC().Format(time.RFC3339), r.Expires.UTC().Format(time.RFC3339))
			fmt.Fprintln(w, "thresholds:")
			for _, c := range roster.Classes {
				fmt.Fprintf(w, "  %-10s %d %s\n", c, r.Thresholds.Of(c), c.Role())
			}
			fmt.Fprintf(w, "%-16s %-24s %-26s %s\n", "OPERATOR", "ROLES", "NAME", "KEYS")
			for _, o := range r.Operators {
				ids := make([]string, len(o.Keys))
				for i, k := range o.Keys {
					ids[i] = k.ID[:12]
				}
				fmt.Fprintf(w, "%-16s %-24s %-26s %s\n", o.ID, rolesText(o.Roles), o.Name, strings.Join(ids, ", "))
			}
			if sigs >= 0 {
				fmt.Fprintf(w, "%d signature(s), not checked\n", sigs)
			}
			return nil
		},
	}
}

// readRosterFile reads a roster from its YAML or from a signed envelope
// without checking signatures; sigs is the envelope's signature count, -1
// for YAML.
func readRosterFile(path string) (r *roster.Roster, sigs int, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	sigs = -1
	if f, err := readSigned(path, roster.PayloadType, "roster", roster.Limits); err == nil {
		data, sigs = f.payload, len(f.env.Signatures)
	} else if !errors.Is(err, errNotEnvelope) {
		return nil, 0, err
	}
	r, err = roster.Parse(data)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	return r, sigs, nil
}

// readRoster reads the roster a command is judged by. A signed one is
// verified against trust when given; otherwise it is read as it is, with a
// note saying so.
func readRoster(stderr io.Writer, path string, trust []string) (*roster.Roster, error) {
	if len(trust) > 0 {
		ring, err := loadKeyFiles(trust)
		if err != nil {
			return nil, err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		v, err := roster.Verify(data, ring, 1, time.Now())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return v.Roster, nil
	}
	r, _, err := readRosterFile(path)
	if err == nil {
		fmt.Fprintf(stderr, "note: %s is read without checking its signatures (give --trust to check them)\n", path)
	}
	return r, err
}
