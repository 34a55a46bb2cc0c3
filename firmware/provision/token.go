package provision

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"linkguard.dev/linkguard/policy/dsse"
)

// UnlockPayloadType is the DSSE payload type of an unlock token.
const UnlockPayloadType = "application/vnd.linkguard.unlock+json"

// MaxUnlockLifetime bounds expires - issued of an unlock token, so a token
// that leaks is worth a day at most.
const MaxUnlockLifetime = 24 * time.Hour

// UnlockClockSkew is how far in the future a token's issued time may be on
// the device's clock.
const UnlockClockSkew = 5 * time.Minute

// UnlockLimits bound an unlock envelope before it is read: it travels in
// one provisioning line.
var UnlockLimits = dsse.Limits{MaxSize: 16 << 10, MaxSignatures: 16}

// Actions an unlock token permits.
const (
	ActionUnlock = "unlock" // the console answers every request for the session
	ActionReset  = "reset"  // the console answers RESET (and HELLO, STATUS) only
)

// UnlockToken is the payload of a committee-signed unlock token.
type UnlockToken struct {
	Device  string    `json:"device"`
	Action  string    `json:"action"`
	Nonce   string    `json:"nonce"`
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires"`
}

// ErrUnlockToken marks a token that is not one: it does not decode, or
// breaks a rule that holds on every device.
var ErrUnlockToken = errors.New("provision: bad unlock token")

var nonceRE = regexp.MustCompile(`^[A-Za-z0-9_-]{16,64}$`)

// ParseUnlockToken decodes a token's payload strictly (unknown fields and
// trailing data are errors) and checks what holds on every device: a known
// action, a device id, a nonce of 16 to 64 URL-safe characters, and a
// lifetime above zero and at most MaxUnlockLifetime. What depends on the
// device (its id, its clock, the nonces it has used) is the console's.
func ParseUnlockToken(payload []byte) (UnlockToken, error) {
	var t UnlockToken
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return UnlockToken{}, fmt.Errorf("%w: %v", ErrUnlockToken, err)
	}
	if dec.More() {
		return UnlockToken{}, fmt.Errorf("%w: data after the token", ErrUnlockToken)
	}
	switch {
	case !idRE.MatchString(t.Device):
		return UnlockToken{}, fmt.Errorf("%w: device %q is not a device id", ErrUnlockToken, t.Device)
	case t.Action != ActionUnlock && t.Action != ActionReset:
		return UnlockToken{}, fmt.Errorf("%w: action %q is not %s or %s", ErrUnlockToken, t.Action, ActionUnlock, ActionReset)
	case !nonceRE.MatchString(t.Nonce):
		return UnlockToken{}, fmt.Errorf("%w: nonce must be 16 to 64 characters of A-Z a-z 0-9 _ -", ErrUnlockToken)
	case t.Issued.IsZero() || t.Expires.IsZero():
		return UnlockToken{}, fmt.Errorf("%w: issued and expires are required", ErrUnlockToken)
	case !t.Expires.After(t.Issued):
		return UnlockToken{}, fmt.Errorf("%w: expires %s is not after issued %s", ErrUnlockToken, t.Expires.Format(time.RFC3339), t.Issued.Format(time.RFC3339))
	case t.Expires.Sub(t.Issued) > MaxUnlockLifetime:
		return UnlockToken{}, fmt.Errorf("%w: valid for %v, more than %v", ErrUnlockToken, t.Expires.Sub(t.Issued), MaxUnlockLifetime)
	}
	return t, nil
}

// NewUnlockToken is a token for device with a fresh random nonce, issued
// now and valid for valid.
func NewUnlockToken(device, action string, now time.Time, valid time.Duration) (UnlockToken, error) {
	var rnd [16]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return UnlockToken{}, err
	}
	now = now.UTC().Truncate(time.Second)
	t := UnlockToken{Device: device, Action: action, Nonce: hex.EncodeToString(rnd[:]), Issued: now, Expires: now.Add(valid)}
	b, _ := json.Marshal(t)
	if _, err := ParseUnlockToken(b); err != nil {
		return UnlockToken{}, err
	}
	return t, nil
}

// SignUnlockToken wraps t in an envelope signed by every key; others add
// theirs with dsse.Cosign (lgctl provision unlock-token cosign).
func SignUnlockToken(t UnlockToken, keys ...ed25519.PrivateKey) ([]byte, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	if _, err := ParseUnlockToken(b); err != nil {
		return nil, err
	}
	return dsse.Sign(UnlockPayloadType, b, keys...)
}

// Check judges a token for the device id at time now: it must name the
// device, be issued (give or take UnlockClockSkew) and not have expired.
func (t UnlockToken) Check(device string, now time.Time) error {
	switch {
	case t.Device != device:
		return fmt.Errorf("%w: it is for device %s, not this one", ErrUnlockToken, t.Device)
	case !now.Before(t.Expires):
		return fmt.Errorf("%w: it expired at %s (device clock %s)", ErrUnlockToken, t.Expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case t.Issued.After(now.Add(UnlockClockSkew)):
		return fmt.Errorf("%w: it is issued at %s, in the future (device clock %s)", ErrUnlockToken, t.Issued.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}
