package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/hal/atomicfile"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/store"
)

// A committee signs apart, together: one member signs the YAML into an
// envelope (sign), the others add their signatures to that envelope over
// its exact payload (cosign), anyone checks who has signed and who is
// missing (status, verify), and once the threshold is met the envelope is
// published as the fleet policy (publish).

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Sign, co-sign, check, review and publish link-approval policies"}
	cmd.AddCommand(newPolicySignCmd(), newPolicyCosignCmd(), newPolicyStatusCmd(), newPolicyVerifyCmd(),
		newPolicyPublishCmd(), newPolicyDiffCmd())
	return cmd
}

func newPolicySignCmd() *cobra.Command {
	var keys []string
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:   "sign --key A.key [--key B.key] policy.yaml -o policy.signed.json [--force]",
		Short: "Validate a policy and sign it into a new DSSE envelope (others add theirs with policy cosign)",
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
			if out != "-" && !force {
				if err := refuseOverwrite(out, args[0], payload); err != nil {
					return err
				}
			}
			privs, err := loadPrivateKeys(keys)
			if err != nil {
				return err
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
			stderr := cmd.ErrOrStderr()
			fmt.Fprintf(stderr, "signed serial %d (%d approvals, %d prefixes) with %d key(s) into %s\n",
				p.Serial, len(p.Approvals), p.Prefixes(), len(privs), out)
			if bytes.Contains(payload, []byte("\r\n")) {
				fmt.Fprintf(stderr, "note: %s has CRLF line endings, and they are signed: the other members must add their signatures with `lgctl policy cosign %s`, not sign their own copies\n", args[0], out)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&keys, "key", nil, "private key file (repeatable; one signature each)")
	cmd.Flags().StringVarP(&out, "output", "o", "policy.signed.json", "output file, - for stdout")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing output file")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

// refuseOverwrite refuses to replace an existing file with a new envelope:
// it may hold signatures others have added. When it is an envelope of the
// same policy the message says how to add a signature to it instead, and
// whether this copy of the YAML differs from what was signed only in line
// endings or trailing whitespace.
func refuseOverwrite(out, yamlPath string, payload []byte) error {
	data, err := os.ReadFile(out)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("%s exists; not replacing it without --force", out)
	env, err := dsse.Parse(data)
	if err != nil || env.PayloadType != policy.PayloadType {
		return errors.New(msg)
	}
	signed, err := env.DecodeB64Payload()
	if err != nil {
		return errors.New(msg)
	}
	switch d := compareCopies(payload, signed); {
	case d.equal:
		return fmt.Errorf("%s: it is already an envelope of this policy with %d signature(s); add yours with `lgctl policy cosign --key KEY %s`", msg, len(env.Signatures), out)
	case !d.content:
		return fmt.Errorf("%s: it is an envelope of this policy with %d signature(s), and %s differs from what was signed only in %s; signing %s would sign other bytes, which no other member's signature counts with: add your signature with `lgctl policy cosign --key KEY %s`",
			msg, len(env.Signatures), yamlPath, d.describe(yamlPath, out), yamlPath, out)
	}
	return fmt.Errorf("%s: it is an envelope of a different policy (review with `lgctl policy diff %s %s`)", msg, out, yamlPath)
}

func newPolicyCosignCmd() *cobra.Command {
	var keyPath, out, mine string
	var force bool
	cmd := &cobra.Command{
		Use:   "cosign --key B.key [--yaml MY-COPY.yaml] ENVELOPE [-o OUT]",
		Short: "Add your signature to a signed policy, over the envelope's exact payload (in place unless -o)",
		Long: `Add your signature to a signed policy. The signature is over the envelope's
payload, byte for byte, never over your own copy of the YAML: give your copy
with --yaml to check that it says the same (a copy that differs only in line
endings or trailing whitespace is noted, one that differs in content is
refused). The policy must parse, must not have expired, and must not carry
your signature already. Review what changed first: lgctl policy diff OLD ENVELOPE.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			data, err := readEnvelope(path)
			if err != nil {
				return err
			}
			env, err := dsse.Parse(data)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if env.PayloadType != policy.PayloadType {
				return fmt.Errorf("%s: payload type %q is not a policy", path, env.PayloadType)
			}
			payload, err := env.DecodeB64Payload()
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			p, err := policy.Parse(payload)
			if err != nil {
				return fmt.Errorf("%s: the signed payload is not a valid policy; not signing it: %w", path, err)
			}
			now := time.Now()
			if p.Expired(now) {
				return fmt.Errorf("%s: serial %d expired at %s (%s); devices would refuse it: not signing it",
					path, p.Serial, p.Expires.UTC().Format(time.RFC3339), untilText(p.Expires, now))
			}
			stderr := cmd.ErrOrStderr()
			if mine != "" {
				copyData, err := os.ReadFile(mine)
				if err != nil {
					return err
				}
				switch d := compareCopies(copyData, payload); {
				case d.content:
					return fmt.Errorf("%s is not what %s signs: they differ in content; not signing (review with `lgctl policy diff %s %s`)", mine, path, mine, path)
				case !d.equal:
					fmt.Fprintf(stderr, "note: %s differs from the signed payload only in %s; your signature is over the envelope's payload, which is what devices receive\n", mine, d.describe(mine, path))
				}
			}
			key, err := dsse.LoadPrivateKey(keyPath)
			if err != nil {
				return err
			}
			signed, err := dsse.Cosign(data, key, dsse.Limits{})
			if errors.Is(err, dsse.ErrAlreadySigned) {
				return fmt.Errorf("%s is already signed by %s (key id %s); nothing to add", path, keyPath, shortID(dsse.KeyID(key.Public().(ed25519.PublicKey))))
			}
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if out == "" {
				out = path
			}
			if err := writeCosigned(cmd.OutOrStdout(), out, path, signed, force); err != nil || out == "-" {
				return err
			}
			fmt.Fprintf(stderr, "added the signature of %s (key id %s) to serial %d (%d approvals, %d prefixes, expires %s): %d signature(s) in %s\n",
				filepath.Base(keyPath), shortID(dsse.KeyID(key.Public().(ed25519.PublicKey))), p.Serial, len(p.Approvals), p.Prefixes(),
				p.Expires.UTC().Format(time.RFC3339), len(env.Signatures)+1, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "your private key file")
	cmd.Flags().StringVarP(&out, "output", "o", "", "output file (default: ENVELOPE, in place), - for stdout")
	cmd.Flags().StringVar(&mine, "yaml", "", "your copy of the policy YAML, to check it says what the envelope signs")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing output file other than ENVELOPE")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

// loadPrivateKeys reads the private key files, one signature each.
func loadPrivateKeys(paths []string) ([]ed25519.PrivateKey, error) {
	privs := make([]ed25519.PrivateKey, 0, len(paths))
	for _, p := range paths {
		k, err := dsse.LoadPrivateKey(p)
		if err != nil {
			return nil, err
		}
		privs = append(privs, k)
	}
	return privs, nil
}

// writeCosigned writes what cosign made of in to out ("-": stdout). It
// replaces in itself, or another existing file only with force: that file
// may hold signatures others have added.
func writeCosigned(stdout io.Writer, out, in string, data []byte, force bool) error {
	if out == "-" {
		_, err := stdout.Write(data)
		return err
	}
	if !force && !samePath(out, in) {
		if _, err := os.Stat(out); err == nil {
			return fmt.Errorf("%s exists; not replacing it without --force", out)
		}
	}
	return atomicfile.Write(out, data, 0o644)
}

func samePath(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// trustFlags are the committee keys a signed policy is checked against.
type trustFlags struct {
	trust     []string
	threshold int
}

func (t *trustFlags) add(cmd *cobra.Command, required bool) {
	cmd.Flags().StringSliceVar(&t.trust, "trust", nil, "trusted committee public key file (repeatable)")
	cmd.Flags().IntVar(&t.threshold, "threshold", 0, "signatures needed from distinct trusted keys (default: every --trust key)")
	if required {
		_ = cmd.MarkFlagRequired("trust")
	}
}

// load returns the keyring and the threshold.
func (t *trustFlags) load() (*dsse.Keyring, int, error) {
	// Keys are named by file name in messages; keyLabel adds the id.
	ring := dsse.NewKeyring()
	for _, p := range t.trust {
		pub, err := dsse.LoadPublicKey(p)
		if err != nil {
			return nil, 0, err
		}
		ring.Add(pub, filepath.Base(p))
	}
	need := t.threshold
	if need == 0 {
		need = ring.Len()
	}
	if need < 1 || need > ring.Len() {
		return nil, 0, fmt.Errorf("--threshold %d with %d distinct trusted keys", t.threshold, ring.Len())
	}
	return ring, need, nil
}

// readEnvelope reads a signed policy, and says so plainly when the file is
// a policy's YAML instead: a committee member handed the wrong file should
// not read "malformed envelope".
func readEnvelope(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !isEnvelope(data) {
		if _, perr := policy.Parse(data); perr == nil {
			return nil, fmt.Errorf("%s is a policy YAML, not a signed envelope: give the envelope (lgctl policy sign writes it; compare your copy with --yaml)", path)
		}
		return nil, fmt.Errorf("%s is not a signed policy envelope (DSSE JSON)", path)
	}
	return data, nil
}

func isEnvelope(data []byte) bool {
	t := bytes.TrimSpace(data)
	return len(t) > 0 && t[0] == '{'
}

// review is what a committee member needs to know about a signed policy:
// whose signatures verified, who is missing, why the others do not count,
// and whether devices would take it.
type review struct {
	path    string
	ring    *dsse.Keyring
	need    int
	in      *dsse.Inspection
	policy  *policy.Policy // nil when the payload is not a valid policy
	invalid error
	why     map[int]string // signature index -> why it did not verify, when that can be told
	mine    string         // --yaml compared with the payload: a problem or a note; "" when equal or not given
	mineBad bool           // mine differs in content
}

func examine(path string, ring *dsse.Keyring, need int, minePath string) (*review, error) {
	data, err := readEnvelope(path)
	if err != nil {
		return nil, err
	}
	in, err := ring.Inspect(data, policy.PayloadType, dsse.Limits{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r := &review{path: path, ring: ring, need: need, in: in, why: map[int]string{}}
	r.policy, r.invalid = policy.Parse(in.Payload)
	var mine []byte
	if minePath != "" {
		if mine, err = os.ReadFile(minePath); err != nil {
			return nil, err
		}
		switch d := compareCopies(mine, in.Payload); {
		case d.content:
			r.mine, r.mineBad = fmt.Sprintf("%s is not what %s signs: they differ in content (review with `lgctl policy diff %s %s`)", minePath, path, minePath, path), true
		case !d.equal:
			r.mine = fmt.Sprintf("%s differs from the signed payload only in %s: it says the same; the signatures are over the envelope's payload", minePath, d.describe(minePath, path))
		}
	}
	for _, s := range in.Signatures {
		if errors.Is(s.Err, dsse.ErrBadSignature) {
			if why := r.explain(s, mine, minePath); why != "" {
				r.why[s.Index] = why
			}
		}
	}
	return r, nil
}

// explain tells why a trusted key's signature does not verify when it was
// made over another copy of the same YAML: the member signed their own copy
// (CRLF line endings from a mail client or an editor, say) instead of the
// envelope's payload. It tries the payload with its line endings turned
// over, and the member's copy; at most three verifications per key.
func (r *review) explain(s dsse.SignatureCheck, mine []byte, minePath string) string {
	payload := r.in.Payload
	candidates := [][]byte{crlf(payload), lf(payload)}
	if mine != nil {
		candidates = append(candidates, mine)
	}
	for i, c := range candidates {
		if bytes.Equal(c, payload) || !r.ring.SignedOver(s.KeyID, r.in.PayloadType, c, s.Sig) {
			continue
		}
		d := compareCopies(c, payload)
		copyName := "a copy"
		if i == 2 {
			copyName = minePath
		}
		if d.content {
			return fmt.Sprintf("it signs %s, which differs from this payload in content", copyName)
		}
		return fmt.Sprintf("it signs %s that differs from this payload only in %s: the holder of %s signed their own copy of the YAML, not this envelope's payload, and should sign again with `lgctl policy cosign`",
			copyName, d.describe("the signed copy", "this payload"), keyLabel(r.ring, s.KeyID))
	}
	return ""
}

// problems lists why devices would refuse the policy now; none means they
// would take it. A review of changes passes lapsed, which leaves out expiry.
func (r *review) problems(now time.Time, lapsed bool) []string {
	var out []string
	if n := len(r.in.Signers); n < r.need {
		out = append(out, r.uncounted()...)
		out = append(out, fmt.Sprintf("%d of %d needed signatures from distinct trusted keys (%s missing)", n, r.need, strings.Join(r.missing(), ", ")))
	}
	if r.invalid != nil {
		out = append(out, r.invalid.Error())
	}
	if p := r.policy; p != nil {
		if p.Expired(now) && !lapsed {
			out = append(out, fmt.Sprintf("%v: serial %d expired at %s (%s)", store.ErrExpired, p.Serial, p.Expires.UTC().Format(time.RFC3339), untilText(p.Expires, now)))
		}
		if p.Issued.After(now.Add(store.ClockSkew)) {
			out = append(out, fmt.Sprintf("%v: serial %d is issued at %s", store.ErrIssued, p.Serial, p.Issued.UTC().Format(time.RFC3339)))
		}
	}
	if r.mineBad {
		out = append(out, r.mine)
	}
	return out
}

// uncounted says why each signature that did not count does not.
func (r *review) uncounted() []string {
	var out []string
	for _, s := range r.in.Signatures {
		if s.Err == nil {
			continue
		}
		line := s.Err.Error()
		if why, ok := r.why[s.Index]; ok {
			line = fmt.Sprintf("signatures[%d] by %s does not verify: %s", s.Index, keyLabel(r.ring, s.KeyID), why)
		}
		out = append(out, line)
	}
	return out
}

// signers names the trusted keys whose signatures verified.
func (r *review) signers() []string {
	out := make([]string, len(r.in.Signers))
	for i, id := range r.in.Signers {
		out[i] = keyLabel(r.ring, id)
	}
	return out
}

// missing names the trusted keys that have not signed (or whose signature
// does not verify).
func (r *review) missing() []string {
	var out []string
	for _, id := range r.ring.IDs() {
		if !slices.Contains(r.in.Signers, id) {
			out = append(out, keyLabel(r.ring, id))
		}
	}
	slices.Sort(out)
	return out
}

// report prints the problems, each prefixed with the file, and returns
// errSilent when there are any.
func (r *review) report(w io.Writer, now time.Time, lapsed bool) error {
	probs := r.problems(now, lapsed)
	for _, p := range probs {
		for _, line := range strings.Split(p, "\n") {
			if line = strings.TrimSpace(line); line != "" {
				fmt.Fprintf(w, "%s: %s\n", r.path, line)
			}
		}
	}
	if len(r.in.Signers) >= r.need {
		// Devices ignore these once the threshold is met; say so anyway.
		for _, u := range r.uncounted() {
			fmt.Fprintf(w, "note: %s: not counted: %s\n", r.path, u)
		}
	}
	if r.mine != "" && !r.mineBad {
		fmt.Fprintf(w, "note: %s\n", r.mine)
	}
	if len(probs) > 0 {
		return errSilent
	}
	return nil
}

// keyLabel names a key by its file and short id, or as untrusted.
func keyLabel(ring *dsse.Keyring, id string) string {
	for _, t := range ring.IDs() {
		if t == id {
			return fmt.Sprintf("%s (%s)", filepath.Base(ring.Name(id)), shortID(id))
		}
	}
	return "untrusted key " + shortID(id)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// reviewCmd is a command that examines one signed policy against the
// committee keys (and the member's copy of the YAML, with --yaml) and shows
// the review.
func reviewCmd(use, short string, show func(cmd *cobra.Command, r *review, now time.Time) error) *cobra.Command {
	var tf trustFlags
	var mine string
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ring, need, err := tf.load()
			if err != nil {
				return err
			}
			r, err := examine(args[0], ring, need, mine)
			if err != nil {
				return err
			}
			return show(cmd, r, time.Now())
		},
	}
	tf.add(cmd, true)
	cmd.Flags().StringVar(&mine, "yaml", "", "your copy of the policy YAML, to compare with what was signed")
	return cmd
}

func newPolicyStatusCmd() *cobra.Command {
	return reviewCmd("status --trust A.pub --trust B.pub ... [--threshold N] [--yaml MY-COPY.yaml] ENVELOPE",
		"List who has signed a policy, who is missing and whether the threshold is met (exit 0 only when devices would take it)",
		func(cmd *cobra.Command, r *review, now time.Time) error {
			w := cmd.OutOrStdout()
			if p := r.policy; p != nil {
				fmt.Fprintf(w, "%s: policy serial %d, issued %s, expires %s (%s)\n", r.path, p.Serial,
					p.Issued.UTC().Format(time.RFC3339), p.Expires.UTC().Format(time.RFC3339), untilText(p.Expires, now))
			} else {
				fmt.Fprintf(w, "%s: not a valid policy\n", r.path)
			}
			fmt.Fprintln(w, "signed:")
			for _, s := range r.signers() {
				fmt.Fprintf(w, "  %s\n", s)
			}
			fmt.Fprintln(w, "missing:")
			for _, s := range r.missing() {
				fmt.Fprintf(w, "  %s\n", s)
			}
			state := "met"
			if len(r.in.Signers) < r.need {
				state = "NOT met"
			}
			fmt.Fprintf(w, "threshold: %d of %d trusted keys signed, %d needed: %s\n", len(r.in.Signers), r.ring.Len(), r.need, state)
			return r.report(cmd.ErrOrStderr(), now, false)
		})
}

func newPolicyVerifyCmd() *cobra.Command {
	return reviewCmd("verify --trust PUB... [--threshold N] [--yaml MY-COPY.yaml] ENVELOPE",
		"Verify a signed policy as a device would and print a summary with its signers (exit 1 with one line per problem)",
		func(cmd *cobra.Command, r *review, now time.Time) error {
			if err := r.report(cmd.ErrOrStderr(), now, false); err != nil {
				return err
			}
			p := r.policy
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK\n  serial:    %d\n  issued:    %s\n  expires:   %s (%s)\n  default:   %s\n  domestic:  %d prefixes\n  approvals: %d (%d remote prefixes)\n  signed by: %s (%d of %d trusted keys, %d needed)\n",
				r.path, p.Serial, p.Issued.UTC().Format(time.RFC3339), p.Expires.UTC().Format(time.RFC3339), untilText(p.Expires, now),
				p.Default, len(p.Domestic), len(p.Approvals), p.Prefixes(), strings.Join(r.signers(), ", "), len(r.in.Signers), r.ring.Len(), r.need)
			return nil
		})
}

// retainedWait is how long publish waits for the broker to hand over the
// retained fleet policy or roster after subscribing; brokers send it with the
// subscription's acknowledgement, so a second is generous.
const retainedWait = time.Second

func newPolicyPublishCmd() *cobra.Command {
	var tf trustFlags
	var bf brokerFlags
	cmd := &cobra.Command{
		Use:   "publish --broker URL [--ca CA --tls-cert CERT --tls-key KEY] --trust PUB... [--threshold N] ENVELOPE",
		Short: "Publish a fully signed, unexpired policy as the retained fleet policy (refused below the threshold)",
		Example: `  lgctl policy publish --broker mqtts://broker:8883 --ca ca.pem --tls-cert ops.pem --tls-key ops.key \
    --trust committee-a.pub --trust committee-b.pub --trust committee-c.pub --threshold 2 policy.signed.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ring, need, err := tf.load()
			if err != nil {
				return err
			}
			r, err := examine(args[0], ring, need, "")
			if err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			now := time.Now()
			if err := r.report(stderr, now, false); err != nil {
				fmt.Fprintf(stderr, "%s: not published\n", r.path)
				return err
			}
			env, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			p := r.policy
			published, err := publishRetained(cmd, &bf, retainedDoc{what: "fleet policy", topic: contract.PolicyTopic, client: "lgctl-policy",
				path: r.path, serial: p.Serial, retained: func(cur []byte) (uint64, []string, error) {
					old, err := store.Verify(cur, ring, need, now)
					if old == nil { // an expired one still bars a rollback
						return 0, nil, err
					}
					return old.Policy.Serial, labels(ring, old.Signers), nil
				}}, env)
			if err != nil || !published {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "published serial %d (signed by %s; expires %s, %s) as the retained fleet policy on %s\n",
				p.Serial, strings.Join(r.signers(), ", "), p.Expires.UTC().Format(time.RFC3339), untilText(p.Expires, now), contract.PolicyTopic)
			return nil
		},
	}
	bf.add(cmd)
	tf.add(cmd, true)
	return cmd
}

func labels(ring *dsse.Keyring, ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = keyLabel(ring, id)
	}
	return out
}

// retainedDoc is a signed document devices take from a retained topic (the
// fleet policy, the roster), as publish sees it.
type retainedDoc struct {
	what   string // "fleet policy", "fleet roster"
	topic  string
	client string // MQTT client id
	path   string // of the envelope to publish
	serial uint64 // of the envelope to publish
	// retained reads what the broker holds: its serial and who signed it
	// when it verifies (expired or not), or why it does not.
	retained func(env []byte) (serial uint64, signers []string, err error)
}

// publishRetained publishes env, verified by the caller, retained on
// d.topic. It first reads what the broker holds there: when that is env
// already it says so and publishes nothing (false, nil); when it verifies
// and its serial is not older, devices would refuse env as a rollback and
// publishRetained refuses too; one that does not verify (a device
// certificate can publish anything) is replaced, with a note saying why.
func publishRetained(cmd *cobra.Command, bf *brokerFlags, d retainedDoc, env []byte) (bool, error) {
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	c, err := bf.connect(ctx, d.client)
	if err != nil {
		return false, err
	}
	defer c.Disconnect(100)
	cur, err := retained(ctx, c, d.topic)
	if err != nil {
		return false, err
	}
	if cur != nil {
		serial, signers, verr := d.retained(cur)
		switch {
		case verr != nil:
			fmt.Fprintf(cmd.ErrOrStderr(), "note: the retained %s does not verify against these keys; replacing it:\n  %s\n", d.what, strings.ReplaceAll(verr.Error(), "\n", "\n  "))
		case bytes.Equal(cur, env):
			fmt.Fprintf(cmd.OutOrStdout(), "serial %d is already the %s on %s\n", d.serial, d.what, d.topic)
			return false, nil
		case serial >= d.serial:
			return false, fmt.Errorf("%s: the %s is serial %d, signed by %s; devices refuse serial %d as a rollback: not published",
				d.path, d.what, serial, strings.Join(signers, ", "), d.serial)
		}
	}
	tok := c.Publish(d.topic, 1, true, env)
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return false, fmt.Errorf("publish: %w", ctx.Err())
	}
	if err := tok.Error(); err != nil {
		return false, fmt.Errorf("publish: %w", err)
	}
	return true, nil
}

// retained returns the message retained on topic, or nil when the broker
// holds none.
func retained(ctx context.Context, c paho.Client, topic string) ([]byte, error) {
	got := make(chan []byte, 1)
	err := subscribe(ctx, c, topic, func(_ paho.Client, m paho.Message) {
		if m.Retained() {
			select {
			case got <- bytes.Clone(m.Payload()):
			default:
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", topic, err)
	}
	defer c.Unsubscribe(topic)
	t := time.NewTimer(retainedWait)
	defer t.Stop()
	select {
	case b := <-got:
		if len(b) == 0 { // an empty retained message clears the topic
			return nil, nil
		}
		return b, nil
	case <-t.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// copies compares two copies of a document.
type copies struct {
	equal       bool // byte for byte
	content     bool // they differ in more than line endings and trailing whitespace
	lineEndings bool // one has CRLF where the other has LF
	trailing    bool // trailing spaces, tabs or blank lines differ
	crlfInFirst bool // the first copy is the one with CRLF
}

func compareCopies(a, b []byte) copies {
	if bytes.Equal(a, b) {
		return copies{equal: true}
	}
	d := copies{}
	if !slices.Equal(normalize(a), normalize(b)) {
		d.content = true
		return d
	}
	la, lb := lf(a), lf(b)
	d.lineEndings = !bytes.Equal(a, la) || !bytes.Equal(b, lb)
	d.crlfInFirst = !bytes.Equal(a, la)
	d.trailing = !bytes.Equal(la, lb)
	return d
}

// describe says how the copies differ, naming the first copy a and the
// second b.
func (d copies) describe(a, b string) string {
	var what []string
	if d.lineEndings {
		withCR, without := a, b
		if !d.crlfInFirst {
			withCR, without = b, a
		}
		what = append(what, fmt.Sprintf("line endings (CRLF in %s, LF in %s)", withCR, without))
	}
	if d.trailing {
		what = append(what, "trailing whitespace")
	}
	return strings.Join(what, " and ")
}

// normalize is a document's lines without line endings, trailing spaces
// and tabs, and trailing blank lines.
func normalize(b []byte) []string {
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t\r")
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// lf turns CRLF line endings into LF.
func lf(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")) }

// crlf turns LF line endings into CRLF.
func crlf(b []byte) []byte { return bytes.ReplaceAll(lf(b), []byte("\n"), []byte("\r\n")) }

// untilText says when t is from now: "in 29d23h" or "expired 3h12m ago".
func untilText(t, now time.Time) string {
	if d := t.Sub(now); d > 0 {
		return "in " + roughly(d)
	}
	return "expired " + roughly(now.Sub(t)) + " ago"
}

func roughly(d time.Duration) string {
	const day = 24 * time.Hour
	d = d.Round(time.Minute)
	switch {
	case d >= day:
		return fmt.Sprintf("%dd%dh", d/day, d%day/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
	}
	return fmt.Sprintf("%dm", d/time.Minute)
}

// readPolicy reads a policy from YAML or from a signed envelope. With a
// keyring, an envelope must meet the threshold (a tampered or under-signed
// file is refused, not diffed); an expired one is still read, with a note,
// since reviews compare against the policy in force, which may have lapsed.
// Without one, an envelope's signatures are not checked, and stderr says so.
func readPolicy(stderr io.Writer, path string, ring *dsse.Keyring, need int) (*policy.Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !isEnvelope(data) {
		p, err := policy.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if ring != nil {
			fmt.Fprintf(stderr, "note: %s is YAML, unsigned\n", path)
		}
		return p, nil
	}
	if ring == nil {
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
		p, err := policy.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		fmt.Fprintf(stderr, "note: %s: signatures not checked (give --trust)\n", path)
		return p, nil
	}
	r, err := examine(path, ring, need, "")
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if err := r.report(stderr, now, true); err != nil {
		return nil, err
	}
	if p := r.policy; p.Expired(now) {
		fmt.Fprintf(stderr, "note: %s: serial %d %s\n", path, p.Serial, untilText(p.Expires, now))
	}
	return r.policy, nil
}

func newPolicyDiffCmd() *cobra.Command {
	var tf trustFlags
	cmd := &cobra.Command{
		Use:   "diff [--trust PUB... [--threshold N]] OLD NEW",
		Short: "List approvals added, removed and changed between two policies (YAML or signed; with --trust, signed ones must verify)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ring *dsse.Keyring
			var need int
			if len(tf.trust) > 0 {
				var err error
				if ring, need, err = tf.load(); err != nil {
					return err
				}
			}
			stderr := cmd.ErrOrStderr()
			old, err := readPolicy(stderr, args[0], ring, need)
			if err != nil {
				return err
			}
			cur, err := readPolicy(stderr, args[1], ring, need)
			if err != nil {
				return err
			}
			if n := diff(cmd.OutOrStdout(), old, cur); n > 0 {
				return errDiffers
			}
			return nil
		},
	}
	tf.add(cmd, false)
	return cmd
}

// errDiffers makes diff exit 1 when the policies differ, like diff(1).
var errDiffers = fmt.Errorf("policies differ: %w", errSilent)

// diff prints policy.Diff's changes one a line and returns how many change
// what is enforced (a new serial alone does not).
func diff(w io.Writer, old, cur *policy.Policy) int {
	n := 0
	for _, c := range policy.Diff(old, cur) {
		fmt.Fprintln(w, c)
		if c.Kind != policy.SerialChanged {
			n++
		}
	}
	if n == 0 {
		fmt.Fprintln(w, "no approval changes")
	}
	return n
}
