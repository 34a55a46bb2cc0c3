package feeds

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors commands return; the command dispatcher maps them to
// refusal reasons.
var (
	ErrUnknownFeed    = errors.New("feeds: unknown feed")
	ErrUnknownCircuit = errors.New("feeds: unknown circuit")
	ErrBadOrder       = errors.New("feeds: invalid order")
	ErrProtected      = errors.New("feeds: protected circuit (override with a reason to switch it)")
	ErrInterlock      = errors.New("feeds: relay dwell or operation limit")
	ErrTechnician     = errors.New("feeds: local technician override in force")
)

// Duration is a time.Duration that reads "90s" or a number of seconds in JSON.
type Duration time.Duration

// UnmarshalJSON accepts "5m30s" or 330.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("duration: want \"90s\" or seconds: %w", err)
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// MarshalJSON writes the duration as "90s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// ThrottleOrder is a throttle.set: cap the feed at CapKW from From (zero:
// now) until Until (zero: until cleared), reaching the cap linearly over Ramp.
type ThrottleOrder struct {
	Feed  string    `json:"feed"`
	CapKW float64   `json:"cap_kw"`
	From  time.Time `json:"from,omitzero"`
	Until time.Time `json:"until,omitzero"`
	Ramp  Duration  `json:"ramp,omitzero"`
}

// Validate checks an order on its own (the feed is checked by the controller).
func (o ThrottleOrder) Validate() error {
	switch {
	case o.Feed == "":
		return fmt.Errorf("%w: feed is required", ErrBadOrder)
	case !(o.CapKW >= 0) || o.CapKW > 1e6:
		return fmt.Errorf("%w: cap_kw %v must be between 0 and 1e6", ErrBadOrder, o.CapKW)
	case o.Ramp < 0:
		return fmt.Errorf("%w: ramp must not be negative", ErrBadOrder)
	case !o.Until.IsZero() && !o.From.IsZero() && !o.Until.After(o.From):
		return fmt.Errorf("%w: until must be after from", ErrBadOrder)
	}
	return nil
}

// ClearOrder is a throttle.clear.
type ClearOrder struct {
	Feed string `json:"feed"`
}

// Relay states a relay.set may ask for.
const (
	StateOn   = "on"
	StateOff  = "off"
	StateAuto = "auto" // hand the circuit back to the controller
)

// RelayOrder is a relay.set: switch one circuit by hand (it then stays
// there until set to auto). A protected circuit needs Override and a Reason.
type RelayOrder struct {
	Feed     string `json:"feed"`
	Circuit  string `json:"circuit"`
	State    string `json:"state"`
	Override bool   `json:"override,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// Validate checks an order on its own.
func (o RelayOrder) Validate() error {
	switch {
	case o.Feed == "" || o.Circuit == "":
		return fmt.Errorf("%w: feed and circuit are required", ErrBadOrder)
	case o.State != StateOn && o.State != StateOff && o.State != StateAuto:
		return fmt.Errorf("%w: state %q must be on, off or auto", ErrBadOrder, o.State)
	case o.Override && strings.TrimSpace(o.Reason) == "":
		return fmt.Errorf("%w: an override needs a reason", ErrBadOrder)
	}
	return nil
}

// decodeStrict decodes one JSON object, refusing unknown fields and trailing data.
func decodeStrict(args []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrBadOrder, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the arguments", ErrBadOrder)
	}
	return nil
}

// DecodeThrottleSet decodes and validates throttle.set arguments.
func DecodeThrottleSet(args []byte) (ThrottleOrder, error) {
	var o ThrottleOrder
	if err := decodeStrict(args, &o); err != nil {
		return ThrottleOrder{}, err
	}
	return o, o.Validate()
}

// DecodeThrottleClear decodes throttle.clear arguments.
func DecodeThrottleClear(args []byte) (ClearOrder, error) {
	var o ClearOrder
	if err := decodeStrict(args, &o); err != nil {
		return ClearOrder{}, err
	}
	if o.Feed == "" {
		return ClearOrder{}, fmt.Errorf("%w: feed is required", ErrBadOrder)
	}
	return o, nil
}

// DecodeRelaySet decodes and validates relay.set arguments.
func DecodeRelaySet(args []byte) (RelayOrder, error) {
	var o RelayOrder
	if err := decodeStrict(args, &o); err != nil {
		return RelayOrder{}, err
	}
	return o, o.Validate()
}
