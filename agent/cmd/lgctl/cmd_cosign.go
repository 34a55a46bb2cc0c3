package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/roster"
)

// Multi-signature commands are signed apart, like policies and rosters: one
// operator makes the envelope (cmd sign), the others add their signatures
// over its exact payload (cmd cosign), anyone checks it against the roster
// (cmd status), and once enough have signed it is sent (cmd send).

// withEnvelopeCmds adds sign, cosign, status and send to `lgctl cmd`.
func withEnvelopeCmds(cmd *cobra.Command) *cobra.Command {
	cmd.AddCommand(newCmdSignCmd(), newCmdCosignCmd(), newCmdStatusCmd(), newCmdSendCmd())
	return cmd
}

// signedFile is an envelope read from a file, with its decoded payload.
type signedFile struct {
	path    string
	data    []byte
	env     *dsse.Envelope
	payload []byte
}

// errNotEnvelope marks a file that is not an envelope at all (a YAML copy
// of the document, most likely).
var errNotEnvelope = errors.New("not a signed envelope")

// readSigned reads an envelope of payloadType within lim. what names the
// document in messages ("roster", "command"); a file that is not an
// envelope at all is named as such (errNotEnvelope), not as malformed JSON.
func readSigned(path, payloadType, what string, lim dsse.Limits) (*signedFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !isEnvelope(data) {
		return nil, fmt.Errorf("%s: %w (DSSE JSON) of a %s; `lgctl %s sign` makes one", path, errNotEnvelope, what, what)
	}
	env, err := dsse.ParseLimited(data, lim)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if env.PayloadType != payloadType {
		return nil, fmt.Errorf("%s: payload type %q is not a %s (%s)", path, env.PayloadType, what, payloadType)
	}
	payload, err := env.DecodeB64Payload()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &signedFile{path: path, data: data, env: env, payload: payload}, nil
}

// cosign adds the signature of the key in keyPath to f, over f's exact
// payload.
func (f *signedFile) cosign(keyPath string, lim dsse.Limits) (signed []byte, keyID string, err error) {
	key, err := dsse.LoadPrivateKey(keyPath)
	if err != nil {
		return nil, "", err
	}
	keyID = dsse.KeyID(key.Public().(ed25519.PublicKey))
	signed, err = dsse.Cosign(f.data, key, lim)
	if errors.Is(err, dsse.ErrAlreadySigned) {
		return nil, keyID, fmt.Errorf("%s is already signed by %s (key id %.12s); nothing to add", f.path, keyPath, keyID)
	}
	if err != nil {
		return nil, keyID, fmt.Errorf("%s: %w", f.path, err)
	}
	return signed, keyID, nil
}

// loadKeyFiles trusts the public keys in paths, each labelled with its file
// name, as policy status does.
func loadKeyFiles(paths []string) (*dsse.Keyring, error) {
	ring, _, err := (&trustFlags{trust: paths}).load()
	return ring, err
}

// ---- lgctl cmd sign | cosign | status | send

// cmdType is a command type a device handles, with the arguments its
// handler reads; the role that signs it comes from command.ClassOf, so
// this list cannot disagree with the devices about who may sign.
type cmdType struct {
	name, args, does string
	// protected names the stricter class a command of this type falls in
	// when it touches a protected circuit.
	protected bool
}

// cmdTypes are the command types the agent registers handlers for
// (agent/mqttlink, agent/feeds, agent/update); TestCmdTypesKnown checks
// each has a class and its arguments are the handler's JSON fields.
var cmdTypes = []cmdType{
	{command.Ping, "(none)", "answer with the device's time and boot id", false},
	{command.Rebirth, "(none)", "publish the device's state again now", false},
	{command.PolicyFetch, "(none)", "read the retained fleet policy again", false},
	{command.LogLevel, "level=debug|info|warn|error", "change the agent's log level until restart", false},
	{command.EvidenceUpload, "[file=NAME]", "upload an evidence pcap (without file: list them)", false},
	{command.ThrottleSet, "feed=ID cap_kw=N [from=TIME] [until=TIME] [ramp=DURATION]", "cap a feed's power", false},
	{command.ThrottleClear, "feed=ID", "lift a feed's cap", false},
	{command.RelaySet, "feed=ID circuit=ID state=on|off|auto [override=true reason=TEXT]", "switch one circuit by hand", true},
	{command.UpdateFetch, "url=URL sha256=HEX [size=N] [allow_downgrade=true ticket=ENVELOPE]", "download and install a firmware bundle", false},
}

// cmdTypesHelp lists the command types with their arguments and the role
// (and signatures by default) each needs, for --help and refusals.
func cmdTypesHelp() string {
	var b strings.Builder
	b.WriteString("Command types (TYPE), their arguments (key=value) and the role whose signatures count:\n")
	for _, t := range cmdTypes {
		role := "no role (devices with a roster refuse it)"
		if c, ok := command.ClassOf(t.name); ok {
			role = fmt.Sprintf("%s, %d signature(s)", c.Role(), roster.Defaults.Of(c))
			if t.protected {
				role += fmt.Sprintf("; on a protected circuit %d %s", roster.Defaults.Of(roster.ClassProtected), roster.ClassProtected.Role())
			}
		}
		fmt.Fprintf(&b, "  %-16s %s\n  %-16s %s; role: %s\n", t.name, t.args, "", t.does, role)
	}
	b.WriteString("Signature counts are the defaults; a roster's thresholds (lgctl roster show) may ask more;\nlgctl cmd status judges a signed command against a roster.")
	return b.String()
}

// checkType refuses a command type no device handles, before anything is
// signed, with the list of those that exist.
func checkType(typ string) error {
	for _, t := range cmdTypes {
		if t.name == typ {
			return nil
		}
	}
	return fmt.Errorf("unknown command type %q: devices would refuse it\n%s", typ, cmdTypesHelp())
}

// newPayload is a command for target with a fresh random id, valid from now
// for valid.
func newPayload(target, typ string, kvs []string, valid time.Duration) (command.Payload, error) {
	if err := checkType(typ); err != nil {
		return command.Payload{}, err
	}
	args, err := parseArgs(kvs)
	if err != nil {
		return command.Payload{}, err
	}
	if valid <= 0 || valid > command.MaxLifetime {
		return command.Payload{}, fmt.Errorf("--valid %v: a command is valid for more than 0 and at most %v", valid, command.MaxLifetime)
	}
	now := time.Now().UTC()
	var rnd [12]byte
	rand.Read(rnd[:])
	return command.Payload{ID: hex.EncodeToString(rnd[:]), Target: target, Issued: now, Expires: now.Add(valid), Type: typ, Args: args}, nil
}

func newCmdSignCmd() *cobra.Command {
	var (
		keyPath, target, out string
		valid                time.Duration
		force                bool
	)
	cmd := &cobra.Command{
		Use:   "sign --key A.key --target DEVICE|site:NAME|all -o CMD.json TYPE [key=value ...]",
		Short: "Sign a command into an envelope without sending it, for others to cosign (then lgctl cmd send)",
		Long:  "Sign a command into an envelope without sending it, for others to cosign (then lgctl cmd send).\n\n" + cmdTypesHelp(),
		Example: `  lgctl cmd sign --key grid-1.key --target relay-07 --valid 30m -o hospital-off.json \
    relay.set feed=tachileik-1 circuit=hospital state=off override=true reason="transformer fire"
  lgctl cmd cosign --key grid-2.key hospital-off.json
  lgctl cmd status --roster roster.signed.json --protected hospital-off.json
  lgctl cmd send --broker mqtts://broker:8883 --ca ca.pem --tls-cert ops.pem --tls-key ops.key hospital-off.json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			key, err := dsse.LoadPrivateKey(keyPath)
			if err != nil {
				return err
			}
			p, err := newPayload(target, argv[0], argv[1:], valid)
			if err != nil {
				return err
			}
			env, err := command.Sign(p, key)
			if err != nil {
				return err
			}
			if err := writeCosigned(cmd.OutOrStdout(), out, "", env, force); err != nil {
				return err
			}
			if out != "-" {
				fmt.Fprintf(cmd.ErrOrStderr(), "signed %s %s for %s, valid until %s, into %s\n", p.Type, p.ID, p.Target,
					p.Expires.Format(time.RFC3339), out)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "your operator signing key")
	cmd.Flags().StringVar(&target, "target", "", "device id, site:NAME or all")
	cmd.Flags().DurationVar(&valid, "valid", 30*time.Minute, "how long the command stays valid, cosigning included (at most 24h)")
	cmd.Flags().StringVarP(&out, "output", "o", "", "output file, - for stdout")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing output file")
	for _, f := range []string{"key", "target", "output"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

// readCommand reads a command envelope and its payload, refusing one whose
// payload is not a command or has expired.
func readCommand(path string, now time.Time) (*signedFile, command.Payload, error) {
	f, err := readSigned(path, command.PayloadType, "command", command.EnvelopeLimits)
	if err != nil {
		return nil, command.Payload{}, err
	}
	p, err := command.DecodePayload(f.payload)
	if err != nil {
		return nil, command.Payload{}, fmt.Errorf("%s: %w", path, err)
	}
	if !now.Before(p.Expires) {
		return f, p, fmt.Errorf("%s: %s %s expired at %s; devices would refuse it", path, p.Type, p.ID, p.Expires.UTC().Format(time.RFC3339))
	}
	return f, p, nil
}

func newCmdCosignCmd() *cobra.Command {
	var keyPath, out string
	var force bool
	cmd := &cobra.Command{
		Use:   "cosign --key B.key ENVELOPE [-o OUT]",
		Short: "Add your signature to a signed command, over its exact payload (in place unless -o)",
		Long: `Add your signature to a command envelope. The signature is over the
envelope's payload byte for byte. The command must decode, must not have
expired and must not carry your signature already. Read what it does first:
lgctl cmd status shows its type, target and arguments.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, p, err := readCommand(args[0], time.Now())
			if err != nil {
				return err
			}
			signed, keyID, err := f.cosign(keyPath, command.EnvelopeLimits)
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
				fmt.Fprintf(cmd.ErrOrStderr(), "added the signature of %s (key id %.12s) to %s %s for %s: %d signature(s) in %s\n",
					filepath.Base(keyPath), keyID, p.Type, p.ID, p.Target, len(f.env.Signatures)+1, out)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "your operator signing key")
	cmd.Flags().StringVarP(&out, "output", "o", "", "output file (default: ENVELOPE, in place), - for stdout")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing output file other than ENVELOPE")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func newCmdStatusCmd() *cobra.Command {
	var (
		rosterPath string
		trust      []string
		protected  bool
	)
	cmd := &cobra.Command{
		Use:   "status --roster ROSTER [--trust committee.pub ...] [--protected] ENVELOPE",
		Short: "List which operators signed a command, who of its role is missing and whether its threshold is met (exit 0 only when met)",
		Long: `Judge a command envelope against a roster as a device holding that roster
would: the command's type needs a role, and the threshold of distinct
operators of that role. --protected judges it as touching a protected circuit
(a relay.set of one), which needs the protected threshold of grid operators.
The roster is a signed envelope (verified against --trust when given) or its
YAML. A device may ask more than the roster says: its configuration's floor.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := readRoster(cmd.ErrOrStderr(), rosterPath, trust)
			if err != nil {
				return err
			}
			now := time.Now()
			f, p, err := readCommand(args[0], now)
			if f == nil {
				return err
			}
			expired := err
			class, known := command.ClassOf(p.Type)
			if protected {
				class, known = roster.ClassProtected, true
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s: %s %s for %s, issued %s, expires %s\n  args %s\n", f.path, p.Type, p.ID, p.Target,
				p.Issued.UTC().Format(time.RFC3339), p.Expires.UTC().Format(time.RFC3339), strings.TrimSpace(string(p.Args)))
			if !known {
				fmt.Fprintf(w, "no role may sign %q: devices with a roster refuse it\n", p.Type)
				return errSilent
			}
			role, need := class.Role(), r.Thresholds.Of(class)
			in, err := r.Keyring().Inspect(f.data, command.PayloadType, command.EnvelopeLimits)
			if err != nil {
				return fmt.Errorf("%s: %w", f.path, err)
			}
			var signed, others []string
			for _, id := range in.Signers {
				o := r.ByKey(id)
				switch {
				case !o.Has(role):
					others = appendNew(others, fmt.Sprintf("%s (%s)", o.ID, rolesText(o.Roles)))
				default:
					signed = appendNew(signed, o.ID)
				}
			}
			fmt.Fprintf(w, "%s needs %d %s signature(s) (roster serial %d)\n", class, need, role, r.Serial)
			fmt.Fprintln(w, "signed:")
			for _, s := range signed {
				fmt.Fprintf(w, "  %s\n", s)
			}
			fmt.Fprintln(w, "missing:")
			for _, o := range r.Holders(role) {
				if !contains(signed, o.ID) {
					fmt.Fprintf(w, "  %s (%s)\n", o.ID, o.Name)
				}
			}
			for _, o := range others {
				fmt.Fprintf(w, "not counted: %s does not hold the role %s\n", o, role)
			}
			for _, e := range in.Problems() {
				fmt.Fprintf(w, "not counted: %v\n", e)
			}
			state := "met"
			if len(signed) < need {
				state = "NOT met"
			}
			fmt.Fprintf(w, "threshold: %d of %d needed: %s\n", len(signed), need, state)
			if expired != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "lgctl:", expired)
				return errSilent
			}
			if len(signed) < need {
				return errSilent
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&rosterPath, "roster", "", "the roster (signed envelope or YAML)")
	cmd.Flags().StringSliceVar(&trust, "trust", nil, "committee public key file to verify a signed roster with (repeatable)")
	cmd.Flags().BoolVar(&protected, "protected", false, "judge the command as touching a protected circuit")
	_ = cmd.MarkFlagRequired("roster")
	return cmd
}

func appendNew(list []string, s string) []string {
	if contains(list, s) {
		return list
	}
	return append(list, s)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func rolesText(roles []roster.Role) string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

func newCmdSendCmd() *cobra.Command {
	var (
		bf      brokerFlags
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "send --broker URL ENVELOPE",
		Short: "Send a signed command envelope to its target and wait for the results (exit 1 if any refused or none answered)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, p, err := readCommand(args[0], time.Now())
			if err != nil {
				return err
			}
			return sendAndWait(cmd, &bf, p, f.data, timeout)
		},
	}
	bf.add(cmd)
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for results")
	return cmd
}

// stateSettle is how long sendAndWait lets the broker deliver the retained
// state topics before it sends a command to several devices.
var stateSettle = 300 * time.Millisecond

// fleetView is the devices the retained state topics say are online (at
// one site, for a site:NAME target), kept as their states arrive and go.
type fleetView struct {
	mu      sync.Mutex
	site    string // "" for every site
	online  map[string]bool
	changed chan struct{} // a device came or went
}

func newFleetView(target string) *fleetView {
	site := strings.TrimPrefix(target, "site:")
	if target == "all" {
		site = ""
	}
	return &fleetView{site: site, online: map[string]bool{}, changed: make(chan struct{}, 1)}
}

func (v *fleetView) state(_ paho.Client, m paho.Message) {
	var st contract.State
	dev, _, _ := strings.Cut(strings.TrimPrefix(m.Topic(), contract.Prefix), "/")
	if json.Unmarshal(m.Payload(), &st) != nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if st.Online && (v.site == "" || st.Site == v.site) {
		v.online[dev] = true
	} else {
		delete(v.online, dev)
	}
	select {
	case v.changed <- struct{}{}:
	default:
	}
}

// missing lists, sorted, the online devices not in answered, and how many
// are online.
func (v *fleetView) missing(answered map[string]bool) ([]string, int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for d := range v.online {
		if !answered[d] {
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out, len(v.online)
}

// sendAndWait publishes a signed command on its target's topic and prints
// each device's result until the one device answers, every device online
// for a site:NAME or all target has answered, or timeout passes.
func sendAndWait(cmd *cobra.Command, bf *brokerFlags, p command.Payload, env []byte, timeout time.Duration) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	c, err := bf.connect(ctx, "lgctl-cmd")
	if err != nil {
		return err
	}
	defer c.Disconnect(100)
	results := make(chan contract.Result, 256)
	err = subscribe(ctx, c, contract.Prefix+"+/cmd/result", func(_ paho.Client, m paho.Message) {
		var r contract.Result
		if json.Unmarshal(m.Payload(), &r) == nil && r.CmdID == p.ID {
			results <- r
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe to results: %w", err)
	}
	single := p.Target != "all" && !strings.HasPrefix(p.Target, "site:")
	var fleet *fleetView
	if !single {
		fleet = newFleetView(p.Target)
		if err := subscribe(ctx, c, contract.Prefix+"+/state", fleet.state); err != nil {
			return fmt.Errorf("subscribe to states: %w", err)
		}
		select {
		case <-time.After(stateSettle):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	tok := c.Publish(contract.CmdTopicFor(p.Target), 1, false, env)
	if !tok.WaitTimeout(10 * time.Second) {
		return errors.New("publish command: no answer from the broker in 10s")
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("publish command: %w", err)
	}
	out := cmd.OutOrStdout()
	if fleet != nil {
		_, n := fleet.missing(nil)
		fmt.Fprintf(out, "sent %s %s to %s (%d devices online); waiting up to %v for results\n", p.Type, p.ID, p.Target, n, timeout)
	} else {
		fmt.Fprintf(out, "sent %s %s to %s; waiting %v for results\n", p.Type, p.ID, p.Target, timeout)
	}
	answered, refused := map[string]bool{}, 0
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var changed <-chan struct{}
	if fleet != nil {
		changed = fleet.changed
	}
	timedOut := false
wait:
	for {
		select {
		case r := <-results:
			answered[r.Device] = true
			if r.OK {
				res, _ := json.Marshal(r.Result)
				fmt.Fprintf(out, "%-20s ok      %s\n", r.Device, strings.TrimPrefix(string(res), "null"))
			} else {
				refused++
				fmt.Fprintf(out, "%-20s REFUSED %s: %s\n", r.Device, r.Reason, r.Error)
			}
			if single {
				break wait
			}
		case <-changed:
		case <-deadline.C:
			timedOut = true
			break wait
		case <-ctx.Done():
			break wait
		}
		// No device known online (no retained states): wait the timeout.
		if fleet != nil && len(answered) > 0 {
			if miss, n := fleet.missing(answered); n > 0 && len(miss) == 0 {
				break wait
			}
		}
	}
	if fleet != nil {
		miss, n := fleet.missing(answered)
		fmt.Fprintf(out, "answered: %d device(s); %d of %d online answered", len(answered), n-len(miss), n)
		if timedOut && len(miss) > 0 {
			fmt.Fprintf(out, "; no answer within %v from %s", timeout, strings.Join(miss, ", "))
		}
		fmt.Fprintln(out)
	}
	switch {
	case len(answered) == 0:
		fmt.Fprintf(cmd.ErrOrStderr(), "lgctl: no device answered within %v\n", timeout)
		return errSilent
	case refused > 0:
		fmt.Fprintf(cmd.ErrOrStderr(), "lgctl: %d of %d devices refused\n", refused, len(answered))
		return errSilent
	}
	return nil
}
