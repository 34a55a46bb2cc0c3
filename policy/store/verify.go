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

// Trust is who may sign a policy: Threshold distinct signers among the
// holders of Keys.
type Trust struct {
	Keys      *dsse.Keyring
	Threshold int
	// Signer names the person holding a trusted key id, so that two keys
	// of one person count once towards Threshold (a committee member the
	// roster lists with a laptop key and a token key is one signature).
	// Nil: every key is its own signer.
	Signer func(keyID string) string
}

// Verified is a policy whose signatures and contents were checked.
type Verified struct {
	Policy   *policy.Policy
	Signers  []string // key ids
	Envelope []byte
}

// Verify checks a signed policy against ring and threshold; see
// Trust.Verify.
func Verify(envelope []byte, ring *dsse.Keyring, threshold int, now time.Time) (*Verified, error) {
	return Trust{Keys: ring, Threshold: threshold}.Verify(envelope, now)
}

// Verify checks a signed policy without regard to what is enforced now:
// signatures (t.Threshold distinct trusted signers), payload validity, and
// that now lies between issue (less ClockSkew) and expiry. Every problem is
// reported; the joined error names each on its own line. An expired or
// future policy is returned with the error, for callers that report it.
func (t Trust) Verify(envelope []byte, now time.Time) (*Verified, error) {
	threshold := t.Threshold
	v, err := t.Keys.Verify(envelope, policy.PayloadType, threshold)
	if err != nil {
		return nil, err
	}
	if t.Signer != nil {
		people := map[string]bool{}
		for _, id := range v.Signers {
			people[t.Signer(id)] = true
		}
		if len(people) < threshold {
			return nil, fmt.Errorf("dsse: %w: %d trusted keys signed, held by %d distinct signers, %d needed",
				dsse.ErrThreshold, len(v.Signers), len(people), threshold)
		}
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
