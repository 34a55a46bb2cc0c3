package bundle

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"linkguard.dev/linkguard/policy/dsse"
)

// TicketPayloadType is the DSSE payload type of a downgrade ticket. It is
// not the manifest's: a release signature on a bundle never passes for a
// ticket, nor a ticket for a bundle.
const TicketPayloadType = "application/vnd.linkguard.downgrade-ticket+json"

// Bounds on a downgrade ticket.
const (
	// MaxTicket caps the ticket envelope: the largest ticket validate
	// allows, signed by dsse.MaxSignatures keys, is under half of it
	// (TestTicketCap).
	MaxTicket = 64 << 10
	// MaxTicketDevices is the most device ids one ticket names; a larger
	// set is a site.
	MaxTicketDevices = 256
	// MaxTicketValidity is the longest a ticket may be valid: a downgrade is
	// an incident's remedy, not a standing permission.
	MaxTicketValidity = 30 * 24 * time.Hour
	// TicketClockSkew is how far in the future a ticket's issue time may
	// lie, for devices whose clocks run a little behind.
	TicketClockSkew = 5 * time.Minute
)

// ticketLimits is what dsse may spend on a ticket envelope.
var ticketLimits = dsse.Limits{MaxSize: MaxTicket}

// ErrTicket marks a downgrade ticket that does not let this device install
// this bundle: malformed, not signed by enough release keys, for another
// version or device, not yet valid or expired.
var ErrTicket = errors.New("bundle: downgrade ticket not valid")

// Ticket lets the devices it names install one exact, older version over a
// newer one until it expires. It is a signed statement of its own
// (TicketPayloadType), signed by as many release keys as a bundle.
type Ticket struct {
	Format  int       `json:"format"`            // 1
	Version string    `json:"version"`           // the exact version it lets in
	Devices []string  `json:"devices,omitempty"` // device ids, or
	Site    string    `json:"site,omitempty"`    // every device of one site
	Reason  string    `json:"reason"`
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires"`
}

var ticketIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`)

// validate checks a ticket on its own, without a device's view.
func (t *Ticket) validate() error {
	if t.Format != 1 {
		return fmt.Errorf("%w: format %d, want 1", ErrTicket, t.Format)
	}
	if _, err := ParseVersion(t.Version); err != nil {
		return fmt.Errorf("%w: %w", ErrTicket, err)
	}
	switch {
	case len(t.Devices) == 0 && t.Site == "":
		return fmt.Errorf("%w: names no devices and no site", ErrTicket)
	case len(t.Devices) > 0 && t.Site != "":
		return fmt.Errorf("%w: names devices and a site; one ticket is for one or the other", ErrTicket)
	case len(t.Devices) > MaxTicketDevices:
		return fmt.Errorf("%w: %d devices, at most %d (name a site instead)", ErrTicket, len(t.Devices), MaxTicketDevices)
	}
	for i, d := range t.Devices {
		if !ticketIDRE.MatchString(d) {
			return fmt.Errorf("%w: devices[%d]: bad device id %q", ErrTicket, i, d)
		}
		if slices.Contains(t.Devices[:i], d) {
			return fmt.Errorf("%w: devices[%d]: %q named twice", ErrTicket, i, d)
		}
	}
	if t.Site != "" && !ticketIDRE.MatchString(t.Site) {
		return fmt.Errorf("%w: bad site %q", ErrTicket, t.Site)
	}
	if t.Reason == "" || len(t.Reason) > 1024 {
		return fmt.Errorf("%w: a reason of 1 to 1024 bytes is required", ErrTicket)
	}
	if t.Issued.IsZero() || t.Expires.IsZero() || !t.Expires.After(t.Issued) {
		return fmt.Errorf("%w: issued and expires are required, expires after issued", ErrTicket)
	}
	if v := t.Expires.Sub(t.Issued); v > MaxTicketValidity {
		return fmt.Errorf("%w: valid for %v, at most %v", ErrTicket, v.Round(time.Hour), MaxTicketValidity)
	}
	return nil
}

// Covers reports whether the ticket names the device (by id, or by site).
func (t *Ticket) Covers(device, site string) bool {
	if t.Site != "" {
		return site != "" && site == t.Site
	}
	return device != "" && slices.Contains(t.Devices, device)
}

// Permits checks the ticket against one installation: the device it runs
// on, the version being installed and the time.
func (t *Ticket) Permits(device, site string, version Version, now time.Time) error {
	tv, _ := ParseVersion(t.Version) // validated
	if tv.Compare(version) != 0 {
		return fmt.Errorf("%w: it is for version %s, not %s", ErrTicket, tv, version)
	}
	if !t.Covers(device, site) {
		names := fmt.Sprintf("devices %q", t.Devices)
		if t.Site != "" {
			names = fmt.Sprintf("site %q", t.Site)
		}
		return fmt.Errorf("%w: it names %s, not device %q at site %q", ErrTicket, names, device, site)
	}
	if t.Issued.After(now.Add(TicketClockSkew)) {
		return fmt.Errorf("%w: issued at %s, in the future", ErrTicket, t.Issued.UTC().Format(time.RFC3339))
	}
	if !now.Before(t.Expires) {
		return fmt.Errorf("%w: expired at %s", ErrTicket, t.Expires.UTC().Format(time.RFC3339))
	}
	return nil
}

// decodeTicket decodes and validates a ticket payload strictly.
func decodeTicket(payload []byte) (Ticket, error) {
	var t Ticket
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return Ticket{}, fmt.Errorf("%w: %w", ErrTicket, err)
	}
	if dec.More() {
		return Ticket{}, fmt.Errorf("%w: data after the ticket", ErrTicket)
	}
	if err := t.validate(); err != nil {
		return Ticket{}, err
	}
	return t, nil
}

// VerifyTicket checks a ticket envelope's signatures (threshold distinct
// release keys; 0 means 1) and contents, and returns the ticket. Whether it
// fits one installation is Permits.
func VerifyTicket(envelope []byte, keys Keyring, threshold int) (Ticket, error) {
	if err := ticketLimits.CheckSize(len(envelope)); err != nil {
		return Ticket{}, fmt.Errorf("%w: %w", ErrTicket, err)
	}
	if keys == nil {
		return Ticket{}, fmt.Errorf("%w: no release keys configured", ErrTicket)
	}
	v, err := keys.Verify(envelope, TicketPayloadType, max(threshold, 1))
	if err != nil {
		return Ticket{}, fmt.Errorf("%w: %w", ErrTicket, err)
	}
	return decodeTicket(v.Payload)
}

// ReadTicket decodes a ticket envelope without checking its signatures,
// for tools that show a ticket before adding a signature to it.
func ReadTicket(envelope []byte) (Ticket, *dsse.Envelope, error) {
	env, err := dsse.ParseLimited(envelope, ticketLimits)
	if err != nil {
		return Ticket{}, nil, fmt.Errorf("%w: %w", ErrTicket, err)
	}
	if env.PayloadType != TicketPayloadType {
		return Ticket{}, nil, fmt.Errorf("%w: payload type %q is not a downgrade ticket", ErrTicket, env.PayloadType)
	}
	payload, err := env.DecodeB64Payload()
	if err != nil {
		return Ticket{}, nil, fmt.Errorf("%w: payload: %w", ErrTicket, err)
	}
	t, err := decodeTicket(payload)
	return t, env, err
}

// SignTicket validates t and signs it with the release keys; the other
// release managers add theirs with CosignTicket.
func SignTicket(t Ticket, keys ...ed25519.PrivateKey) ([]byte, error) {
	t.Format = 1
	if err := t.validate(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("bundle: ticket: %w", err)
	}
	env, err := dsse.Sign(TicketPayloadType, payload, keys...)
	if err != nil {
		return nil, fmt.Errorf("bundle: ticket: %w", err)
	}
	if err := ticketLimits.CheckSize(len(env)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTicket, err)
	}
	return env, nil
}

// CosignTicket adds key's signature to a ticket over its exact payload,
// after checking the ticket is well formed and unexpired at now.
func CosignTicket(envelope []byte, key ed25519.PrivateKey, now time.Time) (Ticket, []byte, error) {
	t, _, err := ReadTicket(envelope)
	if err != nil {
		return Ticket{}, nil, err
	}
	if !now.Before(t.Expires) {
		return t, nil, fmt.Errorf("%w: expired at %s; not signing it", ErrTicket, t.Expires.UTC().Format(time.RFC3339))
	}
	out, err := dsse.Cosign(envelope, key, ticketLimits)
	if err != nil {
		return t, nil, fmt.Errorf("bundle: ticket: %w", err)
	}
	return t, out, nil
}

// checkTicket checks p's ticket for installing version v on this device.
func (p Policy) checkTicket(v Version) error {
	t, err := VerifyTicket(p.Ticket, p.Keys, p.Threshold)
	if err != nil {
		return err
	}
	now := p.Now
	if now.IsZero() {
		now = time.Now()
	}
	return t.Permits(p.Device, p.Site, v, now)
}
