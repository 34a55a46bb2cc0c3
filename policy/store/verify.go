package store

import (
	"errors"
	"fmt"
	"time"

	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
)

// Sentinel errors for the outcomes callers act on.
var (
	ErrExpired   = errors.New("policy expired")
	ErrIssued    = errors.New("policy issued in the future")
	ErrReplay    = errors.New("policy serial is not newer than the current one")
	ErrUnchanged = errors.New("policy is the one already enforced")
)

// ClockSkew is how far in the future a policy's issue time may lie, for
// devices whose clocks run a little behind the committee's.
const ClockSkew = 5 * time.Minute

// Verified is a policy whose signatures and contents were checked.
type Verified struct {
	Policy   *policy.Policy
	Signers  []string // key ids
	Envelope []byte
}

// Verify checks a signed policy without regard to what is enforced now:
// signatures (threshold distinct trusted keys), payload validity, and that
// now lies between issue (less ClockSkew) and expiry. Every problem is
// reported; the joined error names each on its own line.
func Verify(envelope []byte, ring *dsse.Keyring, threshold int, now time.Time) (*Verified, error) {
	v, err := ring.Verify(envelope, policy.PayloadType, threshold)
	if err != nil {
		return nil, err
	}
	p, err := policy.Parse(v.Payload)
	if err != nil {
		return nil, err
	}
	out := &Verified{Policy: p, Signers: v.Signers, Envelope: envelope}
	var errs []error
	if p.Expired(now) {
		errs = append(errs, fmt.Errorf("%w: serial %d expired at %s", ErrExpired, p.Serial, p.Expires.UTC().Format(time.RFC3339)))
	}
	if p.Issued.After(now.Add(ClockSkew)) {
		errs = append(errs, fmt.Errorf("%w: serial %d is issued at %s", ErrIssued, p.Serial, p.Issued.UTC().Format(time.RFC3339)))
	}
	if len(errs) > 0 {
		return out, errors.Join(errs...)
	}
	return out, nil
}
