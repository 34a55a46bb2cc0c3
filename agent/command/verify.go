package command

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/roster"
)

// Reason names why a command was refused, as the result and event say it.
type Reason string

// Reasons for refusal.
const (
	ReasonMalformed    Reason = "malformed"
	ReasonTooLarge     Reason = "too-large"
	ReasonBadSignature Reason = "bad-signature"
	ReasonUntrusted    Reason = "untrusted-key"
	ReasonWrongTarget  Reason = "wrong-target"
	ReasonExpired      Reason = "expired"
	ReasonFuture       Reason = "issued-in-future"
	ReasonLifetime     Reason = "lifetime-too-long"
	ReasonReplay       Reason = "replay"
	ReasonRetained     Reason = "retained"
	ReasonUnknownType  Reason = "unknown-type"
	ReasonFailed       Reason = "failed"
	// The signers' rights: none of them holds the role the command needs;
	// too few distinct operators of that role signed; no roster and no
	// operator keys to judge by; the roster in force has expired.
	ReasonRole           Reason = "role"
	ReasonBelowThreshold Reason = "below-threshold"
	ReasonNoRoster       Reason = "no-roster"
	ReasonRosterExpired  Reason = "roster-expired"
)

// Reasons lists every reason a result may carry, for contracts and schemas.
func Reasons() []Reason {
	return []Reason{ReasonMalformed, ReasonTooLarge, ReasonBadSignature, ReasonUntrusted, ReasonWrongTarget,
		ReasonExpired, ReasonFuture, ReasonLifetime, ReasonReplay, ReasonRetained, ReasonUnknownType, ReasonFailed,
		ReasonRole, ReasonBelowThreshold, ReasonNoRoster, ReasonRosterExpired}
}

// Refusal is the error Verify returns; errors.Is matches it by reason
// against the Err* values.
type Refusal struct {
	Reason Reason
	Detail string
}

func (r *Refusal) Error() string {
	if r.Detail == "" {
		return "command: refused: " + string(r.Reason)
	}
	return "command: refused: " + string(r.Reason) + ": " + r.Detail
}

// Is matches refusals of the same reason.
func (r *Refusal) Is(target error) bool {
	t, ok := target.(*Refusal)
	return ok && t.Reason == r.Reason
}

// Sentinels for errors.Is.
var (
	ErrMalformed      = &Refusal{Reason: ReasonMalformed}
	ErrTooLarge       = &Refusal{Reason: ReasonTooLarge}
	ErrBadSignature   = &Refusal{Reason: ReasonBadSignature}
	ErrUntrusted      = &Refusal{Reason: ReasonUntrusted}
	ErrWrongTarget    = &Refusal{Reason: ReasonWrongTarget}
	ErrExpired        = &Refusal{Reason: ReasonExpired}
	ErrFuture         = &Refusal{Reason: ReasonFuture}
	ErrLifetime       = &Refusal{Reason: ReasonLifetime}
	ErrReplay         = &Refusal{Reason: ReasonReplay}
	ErrRetained       = &Refusal{Reason: ReasonRetained}
	ErrRole           = &Refusal{Reason: ReasonRole}
	ErrBelowThreshold = &Refusal{Reason: ReasonBelowThreshold}
	ErrNoRoster       = &Refusal{Reason: ReasonNoRoster}
	ErrRosterExpired  = &Refusal{Reason: ReasonRosterExpired}
)

// ReasonOf returns the refusal reason of err, ReasonUnknownType for an
// unhandled type and ReasonFailed for anything else.
func ReasonOf(err error) Reason {
	var r *Refusal
	switch {
	case errors.As(err, &r):
		return r.Reason
	case errors.Is(err, ErrUnknownType):
		return ReasonUnknownType
	}
	return ReasonFailed
}

func refuse(r Reason, format string, a ...any) error {
	return &Refusal{Reason: r, Detail: fmt.Sprintf(format, a...)}
}

// Limits on what Verify reads.
const (
	MaxMessage  = 64 << 10 // bytes of envelope
	MaxDepth    = 16       // JSON nesting in envelope and payload
	MaxLifetime = 24 * time.Hour
	DefaultSkew = 2 * time.Minute
)

// EnvelopeLimits are what dsse may spend on a command: a command is a few
// hundred bytes, so it gets MaxMessage rather than the policy-sized default,
// and the default signature cap (a handful of operators cosign; the cap
// only bounds junk). Tools that cosign commands use them too.
var EnvelopeLimits = dsse.Limits{MaxSize: MaxMessage}

// CheckSize refuses a message of n bytes, as Verify would, when it is over
// MaxMessage. An intake that holds messages until their turn calls it on
// arrival, so that it need not keep what will be refused unread.
func CheckSize(n int) error {
	if n > MaxMessage {
		return refuse(ReasonTooLarge, "%d bytes, limit %d", n, MaxMessage)
	}
	return nil
}

// RosterSource gives the roster in force, nil while there is none;
// *roster.Store is one.
type RosterSource interface {
	Current() *roster.Current
}

var _ RosterSource = (*roster.Store)(nil)

// Verifier checks commands for one device.
//
// Who may sign comes from Roster: a command needs the role its type's class
// names (ClassOf) from at least that class's threshold of distinct
// operators. Until a first roster is in force, the keys of Keys (the
// configured mqtt.operators) each stand for an operator holding every role
// but committee, under the same thresholds; once one is, Keys no longer
// count. While the roster in force has expired every command is refused:
// the committee's next roster, which needs no command to arrive, lifts it.
type Verifier struct {
	Keys   *dsse.Keyring // mqtt.operators; used only while Roster has none
	Roster RosterSource  // nil: Keys alone
	// Floor bounds every threshold from below (the device configuration);
	// a roster can raise thresholds, never lower them under it.
	Floor roster.Thresholds
	// Authorizer, when set (the Dispatcher), may refuse a verified command
	// before its id is remembered: the handlers' stricter classes.
	Authorizer Authorizer
	Device     string
	Site       string
	Skew       time.Duration // tolerated clock difference; DefaultSkew if zero
	Seen       *Seen         // replay memory; required
	Now        func() time.Time
}

// judge is who may sign commands now, and how many of them must.
type judge struct {
	ring       *dsse.Keyring
	operator   func(keyID string) signer
	thresholds roster.Thresholds
	serial     uint64 // of the roster; 0 for the configured keys
}

func (v *Verifier) judge(now time.Time) (*judge, error) {
	if v.Roster != nil {
		if cur := v.Roster.Current(); cur != nil {
			r := cur.Roster
			if r.Expired(now) {
				return nil, refuse(ReasonRosterExpired, "roster serial %d expired at %s; waiting for a newer one",
					r.Serial, r.Expires.UTC().Format(time.RFC3339))
			}
			return &judge{ring: cur.Keyring(), thresholds: cur.Thresholds.AtLeast(v.Floor), serial: r.Serial,
				operator: func(id string) signer {
					o := r.ByKey(id) // never nil: the ring holds the roster's keys only
					return signer{id: o.ID, roles: o.Roles}
				}}, nil
		}
	}
	if v.Keys == nil || v.Keys.Len() == 0 {
		return nil, refuse(ReasonNoRoster, "no roster in force and no operator keys configured")
	}
	return &judge{ring: v.Keys, thresholds: roster.Defaults.AtLeast(v.Floor),
		operator: func(id string) signer { return signer{id: v.Keys.Name(id), roles: legacyRoles} }}, nil
}

// authority collects the distinct operators behind the verified key ids.
func (j *judge) authority(keyIDs []string) *authority {
	a := &authority{thresholds: j.thresholds}
	for _, id := range keyIDs {
		s := j.operator(id)
		if !slices.ContainsFunc(a.signers, func(x signer) bool { return x.id == s.id }) {
			a.signers = append(a.signers, s)
		}
	}
	return a
}

// Verify checks msg and, when it is a valid, fresh command for this device,
// remembers its id (so it is never accepted again) and returns it. On
// refusal it still returns the command id when the payload could be read,
// so the result can name it; that id is not authenticated.
func (v *Verifier) Verify(msg []byte) (id string, c *Command, err error) {
	if err := CheckSize(len(msg)); err != nil {
		return "", nil, err
	}
	if !utf8.Valid(msg) {
		return "", nil, refuse(ReasonMalformed, "not UTF-8 text")
	}
	if d := jsonDepth(msg); d > MaxDepth {
		return "", nil, refuse(ReasonMalformed, "JSON nested %d deep, limit %d", d, MaxDepth)
	}
	id = unverifiedID(msg)
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	j, err := v.judge(now)
	if err != nil {
		return id, nil, err
	}
	ver, err := j.ring.VerifyLimited(msg, PayloadType, 1, EnvelopeLimits)
	if err != nil {
		switch {
		case errors.Is(err, dsse.ErrTooLarge):
			return id, nil, refuse(ReasonTooLarge, "%v", err)
		case errors.Is(err, dsse.ErrBadSignature):
			return id, nil, refuse(ReasonBadSignature, "%v", err)
		case errors.Is(err, dsse.ErrUnknownKey), errors.Is(err, dsse.ErrNoKeyID):
			// A signature without a keyid names no operator: as untrusted
			// as one naming a stranger.
			return id, nil, refuse(ReasonUntrusted, "%v", err)
		case errors.Is(err, dsse.ErrNoSignatures), errors.Is(err, dsse.ErrThreshold), errors.Is(err, dsse.ErrDuplicateKey):
			return id, nil, refuse(ReasonBadSignature, "%v", err)
		}
		return id, nil, refuse(ReasonMalformed, "%v", err)
	}
	p, err := DecodePayload(ver.Payload)
	if err != nil {
		return p.ID, nil, err
	}
	c = &Command{Payload: p, Roster: j.serial, auth: j.authority(ver.Signers)}
	for _, s := range c.auth.signers {
		c.Signers = append(c.Signers, s.id)
	}
	if !v.targets(p.Target) {
		return p.ID, nil, refuse(ReasonWrongTarget, "for %q, this is %s at site %s", p.Target, v.Device, v.Site)
	}
	skew := v.Skew
	if skew == 0 {
		skew = DefaultSkew
	}
	switch {
	case !now.Before(p.Expires):
		return p.ID, nil, refuse(ReasonExpired, "expired %s", p.Expires.UTC().Format(time.RFC3339))
	case p.Issued.After(now.Add(skew)):
		return p.ID, nil, refuse(ReasonFuture, "issued %s, now %s", p.Issued.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case p.Expires.Sub(p.Issued) > MaxLifetime:
		return p.ID, nil, refuse(ReasonLifetime, "valid %s, limit %s", p.Expires.Sub(p.Issued), MaxLifetime)
	}
	class, known := ClassOf(p.Type)
	switch {
	case known:
		if err := c.Require(class); err != nil {
			return p.ID, nil, err
		}
	case j.serial != 0:
		return p.ID, nil, refuse(ReasonRole, "no role may sign %q (command.ClassOf knows no class for it)", p.Type)
	}
	if v.Authorizer != nil {
		if err := v.Authorizer.Authorize(c); err != nil {
			return p.ID, nil, err
		}
	}
	if err := v.Seen.Remember(p.ID, p.Expires, now); err != nil {
		return p.ID, nil, err
	}
	return p.ID, c, nil
}

// DecodePayload decodes a command payload strictly (unknown fields and
// trailing data are errors) and checks that it has an id of at most 128
// bytes, a target, a type, and issue and expiry times. A refusal carries
// ReasonMalformed; the id is returned when it could be read and is short.
func DecodePayload(b []byte) (Payload, error) {
	var p Payload
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil || dec.More() {
		return Payload{}, refuse(ReasonMalformed, "payload: %v", err)
	}
	if len(p.ID) > 128 {
		return Payload{}, refuse(ReasonMalformed, "id longer than 128 bytes")
	}
	if p.ID == "" || p.Type == "" || p.Target == "" || p.Issued.IsZero() || p.Expires.IsZero() {
		return p, refuse(ReasonMalformed, "payload needs id, target, type, issued and expires")
	}
	return p, nil
}

func (v *Verifier) targets(t string) bool {
	switch {
	case t == "all":
		return true
	case len(t) > 5 && t[:5] == "site:":
		return t[5:] == v.Site
	}
	return t == v.Device
}

// PeekID returns the id in a command message without verifying anything:
// only for naming the command in a refusal.
func PeekID(msg []byte) string {
	if CheckSize(len(msg)) != nil || !utf8.Valid(msg) || jsonDepth(msg) > MaxDepth {
		return ""
	}
	return unverifiedID(msg)
}

// unverifiedID digs the id out of an envelope without trusting it.
func unverifiedID(msg []byte) string {
	var env struct {
		Payload string `json:"payload"`
	}
	if json.Unmarshal(msg, &env) != nil {
		return ""
	}
	raw, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil || len(raw) > MaxMessage || jsonDepth(raw) > MaxDepth {
		return ""
	}
	var p struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(raw, &p) != nil || len(p.ID) > 128 || !utf8.ValidString(p.ID) {
		return ""
	}
	return p.ID
}

// jsonDepth is the deepest nesting of arrays and objects in b, found
// without decoding (strings are skipped, escapes honoured).
func jsonDepth(b []byte) int {
	depth, deepest, inStr, esc := 0, 0, false, false
	for _, c := range b {
		switch {
		case inStr:
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}
