package roster

import (
	"errors"
	"fmt"
	"time"

	"linkguard.dev/linkguard/policy/dsse"
)

// Sentinel errors for the outcomes callers act on.
var (
	ErrExpired   = errors.New("roster expired")
	ErrIssued    = errors.New("roster issued in the future")
	ErrReplay    = errors.New("roster serial is not newer than the current one")
	ErrUnchanged = errors.New("roster is the one already in force")
	ErrThreshold = errors.New("roster signed by fewer committee keys than its own threshold")
)

// ClockSkew is how far in the future a roster's issue time may lie, for
// devices whose clocks run a little behind the committee's.
const ClockSkew = 5 * time.Minute

// Limits are what dsse may spend on a roster envelope.
var Limits = dsse.Limits{MaxSize: MaxEnvelope}

// Verified is a roster whose signatures and contents were checked.
type Verified struct {
	Roster   *Roster
	Signers  []string // key ids of the committee keys that signed
	Envelope []byte
}

// Verify checks a signed roster without regard to the one in force:
// signatures by at least threshold distinct anchor keys and by at least the
// committee threshold the roster itself states, payload validity, and that
// now lies between issue (less ClockSkew) and expiry. An expired or
// future roster is returned with the error, for callers that report it.
func Verify(envelope []byte, anchors *dsse.Keyring, threshold int, now time.Time) (*Verified, error) {
	v, err := anchors.VerifyLimited(envelope, PayloadType, max(threshold, 1), Limits)
	if err != nil {
		return nil, err
	}
	r, err := Parse(v.Payload)
	if err != nil {
		return nil, err
	}
	if len(v.Signers) < r.Thresholds.Committee {
		return nil, fmt.Errorf("%w: %d of %d", ErrThreshold, len(v.Signers), r.Thresholds.Committee)
	}
	out := &Verified{Roster: r, Signers: v.Signers, Envelope: envelope}
	var errs []error
	if r.Expired(now) {
		errs = append(errs, fmt.Errorf("%w: serial %d expired at %s", ErrExpired, r.Serial, r.Expires.UTC().Format(time.RFC3339)))
	}
	if r.Issued.After(now.Add(ClockSkew)) {
		errs = append(errs, fmt.Errorf("%w: serial %d is issued at %s", ErrIssued, r.Serial, r.Issued.UTC().Format(time.RFC3339)))
	}
	return out, errors.Join(errs...)
}
