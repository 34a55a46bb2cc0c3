package console

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/roster"
)

// MaxSerial bounds the serial of a policy the console proposes: far beyond
// any real history, and exact in a browser's numbers, so a forged serial
// near 2⁶⁴ can never be made the fleet's and end all future policies.
const MaxSerial = 1<<53 - 1

// trust is what the console believes, and from whom: the committee keys it
// was given (the same anchors the devices were provisioned with) and the
// roster they signed. It holds no private key.
type trust struct {
	anchors    *dsse.Keyring
	anchorPubs []ed25519.PublicKey
	threshold  int
	roster     *roster.Store
}

func newTrust(o *Options) (*trust, error) {
	if len(o.Trust) == 0 {
		return nil, errors.New("console: no committee public key to trust (--trust)")
	}
	t := &trust{anchors: dsse.NewKeyring(o.Trust...), anchorPubs: o.Trust, threshold: max(o.Threshold, 1)}
	dir := o.StateDir
	st, err := roster.New(roster.Options{Anchors: t.anchors, Floor: roster.Thresholds{Committee: t.threshold},
		StateDir: dir, Logger: o.Logger.With("part", "roster"), Now: o.Now})
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	t.roster = st
	if dir != "" {
		if _, err := st.Restore(); err != nil && !errors.Is(err, os.ErrNotExist) {
			o.Logger.Warn("console: last-known-good roster unusable", "err", err)
		}
	}
	if o.RosterFile != "" {
		env, err := os.ReadFile(o.RosterFile)
		if err != nil {
			return nil, fmt.Errorf("console: roster: %w", err)
		}
		if _, err := st.Apply(env, "file:"+o.RosterFile); err != nil && !errors.Is(err, roster.ErrUnchanged) {
			return nil, fmt.Errorf("console: roster %s: %w", o.RosterFile, err)
		}
	}
	return t, nil
}

// current is the roster in force, nil while there is none.
func (t *trust) current() *roster.Current { return t.roster.Current() }

// thresholds are those of the roster in force raised to the console's
// floor, or the floor alone.
func (t *trust) thresholds() roster.Thresholds {
	floor := roster.Thresholds{Committee: t.threshold}
	if c := t.current(); c != nil {
		return c.Thresholds.AtLeast(floor)
	}
	return roster.Defaults.AtLeast(floor)
}

// policyRing is who may sign a policy: the anchors and the roster's
// committee, as the devices count them.
func (t *trust) policyRing() *dsse.Keyring {
	ring := dsse.NewKeyring()
	for _, pub := range t.anchorPubs {
		ring.Add(pub, "anchor "+dsse.KeyID(pub)[:12])
	}
	if c := t.current(); c != nil {
		for _, o := range c.Roster.Holders(roster.Committee) {
			for _, k := range o.Keys {
				ring.Add(k.Public, o.ID)
			}
		}
	}
	return ring
}

// operator is who holds a key in the roster in force.
func (t *trust) operator(pub ed25519.PublicKey) (*roster.Operator, error) {
	c := t.current()
	if c == nil {
		return nil, errors.New("no roster in force: the committee has named no operator yet")
	}
	if c.Roster.Expired(time.Now()) {
		return nil, fmt.Errorf("the roster in force (serial %d) has expired", c.Roster.Serial)
	}
	o := c.Roster.ByKey(dsse.KeyID(pub))
	if o == nil {
		return nil, fmt.Errorf("key %s is not in the roster (serial %d)", dsse.KeyID(pub), c.Roster.Serial)
	}
	return o, nil
}

// fleetPolicy is the retained fleet policy and what the console made of it.
type fleetPolicy struct {
	Envelope []byte
	Doc      []byte         // the payload, when it could be read
	Parsed   *policy.Policy // nil when the payload does not parse
	Verified bool           // signed by the threshold of trusted committee keys
	Problem  string         // why it is not verified
	Signers  []string       // names of the trusted keys that signed
}

// judgePolicy verifies a fleet policy envelope against the committee. An
// expired policy still verifies (its signatures are good, and it is what a
// proposal must replace); its expiry is shown.
func (t *trust) judgePolicy(env []byte) *fleetPolicy {
	fp := &fleetPolicy{Envelope: env}
	ring := t.policyRing()
	in, err := ring.Inspect(env, policy.PayloadType, dsse.Limits{})
	if err != nil {
		fp.Problem = err.Error()
		if e, perr := dsse.Parse(env); perr == nil {
			fp.Doc, _ = base64.StdEncoding.DecodeString(e.Payload)
		}
		fp.Parsed, _ = policy.Parse(fp.Doc)
		return fp
	}
	fp.Doc = in.Payload
	p, err := policy.Parse(in.Payload)
	if err != nil {
		fp.Problem = "does not parse: " + err.Error()
		return fp
	}
	fp.Parsed = p
	for _, id := range in.Signers {
		fp.Signers = append(fp.Signers, ring.Name(id))
	}
	need := t.thresholds().Committee
	switch {
	case len(in.Signers) == 0:
		fp.Problem = "signed by no trusted committee key"
	case len(in.Signers) < need:
		fp.Problem = fmt.Sprintf("signed by %d trusted committee key(s), %d needed", len(in.Signers), need)
	default:
		fp.Verified = true
	}
	if probs := in.Problems(); fp.Verified && len(probs) > 0 {
		// Extra bad signatures beside a threshold of good ones: devices
		// accept it; say so anyway.
		fp.Problem = "also carries signatures that do not verify: " + probs.Error()
	}
	slices.Sort(fp.Signers)
	return fp
}
